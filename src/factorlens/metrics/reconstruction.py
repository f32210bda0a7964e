"""Reconstruction quality: PSNR on images in [0, 1]."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from factorlens.errors import DataError

# An identical reconstruction has MSE 0 and infinite PSNR; one such image would make the mean infinite,
# so its MSE is floored here, i.e. its PSNR is capped at 10 * log10(1 / 1e-10) = 100 dB, and counted.
MSE_FLOOR = 1e-10
PSNR_CAP_DB = float(10.0 * np.log10(1.0 / MSE_FLOOR))


@dataclass
class PSNRResult:
    """Attributes:
    score: mean over images of the per-image PSNR in dB (data range 1).
    per_image: ``[N]`` PSNR in dB.
    n_identical: images whose MSE was below ``MSE_FLOOR`` (PSNR capped at ``PSNR_CAP_DB``).
    estimator: ``"mean of per-image PSNR, data range 1"``.
    """

    score: float
    per_image: np.ndarray
    n_identical: int
    estimator: str = "mean of per-image PSNR, data range 1, capped at 100 dB"

    def to_dict(self) -> dict:
        return {
            "score": self.score,
            "n_identical": self.n_identical,
            "estimator": self.estimator,
            "n_images": int(self.per_image.size),
        }


def _as_unit_float(images: np.ndarray, what: str) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images.astype(np.float64) / 255.0
    images = images.astype(np.float64)
    if not np.isfinite(images).all():
        raise DataError(f"{what} contain non-finite values")
    if images.size and (images.min() < -1e-6 or images.max() > 1 + 1e-6):
        raise DataError(f"{what} must lie in [0, 1] (got {images.min():.4g}..{images.max():.4g})")
    return images


def psnr(x: np.ndarray, x_hat: np.ndarray) -> PSNRResult:
    """Mean over images of ``10 log10(1 / MSE_i)``, MSE_i over all pixels and channels of image i.

    Args:
        x, x_hat: ``[N, ...]`` images, float in [0, 1] or uint8 (divided by 255), same shape.

    Identical images (MSE < 1e-10) get 100 dB rather than infinity; ``n_identical`` counts them.
    """
    x = _as_unit_float(x, "images")
    x_hat = _as_unit_float(x_hat, "reconstructions")
    if x.shape != x_hat.shape or x.ndim < 2:
        raise DataError(
            f"images {x.shape} and reconstructions {x_hat.shape} must have the same [N, ...] shape"
        )
    if x.shape[0] == 0:
        raise DataError("psnr needs at least one image")
    mse = ((x - x_hat) ** 2).reshape(x.shape[0], -1).mean(axis=1)
    identical = mse < MSE_FLOOR
    per_image = 10.0 * np.log10(1.0 / np.maximum(mse, MSE_FLOOR))
    return PSNRResult(score=float(per_image.mean()), per_image=per_image, n_identical=int(identical.sum()))
