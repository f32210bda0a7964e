"""Input validation shared by the metrics: every malformed input is a one-line :class:`DataError`."""

from __future__ import annotations

import numpy as np

from factorlens.errors import DataError


def as_codes(codes, what: str = "codes") -> np.ndarray:
    """``codes`` as a finite ``float64 [N, D]`` array (a 1-D array is one latent)."""
    array = np.asarray(codes, dtype=np.float64)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise DataError(f"{what} must be a non-empty [N, D] array, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise DataError(f"{what} contain {int((~np.isfinite(array)).sum())} non-finite values")
    return array


def as_factors(factors, n: int, what: str = "factors") -> np.ndarray:
    """``factors`` as ``int64 [N, K]`` with ``-1`` meaning unknown; a 1-D array is one factor."""
    array = np.asarray(factors)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2 or array.shape[1] == 0:
        raise DataError(f"{what} must be an [N, K] integer array, got shape {array.shape}")
    if array.shape[0] != n:
        raise DataError(f"{what} have {array.shape[0]} rows but the codes have {n}")
    if not np.issubdtype(array.dtype, np.integer):
        if not np.all(np.isfinite(array)) or not np.all(array == np.round(array)):
            raise DataError(f"{what} must be integer indices (-1 = unknown)")
    array = array.astype(np.int64)
    if (array < -1).any():
        raise DataError(f"{what} contain negative values other than -1 (unknown)")
    return array


def as_labels(labels, n: int, what: str = "labels") -> np.ndarray:
    """``labels`` as ``int64 [N]``."""
    array = np.asarray(labels)
    if array.ndim != 1 or array.shape[0] != n:
        raise DataError(f"{what} must be a 1-D array of {n} class indices, got shape {array.shape}")
    return array.astype(np.int64)
