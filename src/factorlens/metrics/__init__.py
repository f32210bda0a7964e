"""Disentanglement, reconstruction and downstream metrics: pure functions of arrays returning small
dataclasses (score, intermediate matrices, estimator name), plus Table 1 (:func:`evaluate_runs`).

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
from factorlens.metrics.table1 import (
    METRICS,
    PAPER_ROW_NAMES,
    EvaluationInputs,
    EvaluationOptions,
    MetricValue,
    evaluate_codes,
    evaluate_runs,
)

__all__ = [
    "DCI_IMPORTANCE_MODELS",
    "METRICS",
    "PAPER_ROW_NAMES",
    "BetaVAEResult",
    "DCIResult",
    "EvaluationInputs",
    "EvaluationOptions",
    "FactorVAEResult",
    "FewLabelResult",
    "GMMNMIResult",
    "MIGExactResult",
    "MIGResult",
    "MetricValue",
    "ModularityResult",
    "PSNRResult",
    "SAPResult",
    "beta_vae_score",
    "binned_mutual_info",
    "dci",
    "dci_from_importance",
    "discrete_entropy",
    "discrete_mutual_info",
    "evaluate_codes",
    "evaluate_runs",
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
