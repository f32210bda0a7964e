"""Loss terms: Gaussian densities, KL to the prior, and the β-TCVAE decomposition of the KL."""

from factorlens.objectives.gaussian import gaussian_log_density, kl_to_standard_normal
from factorlens.objectives.tc import (
    TC_ESTIMATORS,
    KLDecomposition,
    decompose_kl,
    mss_log_weight_matrix,
    mss_weight_matrix,
    mws_log_weight_matrix,
)

__all__ = [
    "TC_ESTIMATORS",
    "KLDecomposition",
    "decompose_kl",
    "gaussian_log_density",
    "kl_to_standard_normal",
    "mss_log_weight_matrix",
    "mss_weight_matrix",
    "mws_log_weight_matrix",
]
