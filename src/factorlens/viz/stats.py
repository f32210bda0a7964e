"""Per-dimension statistics the figures need: KL to the prior and MI with known factors (the codes come
from :func:`factorlens.evaluation.encode_images`)."""

from __future__ import annotations

import numpy as np

MI_BINS = 20  # bins of the latents in the figures' MI with known factors (as in the binned MIG)


def mean_kl_per_dim(mu: np.ndarray, logvar: np.ndarray) -> np.ndarray:
    """``float64 [d]``: KL(q(z_j|x) || N(0, 1)) in nats, averaged over the rows of ``mu, logvar [N, d]``.

    Per image and dimension: ``0.5 * (mu^2 + exp(logvar) - logvar - 1)``.
    """
    mu = np.asarray(mu, dtype=np.float64)
    logvar = np.asarray(logvar, dtype=np.float64)
    return (0.5 * (mu**2 + np.exp(logvar) - logvar - 1.0)).mean(axis=0)


def latent_factor_mi(codes: np.ndarray, factors: np.ndarray, bins: int = MI_BINS) -> np.ndarray:
    """``float64 [d, K]`` mutual information (nats) between each code dimension (histogram-discretised
    into ``bins``) and each discrete factor (``-1`` = unknown, left out of that factor's column), from
    :func:`factorlens.metrics.discrete_mutual_info`, so the labels agree with the metrics."""
    from factorlens.metrics import discrete_mutual_info

    return np.asarray(
        discrete_mutual_info(np.asarray(codes, np.float64), np.asarray(factors, np.int64), bins=bins),
        dtype=np.float64,
    )
