"""Disentanglement, reconstruction and downstream metrics: pure functions of arrays returning small
dataclasses (score, intermediate matrices, estimator name). Nothing here loads runs or encodes images:
Table 1 of trained runs is :func:`factorlens.evaluation.evaluate_runs`.

See ``docs/metrics.md`` for each metric's definition, defaults and differences from the reference
implementations.
"""

from factorlens.metrics.downstream import FewLabelResult, GMMNMIResult, few_label_accuracy, gmm_nmi
from factorlens.metrics.factor_scores import (
    DCI_IMPORTANCE_MODELS,
    DCIResult,
    ModularityResult,
    SAPResult,
    dci,
    dci_from_importance,
    modularity_explicitness,
    modularity_from_mi,
    sap,
)
from factorlens.metrics.interventional import BetaVAEResult, FactorVAEResult, beta_vae_score, factor_vae_score
from factorlens.metrics.mig import (
    MIGResult,
    median_split_factors,
    mig,
    mig_handcrafted,
    mig_pathology,
    one_vs_all_factors,
)
from factorlens.metrics.mig_exact import MIGExactResult, mig_exact
from factorlens.metrics.mutual_info import (
    binned_mutual_info,
    discrete_entropy,
    discrete_mutual_info,
    histogram_discretize,
)
from factorlens.metrics.reconstruction import PSNRResult, psnr

__all__ = [
    "DCI_IMPORTANCE_MODELS",
    "BetaVAEResult",
    "DCIResult",
    "FactorVAEResult",
    "FewLabelResult",
    "GMMNMIResult",
    "MIGExactResult",
    "MIGResult",
    "ModularityResult",
    "PSNRResult",
    "SAPResult",
    "beta_vae_score",
    "binned_mutual_info",
    "dci",
    "dci_from_importance",
    "discrete_entropy",
    "discrete_mutual_info",
    "factor_vae_score",
    "few_label_accuracy",
    "gmm_nmi",
    "histogram_discretize",
    "median_split_factors",
    "mig",
    "mig_exact",
    "mig_handcrafted",
    "mig_pathology",
    "modularity_explicitness",
    "modularity_from_mi",
    "one_vs_all_factors",
    "psnr",
    "sap",
]
