"""Histogram discretisation and discrete mutual information, vectorised over every (latent, factor) pair.

The discretisation is disentanglement_lib's (``utils.histogram_discretize``): each latent is cut into
``bins`` equal-width bins spanning its own [min, max] (``np.histogram`` edges, ``np.digitize`` against all
edges but the last), so the result matches ``sklearn.metrics.mutual_info_score`` on the same bins while
running one ``np.bincount`` per (chunk of latents, factor) instead of one sklearn call per pair.
"""

from __future__ import annotations

import numpy as np

from factorlens.errors import DataError

# Keeps the combined-index array of one bincount call (int64) around 64 MB on dSprites-sized inputs.
_MAX_ELEMENTS_PER_BINCOUNT = 8_000_000


def check_codes(codes: np.ndarray, what: str = "codes") -> np.ndarray:
    """``codes`` as float64 ``[N, D]``; a :class:`DataError` for a wrong rank or non-finite entries."""
    codes = np.asarray(codes, dtype=np.float64)
    if codes.ndim != 2:
        raise DataError(f"{what} must be a 2-D array [N, D], got shape {codes.shape}")
    if not np.isfinite(codes).all():
        raise DataError(f"{what} contain {int((~np.isfinite(codes)).sum())} non-finite entries")
    return codes


def check_factors(factors: np.ndarray, n_rows: int, what: str = "factors") -> np.ndarray:
    """``factors`` as int64 ``[N, K]`` (a 1-D array becomes one column); -1 marks unknown values."""
    factors = np.asarray(factors)
    if factors.ndim == 1:
        factors = factors[:, None]
    if factors.ndim != 2 or factors.shape[0] != n_rows:
        raise DataError(f"{what} must be [N={n_rows}, K], got shape {factors.shape}")
    if factors.dtype.kind not in "iub":
        raise DataError(f"{what} must be integer indices (-1 = unknown), got dtype {factors.dtype}")
    factors = factors.astype(np.int64)
    if (factors < -1).any():
        raise DataError(f"{what} hold values below -1; use -1 for unknown and 0.. for known values")
    return factors


def histogram_discretize(codes: np.ndarray, *, bins: int = 20) -> np.ndarray:
    """``float [N, D]`` -> ``int64 [N, D]`` bin indices in ``0..bins-1`` (disentanglement_lib's binning).

    Bin edges are ``np.histogram_bin_edges(codes[:, j], bins)`` (equal width over the column's range;
    a constant column gets numpy's unit-width range around its value). ``np.digitize`` against the
    first ``bins`` edges gives 1..bins; we subtract 1 so bins index from 0.
    """
    if bins < 2:
        raise DataError(f"bins must be >= 2, got {bins}")
    codes = check_codes(codes)
    binned = np.empty(codes.shape, dtype=np.int64)
    for j in range(codes.shape[1]):  # a loop over latents (not pairs): each column has its own edges
        edges = np.histogram_bin_edges(codes[:, j], bins)
        binned[:, j] = np.digitize(codes[:, j], edges[:-1]) - 1
    return binned


def discrete_entropy(values: np.ndarray) -> np.ndarray:
    """Entropy in nats of each column of ``int [N, K]`` (entries -1 excluded per column) -> ``[K]``.

    Equals ``sklearn.metrics.mutual_info_score(v, v)`` on the known entries of each column; 0 for a
    column with fewer than one known entry.
    """
    values = np.asarray(values)
    if values.ndim == 1:
        values = values[:, None]
    entropies = np.zeros(values.shape[1])
    for k in range(values.shape[1]):
        known = values[:, k][values[:, k] >= 0]
        if known.size == 0:
            continue
        counts = np.bincount(known)
        p = counts[counts > 0] / known.size
        entropies[k] = float(-(p * np.log(p)).sum())
    return entropies


def _mi_from_joint_counts(joint: np.ndarray) -> np.ndarray:
    """``[..., A, B]`` joint counts -> ``[...]`` mutual information in nats (plug-in estimator)."""
    total = joint.sum(axis=(-2, -1), keepdims=True)
    row = joint.sum(axis=-1, keepdims=True)
    col = joint.sum(axis=-2, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = joint * total / (row * col)
        terms = np.where(joint > 0, joint * np.log(np.where(joint > 0, ratio, 1.0)), 0.0)
    return terms.sum(axis=(-2, -1)) / np.maximum(total[..., 0, 0], 1)


def binned_mutual_info(binned_codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Discrete MI (nats) between already-discrete codes ``int [N, D]`` and factors ``int [N, K]``.

    Rows where a factor is -1 are left out of that factor's column only. Returns ``float64 [D, K]``.
    Each factor needs one ``np.bincount`` per chunk of latents over the combined index
    ``(latent, code bin, factor value)``.
    """
    binned_codes = np.asarray(binned_codes, dtype=np.int64)
    n, d = binned_codes.shape
    factors = check_factors(factors, n)
    n_bins = int(binned_codes.max()) + 1 if n else 1
    mi = np.zeros((d, factors.shape[1]))
    for k in range(factors.shape[1]):
        known = factors[:, k] >= 0
        if not known.any():
            continue
        # Re-index the factor's values densely so the joint table has no empty value columns to carry.
        _, values = np.unique(factors[known, k], return_inverse=True)
        n_values = int(values.max()) + 1
        codes_k = binned_codes[known]
        cells = n_bins * n_values
        chunk = max(1, _MAX_ELEMENTS_PER_BINCOUNT // max(len(values), 1))
        for start in range(0, d, chunk):
            stop = min(d, start + chunk)
            offsets = (np.arange(stop - start, dtype=np.int64) * cells)[None, :]
            combined = offsets + codes_k[:, start:stop] * n_values + values[:, None]
            joint = np.bincount(combined.ravel(), minlength=(stop - start) * cells)
            joint = joint.reshape(stop - start, n_bins, n_values).astype(np.float64)
            mi[start:stop, k] = _mi_from_joint_counts(joint)
    # Plug-in MI is non-negative; tiny negative values are float round-off.
    return np.maximum(mi, 0.0)


def discrete_mutual_info(codes: np.ndarray, factors: np.ndarray, *, bins: int = 20) -> np.ndarray:
    """Mutual information in nats between each histogram-discretised latent and each discrete factor.

    Args:
        codes: ``float [N, D]`` (encoder means, usually).
        factors: ``int [N, K]`` factor indices; ``-1`` = unknown, excluded for that factor only (the
            latent bins are still the ones computed on all N rows).
        bins: equal-width bins per latent (disentanglement_lib uses 20).

    Returns:
        ``float64 [D, K]``: entry ``[j, k]`` equals ``sklearn.metrics.mutual_info_score`` between factor
        ``k`` and latent ``j`` discretised by :func:`histogram_discretize`, on the rows where ``k`` is known.
    """
    codes = check_codes(codes)
    factors = check_factors(factors, codes.shape[0])
    return binned_mutual_info(histogram_discretize(codes, bins=bins), factors)
