"""Per-dimension statistics the figures need: posterior means, KL to the prior, MI with known factors."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch

from factorlens.errors import FactorlensError
from factorlens.models.base import LatentModel

ENCODE_BATCH = 256


def as_float_images(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``uint8`` (0..255) or float (0..1) images ``[N, C, H, W]`` -> ``float32`` tensor in [0, 1]."""
    tensor = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    if tensor.dtype == torch.uint8:
        return tensor.to(torch.float32).div_(255.0)
    return tensor.to(torch.float32)


def require_encoder(model: LatentModel, figure: str) -> None:
    if not getattr(model, "has_encoder", True):
        raise FactorlensError(f"{figure} needs an encoder; model {type(model).__name__} has none (a GAN)")


@contextlib.contextmanager
def evaluating(model: torch.nn.Module) -> Iterator[None]:
    """Run the block with ``model`` in eval mode, then restore its mode.

    Figures must not depend on (or change) BatchNorm batch statistics: a model handed over straight from
    training is still in train mode, where decoding a traversal would use the traversal's own batch
    statistics and overwrite the running averages.
    """
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@torch.no_grad()
def encode_posterior(
    model: LatentModel, images: np.ndarray | torch.Tensor, batch_size: int = ENCODE_BATCH
) -> tuple[np.ndarray, np.ndarray]:
    """Posterior means and log-variances, each ``float32 [N, d]``, of ``images [N, C, H, W]``."""
    require_encoder(model, "encoding images")
    x = as_float_images(images)
    means, logvars = [], []
    with evaluating(model):
        for start in range(0, len(x), batch_size):
            mu, logvar = model.encode(x[start : start + batch_size])
            means.append(mu.float())
            logvars.append(logvar.float())
    return torch.cat(means).numpy(), torch.cat(logvars).numpy()


def mean_kl_per_dim(mu: np.ndarray, logvar: np.ndarray) -> np.ndarray:
    """``float64 [d]``: KL(q(z_j|x) || N(0, 1)) in nats, averaged over the rows of ``mu, logvar [N, d]``.

    Per image and dimension: ``0.5 * (mu^2 + exp(logvar) - logvar - 1)``.
    """
    mu = np.asarray(mu, dtype=np.float64)
    logvar = np.asarray(logvar, dtype=np.float64)
    return (0.5 * (mu**2 + np.exp(logvar) - logvar - 1.0)).mean(axis=0)


def latent_factor_mi(codes: np.ndarray, factors: np.ndarray, bins: int = 20) -> np.ndarray:
    """``float64 [d, K]`` mutual information (nats) between each code dimension (histogram-discretised
    into ``bins``) and each discrete factor (``-1`` = unknown, left out of that factor's column), from
    :func:`factorlens.metrics.discrete_mutual_info`, so the labels agree with the metrics."""
    from factorlens.metrics import discrete_mutual_info

    return np.asarray(
        discrete_mutual_info(np.asarray(codes, np.float64), np.asarray(factors, np.int64), bins=bins),
        dtype=np.float64,
    )
