"""Loss terms: Gaussian densities, KL to the prior, the β-TCVAE decomposition of the KL, and the
adversarial terms shared by every objective with a discriminator."""

from factorlens.objectives.adversarial import discriminator_loss, generator_adversarial_loss
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
    "discriminator_loss",
    "gaussian_log_density",
    "generator_adversarial_loss",
    "kl_to_standard_normal",
    "mss_log_weight_matrix",
    "mss_weight_matrix",
    "mws_log_weight_matrix",
]
