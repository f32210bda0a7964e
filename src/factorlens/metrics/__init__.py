"""Disentanglement, reconstruction and downstream metrics: pure functions of arrays returning small
dataclasses (score, intermediate matrices, estimator name), plus Table 1 (:func:`evaluate_runs`).

See ``docs/metrics.md`` for each metric's definition, defaults and differences from the reference
implementations.
"""

from factorlens.metrics.mig import (
    MIGResult,
    mig,
    mig_handcrafted,
    mig_pathology,
    median_split_factors,
    one_vs_all_factors,
)
from factorlens.metrics.mutual_info import (
    binned_mutual_info,
    discrete_entropy,
    discrete_mutual_info,
    histogram_discretize,
)

__all__ = [
    "MIGResult",
    "binned_mutual_info",
    "discrete_entropy",
    "discrete_mutual_info",
    "histogram_discretize",
    "median_split_factors",
    "mig",
    "mig_handcrafted",
    "mig_pathology",
    "one_vs_all_factors",
]
