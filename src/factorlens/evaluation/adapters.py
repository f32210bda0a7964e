"""The metric adapters of Table 1: one ``METRICS`` entry per column, each turning the evaluated images'
arrays (:class:`EvaluationInputs`) into a :class:`MetricValue` with a pure function of
:mod:`factorlens.metrics`, or saying why the column does not apply to the data.

:func:`evaluate_codes` computes every applicable metric in table order;
:func:`factorlens.evaluation.evaluate_runs` builds the inputs from runs and writes the table.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from factorlens.metrics.downstream import few_label_accuracy, gmm_nmi
from factorlens.metrics.factor_scores import dci, modularity_explicitness, sap
from factorlens.metrics.interventional import EncodeFn, beta_vae_score, factor_vae_score
from factorlens.metrics.mig import mig, mig_handcrafted, mig_pathology
from factorlens.metrics.mig_exact import mig_exact
from factorlens.metrics.vp import DecodeFn, sefa_axes, vp_score
from factorlens.registry import Registry
from factorlens.schema import boolean, choice, integer, option


@dataclass
class EvaluationInputs:
    """What the metrics are computed from (all rows are the evaluated images, in the same order).

    Attributes:
        codes: ``float [N, D]`` encoder means.
        logvars: ``float [N, D]`` encoder log-variances (exact MIG), or None.
        psnr_per_image: ``[N]`` PSNR in dB of each image's reconstruction from its mean code, or None.
        labels, class_names: diagnosis labels ``int [N]`` and names, or None.
        handcrafted: ``float [N, 3]`` mask factors (NaN = no mask), or None.
        factors, factor_names, factor_sizes: true discrete factors ``int [N, K]``, or None.
        exact_mig_factors: the factors exact MIG scores (names), as the dataset says
            (``ImageDataset.exact_mig_factors``: Chen et al.'s four on dSprites); None = all.
        sampler, encode: generative model of the data and the run's encoder (interventional metrics).
        decode, latent_dim, first_layer_weight: the run's decoder ``float32 [n, d] -> [n, C, H, W]``,
            its code size and latent-reading weight ``[out, d]`` (the VP score), or None.
    """

    codes: np.ndarray
    logvars: np.ndarray | None = None
    psnr_per_image: np.ndarray | None = None
    labels: np.ndarray | None = None
    class_names: list[str] | None = None
    handcrafted: np.ndarray | None = None
    factors: np.ndarray | None = None
    factor_names: list[str] = field(default_factory=list)
    factor_sizes: list[int] = field(default_factory=list)
    exact_mig_factors: list[str] | None = None
    sampler: object | None = None
    encode: EncodeFn | None = None
    decode: DecodeFn | None = None
    latent_dim: int | None = None
    first_layer_weight: np.ndarray | None = None


@dataclass(frozen=True)
class EvaluationOptions:
    """Knobs of :func:`evaluate_codes` (defaults follow the paper and disentanglement_lib); checked by the
    one option parser when built with :func:`factorlens.schema.parse`."""

    seed: int = option(0, integer(0), "seed of every randomised metric")
    bins: int = option(20, integer(2), "histogram bins of the binned MI estimators")
    nmi_seeds: int = option(10, integer(1), "GMM realisations of NMI (the paper's 10)")
    folds: int = option(10, integer(2), "cross-validation folds of the few-label accuracy")
    dci_model: str = option("gbt", choice("gbt", "random-forest"), "DCI importance model")
    num_train: int = option(10_000, integer(2), "training points of DCI / SAP")
    num_test: int = option(5_000, integer(1), "test points of DCI / SAP")
    interventional: bool = option(False, boolean, "compute the FactorVAE / BetaVAE scores (slow)")
    interventional_train: int = option(10_000, integer(2), "votes / points of the interventional scores")
    interventional_eval: int = option(5_000, integer(1), "evaluation votes / points of those scores")
    exact_mig: bool = option(False, boolean, "compute Chen et al.'s exact MIG (slow; full factor grid)")
    exact_mig_samples: int = option(10_000, integer(2), "Monte Carlo samples of exact MIG")
    vp: bool = option(False, boolean, "compute the VP score (trains a small CNN)")
    vp_pairs: int = option(10_000, integer(2), "decoded image pairs of the VP score")
    vp_axes: str = option("identity", choice("identity", "sefa"),
                          "axes the VP pairs vary along: the code's own, or the SeFa axes (Song et al.)")


@dataclass
class MetricValue:
    """One table cell: ``value`` (None = not applicable, with ``reason``), optional ``std``, details."""

    value: float | None
    std: float | None = None
    estimator: str = ""
    details: dict = field(default_factory=dict)
    reason: str | None = None

    def to_dict(self) -> dict:
        return {
            "value": self.value,
            "std": self.std,
            "estimator": self.estimator,
            "reason": self.reason,
            "details": self.details,
        }


@dataclass
class MetricSpec:
    """A Table-1 column: ``applicable(inputs, options)`` returns None or the reason it is n/a."""

    column: str
    percent: bool
    applicable: Callable[[EvaluationInputs, EvaluationOptions], str | None]
    compute: Callable[[EvaluationInputs, EvaluationOptions], MetricValue]


METRICS: Registry[MetricSpec] = Registry("metric")
# Column order of the table: the paper's five, then the extras.
TABLE_ORDER = [
    "mig_p",
    "mig_hf",
    "psnr",
    "nmi",
    "acc",
    "mig_factors",
    "mig_exact",
    "dci",
    "sap",
    "modularity",
    "factor_vae",
    "beta_vae",
    "vp",
]


def _needs_labels(inputs: EvaluationInputs, options: EvaluationOptions) -> str | None:
    if inputs.labels is None or inputs.class_names is None:
        return "the dataset has no class labels"
    if (inputs.labels >= 0).sum() < 2:
        return "fewer than 2 labelled images"
    return None


def _needs_handcrafted(inputs: EvaluationInputs, options: EvaluationOptions) -> str | None:
    if inputs.handcrafted is None:
        return "the dataset has no lesion masks, so no handcrafted factors"
    if not np.isfinite(inputs.handcrafted).any():
        return "every lesion mask is empty or missing"
    return None


def _needs_factors(inputs: EvaluationInputs, options: EvaluationOptions) -> str | None:
    if inputs.factors is None:
        return "the dataset has no ground-truth factors"
    return None


def _needs_two_factors(inputs: EvaluationInputs, options: EvaluationOptions) -> str | None:
    reason = _needs_factors(inputs, options)
    if reason is None and inputs.factors.shape[1] < 2:
        return "needs at least 2 ground-truth factors (DCI and modularity compare a code across factors)"
    return reason


def _needs_psnr(inputs: EvaluationInputs, options: EvaluationOptions) -> str | None:
    return None if inputs.psnr_per_image is not None else "no reconstructions were computed"


def _needs_sampler(inputs: EvaluationInputs, options: EvaluationOptions) -> str | None:
    if not options.interventional:
        return "interventional metrics are opt-in (slow): pass interventional=True / --interventional"
    if inputs.sampler is None or inputs.encode is None:
        return "the dataset has no generative sampler"
    return None


def _needs_grid(inputs: EvaluationInputs, options: EvaluationOptions) -> str | None:
    if not options.exact_mig:
        return "exact MIG is opt-in (slow): pass exact_mig=True / --exact-mig"
    if inputs.factors is None or inputs.logvars is None:
        return "needs ground-truth factors and encoder log-variances"
    sizes = inputs.factor_sizes
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in sizes], indexing="ij"), axis=-1).reshape(
        -1, len(sizes)
    )
    if grid.shape != inputs.factors.shape or not np.array_equal(grid, inputs.factors):
        return (
            "the evaluated images are not the full factor grid in order (evaluate with --data on all of it)"
        )
    return None


def _needs_decoder(inputs: EvaluationInputs, options: EvaluationOptions) -> str | None:
    if not options.vp:
        return "the VP score is opt-in (trains a CNN): pass vp=True / --vp"
    if inputs.decode is None or inputs.latent_dim is None:
        return "the model has no decoder"
    if options.vp_axes == "sefa" and inputs.first_layer_weight is None:
        return "SeFa axes need the decoder's first-layer weight"
    return None


def _register(name: str, column: str, percent: bool, applicable) -> Callable:
    def decorator(compute: Callable[[EvaluationInputs, EvaluationOptions], MetricValue]):
        METRICS.register(name)(
            MetricSpec(column=column, percent=percent, applicable=applicable, compute=compute)
        )
        return compute

    return decorator


def _labelled(inputs: EvaluationInputs) -> tuple[np.ndarray, np.ndarray]:
    known = inputs.labels >= 0
    return inputs.codes[known], inputs.labels[known]


@_register("mig_p", "MIG_p %", True, _needs_labels)
def _mig_p(inputs: EvaluationInputs, options: EvaluationOptions) -> MetricValue:
    result = mig_pathology(
        inputs.codes,
        inputs.labels,
        len(inputs.class_names),
        bins=options.bins,
        class_names=inputs.class_names,
    )
    return MetricValue(result.score, estimator=result.estimator, details=result.to_dict())


@_register("mig_hf", "MIG_hf %", True, _needs_handcrafted)
def _mig_hf(inputs: EvaluationInputs, options: EvaluationOptions) -> MetricValue:
    result = mig_handcrafted(inputs.codes, inputs.handcrafted, bins=options.bins)
    return MetricValue(result.score, estimator=result.estimator, details=result.to_dict())


@_register("psnr", "PSNR dB", False, _needs_psnr)
def _psnr(inputs: EvaluationInputs, options: EvaluationOptions) -> MetricValue:
    from factorlens.metrics.reconstruction import MSE_FLOOR, PSNR_CAP_DB

    per_image = inputs.psnr_per_image
    return MetricValue(
        float(per_image.mean()),
        estimator=f"mean of per-image PSNR of the decoded means, "
        f"data range 1, capped at {PSNR_CAP_DB:.0f} dB",
        details={
            "n_images": int(per_image.size),
            "n_identical": int((per_image >= 10 * math.log10(1 / MSE_FLOOR)).sum()),
        },
    )


@_register("nmi", "NMI %", True, _needs_labels)
def _nmi(inputs: EvaluationInputs, options: EvaluationOptions) -> MetricValue:
    codes, labels = _labelled(inputs)
    result = gmm_nmi(codes, labels, n_components=len(inputs.class_names), seeds=range(options.nmi_seeds))
    return MetricValue(result.mean, result.std, estimator=result.estimator, details=result.to_dict())


@_register("acc", "ACC %", True, _needs_labels)
def _acc(inputs: EvaluationInputs, options: EvaluationOptions) -> MetricValue:
    codes, labels = _labelled(inputs)
    result = few_label_accuracy(codes, labels, folds=options.folds, seed=options.seed)
    return MetricValue(
        result.accuracy_mean, result.accuracy_std, estimator=result.estimator, details=result.to_dict()
    )


@_register("mig_factors", "MIG (factors) %", True, _needs_factors)
def _mig_factors(inputs: EvaluationInputs, options: EvaluationOptions) -> MetricValue:
    result = mig(inputs.codes, inputs.factors, bins=options.bins, factor_names=inputs.factor_names or None)
    return MetricValue(result.score, estimator=result.estimator, details=result.to_dict())


@_register("mig_exact", "MIG exact %", True, _needs_grid)
def _mig_exact(inputs: EvaluationInputs, options: EvaluationOptions) -> MetricValue:
    names = list(inputs.factor_names or [])
    result = mig_exact(
        inputs.codes,
        inputs.logvars,
        inputs.factor_sizes,
        factor_names=names or None,
        factors_scored=inputs.exact_mig_factors,
        n_samples=options.exact_mig_samples,
        seed=options.seed,
    )
    return MetricValue(result.score, estimator=result.estimator, details=result.to_dict())


@_register("dci", "DCI-D", False, _needs_two_factors)
def _dci(inputs: EvaluationInputs, options: EvaluationOptions) -> MetricValue:
    result = dci(
        inputs.codes,
        inputs.factors,
        num_train=options.num_train,
        num_test=options.num_test,
        model=options.dci_model,
        seed=options.seed,
    )
    return MetricValue(result.disentanglement, estimator=result.estimator, details=result.to_dict())


@_register("sap", "SAP", False, _needs_factors)
def _sap(inputs: EvaluationInputs, options: EvaluationOptions) -> MetricValue:
    result = sap(
        inputs.codes,
        inputs.factors,
        num_train=options.num_train,
        num_test=options.num_test,
        seed=options.seed,
    )
    return MetricValue(result.score, estimator=result.estimator, details=result.to_dict())


@_register("modularity", "Modularity", False, _needs_two_factors)
def _modularity(inputs: EvaluationInputs, options: EvaluationOptions) -> MetricValue:
    result = modularity_explicitness(
        inputs.codes,
        inputs.factors,
        num_train=options.num_train,
        num_test=options.num_test,
        bins=options.bins,
        seed=options.seed,
    )
    return MetricValue(result.modularity, estimator=result.estimator, details=result.to_dict())


@_register("factor_vae", "FactorVAE", False, _needs_sampler)
def _factor_vae(inputs: EvaluationInputs, options: EvaluationOptions) -> MetricValue:
    result = factor_vae_score(
        inputs.sampler,
        inputs.encode,
        num_train=options.interventional_train,
        num_eval=options.interventional_eval,
        num_variance_estimate=options.interventional_train,
        seed=options.seed,
    )
    return MetricValue(result.eval_accuracy, estimator=result.estimator, details=result.to_dict())


@_register("beta_vae", "BetaVAE", False, _needs_sampler)
def _beta_vae(inputs: EvaluationInputs, options: EvaluationOptions) -> MetricValue:
    result = beta_vae_score(
        inputs.sampler,
        inputs.encode,
        num_train=options.interventional_train,
        num_eval=options.interventional_eval,
        seed=options.seed,
    )
    return MetricValue(result.eval_accuracy, estimator=result.estimator, details=result.to_dict())


@_register("vp", "VP %", True, _needs_decoder)
def _vp(inputs: EvaluationInputs, options: EvaluationOptions) -> MetricValue:
    axes = sefa_axes(inputs.first_layer_weight) if options.vp_axes == "sefa" else None
    result = vp_score(inputs.decode, inputs.latent_dim, axes=axes, n_pairs=options.vp_pairs,
                      seed=options.seed)
    details = {"chance": result.chance, "n_pairs": result.n_pairs, "n_train": result.n_train,
               "per_axis_accuracy": result.per_axis_accuracy.tolist(), **result.params,
               "axes": options.vp_axes}
    return MetricValue(result.score, estimator=result.estimator, details=details)


def evaluate_codes(
    inputs: EvaluationInputs, options: EvaluationOptions | None = None
) -> dict[str, MetricValue]:
    """Every registered metric on ``inputs``: a value where the data allows, else None with the reason."""
    options = options or EvaluationOptions()
    results = {}
    for name in TABLE_ORDER:
        spec = METRICS.get(name)
        reason = spec.applicable(inputs, options)
        results[name] = MetricValue(None, reason=reason) if reason else spec.compute(inputs, options)
    return results
