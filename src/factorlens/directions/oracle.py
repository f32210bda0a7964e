"""Oracles that read generative factors off generated 64x64 images, for scoring directions.

- ``synthetic-lesions`` (RGB skin with one darker elliptical lesion): the skin colour is the median of
  the image border; the lesion is the largest connected component above Otsu's threshold of the colour
  distance to the skin; we report its area fraction, eccentricity, orientation, centroid x/y, darkness
  and the skin luminance. **Darkness is relative**, ``1 - lesion luminance / skin luminance``: the renderer
  makes a lesion as skin x pigment transmittance, so this reads the pigment (the ``lesion_colour`` factor)
  whatever the skin tone. The absolute difference (skin minus lesion luminance; factorlens before
  2026-12-03) grows with the skin's luminance: a ground-truth change of skin tone alone moved it 1.75
  sds against 2.66 for skin tone itself, so no skin-tone edit, however pure, could be read as skin tone
  >= 2x anything else (``tests/test_directions_sfvq_oracle.py`` checks every factor that way).
- ``dsprites`` (1 channel, white sprite on black): the sprite is the largest component above 0.5; we
  report its area fraction, centroid x/y and orientation.

Orientation is the angle (radians, in (-pi/2, pi/2]) of the major axis from the image x axis,
counter-clockwise with y pointing up. NaN where no region is found.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from factorlens.registry import Registry

LUMA = np.array([0.299, 0.587, 0.114])
# Below this skin luminance (a near-black border: a failed decode) relative darkness is not read (NaN).
MIN_SKIN_LUMINANCE = 0.02


@dataclass(frozen=True)
class FactorOracle:
    """``read(images float [B, C, H, W] in [0, 1]) -> float64 [B, J]`` with J = len(factor_names)."""

    factor_names: tuple[str, ...]
    read: Callable[[np.ndarray], np.ndarray]


ORACLES: Registry[FactorOracle] = Registry("factor oracle")


def region_geometry(mask: np.ndarray) -> np.ndarray:
    """``[area fraction, eccentricity, orientation, centroid x, centroid y]`` of a boolean ``[H, W]`` mask
    (centroids as fractions of the width/height)."""
    height, width = mask.shape
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return np.full(5, np.nan)
    cx, cy = xs.mean(), ys.mean()
    dx, dy = xs - cx, -(ys - cy)  # y up
    cov = np.cov(np.stack([dx, dy])) if len(xs) > 1 else np.zeros((2, 2))
    eigenvalues, eigenvectors = np.linalg.eigh(cov)
    major, minor = max(eigenvalues[1], 0.0), max(eigenvalues[0], 0.0)
    eccentricity = np.sqrt(1 - minor / major) if major > 0 else 0.0
    vx, vy = eigenvectors[:, 1]
    orientation = np.arctan2(vy, vx)
    if orientation <= -np.pi / 2:
        orientation += np.pi
    elif orientation > np.pi / 2:
        orientation -= np.pi
    return np.array(
        [len(xs) / (height * width), eccentricity, orientation, (cx + 0.5) / width, (cy + 0.5) / height]
    )


def largest_component(mask: np.ndarray) -> np.ndarray:
    labels, count = ndimage.label(mask)
    if count == 0:
        return mask
    sizes = np.bincount(labels.ravel())[1:]
    return labels == (1 + int(np.argmax(sizes)))


def _read_lesions(images: np.ndarray) -> np.ndarray:
    from skimage.filters import threshold_otsu

    images = np.asarray(images, dtype=np.float64)
    out = np.full((len(images), 7), np.nan)
    for i, image in enumerate(images):
        pixels = image.transpose(1, 2, 0)  # [H, W, 3]
        border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
        skin = np.median(border, axis=0)
        distance = np.linalg.norm(pixels - skin, axis=-1)
        if np.ptp(distance) < 1e-6:
            continue
        mask = largest_component(distance > threshold_otsu(distance))
        luminance = pixels @ LUMA
        skin_luminance = float(skin @ LUMA)
        out[i, :5] = region_geometry(mask)
        if mask.any() and skin_luminance > MIN_SKIN_LUMINANCE:
            # 1 = a black lesion, 0 = as bright as the skin; clipped at -1 (twice as bright) so that one
            # odd decode cannot dominate a mean
            out[i, 5] = max(-1.0, 1.0 - float(luminance[mask].mean()) / skin_luminance)
        out[i, 6] = skin_luminance
    return out


def _read_sprites(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images, dtype=np.float64)
    out = np.full((len(images), 4), np.nan)
    for i, image in enumerate(images):
        mask = largest_component(image[0] > 0.5)
        area, _, orientation, cx, cy = region_geometry(mask)
        out[i] = [area, cx, cy, orientation]
    return out


ORACLES.register("synthetic-lesions")(
    FactorOracle(
        ("size", "eccentricity", "orientation", "centroid_x", "centroid_y", "darkness", "skin_tone"),
        _read_lesions,
    )
)
ORACLES.register("dsprites")(FactorOracle(("size", "centroid_x", "centroid_y", "orientation"), _read_sprites))
