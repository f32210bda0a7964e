"""Mutual Information Gap with disentanglement_lib's binned estimator, and the two variants of Table 1
(Sarhan et al. 2019): MIG on one-vs-all pathology labels (MIG_p) and on median-split handcrafted mask
factors (MIG_hf)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from factorlens.data.base import HANDCRAFTED_FACTOR_NAMES
from factorlens.errors import DataError
from factorlens.metrics.mutual_info import (
    binned_mutual_info,
    check_codes,
    check_factors,
    discrete_entropy,
    histogram_discretize,
)


@dataclass
class MIGResult:
    """MIG and what it was computed from.

    Attributes:
        score: mean of ``per_factor_gap`` over the factors with ``factor_entropy > 0`` (in [0, 1]).
        per_factor_gap: ``[K]`` (top-1 MI - top-2 MI) / H(v_k); NaN for a factor with zero entropy.
        mi: ``[D, K]`` mutual information in nats.
        factor_entropy: ``[K]`` H(v_k) in nats (empirical, on the rows where v_k is known).
        estimator: e.g. ``"binned-20"``.
        factor_names: names of the K factors.
        n_known: ``[K]`` rows used per factor (rows with -1 / NaN are left out of that factor).
        n_excluded: ``[K]`` rows left out per factor.
        top_latent: ``[K]`` index of the latent with the highest MI per factor.
    """

    score: float
    per_factor_gap: np.ndarray
    mi: np.ndarray
    factor_entropy: np.ndarray
    estimator: str
    factor_names: list[str] = field(default_factory=list)
    n_known: np.ndarray | None = None
    n_excluded: np.ndarray | None = None
    top_latent: np.ndarray | None = None

    def to_dict(self) -> dict:
        return {
            "score": self.score,
            "estimator": self.estimator,
            "factor_names": self.factor_names,
            "per_factor_gap": _nan_to_none(self.per_factor_gap),
            "factor_entropy": self.factor_entropy.tolist(),
            "n_known": None if self.n_known is None else self.n_known.tolist(),
            "n_excluded": None if self.n_excluded is None else self.n_excluded.tolist(),
            "top_latent": None if self.top_latent is None else self.top_latent.tolist(),
            "mi": self.mi.tolist(),
        }


def _nan_to_none(values: np.ndarray) -> list:
    # JSON has no NaN; None reads back as "not defined" rather than as a number.
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(values, dtype=np.float64)]


def gap_from_mi(mi: np.ndarray, factor_entropy: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """``mi [D, K]``, ``factor_entropy [K]`` -> (score, per-factor normalised gap [K], top latent [K]).

    Factors with zero entropy (a constant factor: nothing to capture) get NaN and are left out of the
    mean; if every factor is constant, the score is NaN.
    """
    if mi.shape[0] < 2:
        raise DataError(f"MIG needs at least 2 latent dimensions, got {mi.shape[0]}")
    ordered = np.sort(mi, axis=0)[::-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        gap = np.where(factor_entropy > 0, (ordered[0] - ordered[1]) / factor_entropy, np.nan)
    scored = np.isfinite(gap)
    score = float(gap[scored].mean()) if scored.any() else float("nan")
    return score, gap, np.argmax(mi, axis=0)


def mig(
    codes: np.ndarray, factors: np.ndarray, *, bins: int = 20, factor_names: list[str] | None = None
) -> MIGResult:
    """Binned MIG (disentanglement_lib's estimator, on whatever rows are given).

    Args:
        codes: ``float [N, D]`` encoder means.
        factors: ``int [N, K]`` discrete factor indices, -1 = unknown (left out for that factor).
        bins: equal-width histogram bins per latent.
        factor_names: optional names for the K factors (default ``factor_0``...).

    Returns:
        :class:`MIGResult` with ``estimator="binned-<bins>"``. Unlike dlib, which samples 10,000 points,
        every given row is used; subsample before calling to reproduce dlib's sample size.
    """
    codes = check_codes(codes)
    factors = check_factors(factors, codes.shape[0])
    mi = binned_mutual_info(histogram_discretize(codes, bins=bins), factors)
    entropy = discrete_entropy(factors)
    score, gap, top = gap_from_mi(mi, entropy)
    n_known = (factors >= 0).sum(axis=0)
    names = (
        list(factor_names) if factor_names is not None else [f"factor_{k}" for k in range(factors.shape[1])]
    )
    if len(names) != factors.shape[1]:
        raise DataError(f"{len(names)} factor names given for {factors.shape[1]} factors")
    return MIGResult(
        score=score,
        per_factor_gap=gap,
        mi=mi,
        factor_entropy=entropy,
        estimator=f"binned-{bins}",
        factor_names=names,
        n_known=n_known,
        n_excluded=factors.shape[0] - n_known,
        top_latent=top,
    )


def one_vs_all_factors(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """``int [N]`` class labels (-1 = unknown) -> ``int64 [N, n_classes]`` binary factors (-1 kept)."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise DataError(f"labels must be 1-D [N], got shape {labels.shape}")
    if labels.size and (labels.max() >= n_classes or labels.min() < -1):
        raise DataError(f"labels must lie in -1..{n_classes - 1}, got {labels.min()}..{labels.max()}")
    factors = (labels[:, None] == np.arange(n_classes)[None, :]).astype(np.int64)
    factors[labels < 0] = -1
    return factors


def mig_pathology(
    codes: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    *,
    bins: int = 20,
    class_names: list[str] | None = None,
) -> MIGResult:
    """MIG_p: each class is a binary factor "is this class" (one-vs-all), so K = ``n_classes``.

    A class absent from ``labels`` has zero entropy and is left out of the mean (its gap is NaN).
    """
    codes = check_codes(codes)
    factors = one_vs_all_factors(labels, n_classes)
    names = list(class_names) if class_names is not None else [f"class_{c}" for c in range(n_classes)]
    result = mig(codes, factors, bins=bins, factor_names=names)
    result.estimator = f"binned-{bins}, one-vs-all"
    return result


def median_split_factors(handcrafted: np.ndarray) -> np.ndarray:
    """``float [N, F]`` (NaN = unknown) -> ``int64 [N, F]``: 1 above the column's median, 0 at or below,
    -1 where NaN. The median is taken over the known rows of each column."""
    handcrafted = np.asarray(handcrafted, dtype=np.float64)
    if handcrafted.ndim != 2:
        raise DataError(f"handcrafted factors must be [N, F], got shape {handcrafted.shape}")
    factors = np.full(handcrafted.shape, -1, dtype=np.int64)
    for k in range(handcrafted.shape[1]):
        known = np.isfinite(handcrafted[:, k])
        if known.any():
            median = np.median(handcrafted[known, k])
            factors[known, k] = (handcrafted[known, k] > median).astype(np.int64)
    return factors


def mig_handcrafted(
    codes: np.ndarray, handcrafted: np.ndarray, *, bins: int = 20, factor_names: list[str] | None = None
) -> MIGResult:
    """MIG_hf: eccentricity, orientation and size, each binarised at its median (K = 3).

    Rows with NaN (empty or missing mask) are left out of that factor; ``n_excluded`` counts them.
    """
    codes = check_codes(codes)
    handcrafted = np.asarray(handcrafted, dtype=np.float64)
    if handcrafted.ndim != 2 or handcrafted.shape[0] != codes.shape[0]:
        raise DataError(f"handcrafted must be [N={codes.shape[0]}, F], got shape {handcrafted.shape}")
    if factor_names is None:
        factor_names = (
            list(HANDCRAFTED_FACTOR_NAMES)
            if handcrafted.shape[1] == len(HANDCRAFTED_FACTOR_NAMES)
            else [f"handcrafted_{k}" for k in range(handcrafted.shape[1])]
        )
    result = mig(codes, median_split_factors(handcrafted), bins=bins, factor_names=factor_names)
    result.estimator = f"binned-{bins}, median split"
    return result
