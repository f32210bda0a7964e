"""Table 1 of Sarhan et al. (2019) for trained runs, plus the factor-based metrics the data allows.

:func:`evaluate_codes` computes every applicable metric of the ``METRICS`` registry on arrays (codes,
labels, handcrafted factors, true factors, per-image PSNR); :func:`evaluate_runs` encodes each run's
evaluation images once, calls it, and writes ``table1.md``, ``table1.csv`` and ``metrics.json``.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from factorlens.errors import DataError
from factorlens.metrics.downstream import few_label_accuracy, gmm_nmi
from factorlens.metrics.factor_scores import dci, modularity_explicitness, sap
from factorlens.metrics.interventional import EncodeFn, beta_vae_score, factor_vae_score
from factorlens.metrics.mig import mig, mig_handcrafted, mig_pathology
from factorlens.metrics.mig_exact import mig_exact
from factorlens.registry import Registry

# Paper row names (Table 1) for the model registry names.
PAPER_ROW_NAMES = {
    "vae": "VAE",
    "beta-vae": "β-VAE",
    "btcvae": "β-TCVAE",
    "btcvae-resnet": "Ours-resnet",
    "btcvae-adv": "Ours-Adv",
}
BASELINE_MODEL = "btcvae"  # the paper's relative improvements are over β-TCVAE


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
        sampler, encode: generative model of the data and the run's encoder (interventional metrics).
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
    sampler: object | None = None
    encode: EncodeFn | None = None


@dataclass
class EvaluationOptions:
    """Knobs of :func:`evaluate_codes` (defaults follow the paper and disentanglement_lib)."""

    seed: int = 0
    bins: int = 20
    nmi_seeds: int = 10
    folds: int = 10
    dci_model: str = "gbt"
    num_train: int = 10_000
    num_test: int = 5_000
    interventional: bool = False
    interventional_train: int = 10_000
    interventional_eval: int = 5_000
    exact_mig: bool = False
    exact_mig_samples: int = 10_000


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


# dSprites' factors in their canonical order; Chen et al. score all but shape (3 values, poorly
# captured by any single latent), and so does Table 1, so our figure is comparable with theirs.
DSPRITES_FACTORS = ("shape", "scale", "orientation", "posX", "posY")


@_register("mig_exact", "MIG exact %", True, _needs_grid)
def _mig_exact(inputs: EvaluationInputs, options: EvaluationOptions) -> MetricValue:
    names = list(inputs.factor_names or [])
    scored = [name for name in names if name != "shape"] if tuple(names) == DSPRITES_FACTORS else None
    result = mig_exact(
        inputs.codes,
        inputs.logvars,
        inputs.factor_sizes,
        factor_names=names or None,
        factors_scored=scored,
        n_samples=options.exact_mig_samples,
        seed=options.seed,
    )
    return MetricValue(result.score, estimator=result.estimator, details=result.to_dict())


@_register("dci", "DCI-D", False, _needs_factors)
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


@_register("modularity", "Modularity", False, _needs_factors)
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


# --- tables ---------------------------------------------------------------------------------------------


@dataclass
class TableRow:
    row_name: str
    model_name: str
    run: str
    metrics: dict[str, MetricValue]


def relative_change(rows: Sequence[TableRow], baseline_model: str = BASELINE_MODEL) -> dict[str, dict]:
    """``(m - m_baseline) / m_baseline`` per row and metric, as the paper reports relative improvements.

    Empty when there is no run of ``baseline_model``; the first such run is the baseline. A metric with a
    missing or zero baseline value gets None.
    """
    baseline = next((row for row in rows if row.model_name == baseline_model), None)
    if baseline is None:
        return {}
    changes = {}
    for row in rows:
        per_metric = {}
        for name, value in row.metrics.items():
            base = baseline.metrics.get(name)
            if value.value is None or base is None or base.value is None or base.value == 0:
                per_metric[name] = None
            else:
                per_metric[name] = (value.value - base.value) / abs(base.value)
        changes[row.row_name] = per_metric
    return changes


def _columns(rows: Sequence[TableRow]) -> list[str]:
    # The paper's five columns always; an extra column only when some row has a value for it.
    paper = ["mig_p", "mig_hf", "psnr", "nmi", "acc"]
    extras = [n for n in TABLE_ORDER if n not in paper and any(r.metrics[n].value is not None for r in rows)]
    return paper + extras


def _cell(name: str, value: MetricValue) -> str:
    if value.value is None:
        return "n/a"
    scale = 100.0 if METRICS.get(name).percent else 1.0
    text = f"{value.value * scale:.2f}"
    if value.std is not None:
        text += f" ± {value.std * scale:.2f}"
    return text


def format_markdown(rows: Sequence[TableRow], *, evaluated_on: str, relative: dict[str, dict]) -> str:
    """Table 1 as Markdown: the table, the reasons for n/a cells, then the change relative to β-TCVAE."""
    columns = _columns(rows)
    lines = [
        "| Model | " + " | ".join(METRICS.get(c).column for c in columns) + " |",
        "| --- | " + " | ".join("---:" for _ in columns) + " |",
    ]
    for row in rows:
        lines.append(f"| {row.row_name} | " + " | ".join(_cell(c, row.metrics[c]) for c in columns) + " |")
    lines += ["", f"Evaluated on: {evaluated_on}."]
    reasons = sorted(
        {
            (METRICS.get(c).column, row.metrics[c].reason)
            for row in rows
            for c in columns
            if row.metrics[c].value is None
        }
    )
    for column, reason in reasons:
        lines.append(f"- {column} n/a: {reason}.")
    if relative:
        lines += [
            "",
            f"Relative change over {PAPER_ROW_NAMES[BASELINE_MODEL]} ((m - m_β-TCVAE) / m_β-TCVAE):",
            "",
            "| Model | " + " | ".join(METRICS.get(c).column for c in columns) + " |",
            "| --- | " + " | ".join("---:" for _ in columns) + " |",
        ]
        for row in rows:
            cells = [
                (
                    "n/a"
                    if relative[row.row_name].get(c) is None
                    else f"{100 * relative[row.row_name][c]:+.1f}%"
                )
                for c in columns
            ]
            lines.append(f"| {row.row_name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def format_csv(rows: Sequence[TableRow]) -> str:
    """One line per run: model, run, a value (and std) column per metric; ``n/a`` where not applicable."""
    columns = _columns(rows)
    header = ["Model", "run"]
    for c in columns:
        header.append(METRICS.get(c).column)
        if c in ("nmi", "acc"):
            header.append(METRICS.get(c).column + " std")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        cells = [row.row_name, row.run]
        for c in columns:
            value, scale = row.metrics[c], (100.0 if METRICS.get(c).percent else 1.0)
            cells.append("n/a" if value.value is None else f"{value.value * scale:.4f}")
            if c in ("nmi", "acc"):
                cells.append("n/a" if value.std is None else f"{value.std * scale:.4f}")
        writer.writerow(cells)
    return buffer.getvalue()


def unique_row_names(model_names: Sequence[str], run_names: Sequence[str]) -> list[str]:
    """Paper row names; runs of the same model are told apart by their directory name."""
    names = [PAPER_ROW_NAMES.get(m, m) for m in model_names]
    return [f"{n} ({r})" if names.count(n) > 1 else n for n, r in zip(names, run_names, strict=True)]


# --- runs -----------------------------------------------------------------------------------------------


def encode_and_score_reconstruction(
    model, images: np.ndarray, *, batch_size: int = 256
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One pass over ``uint8 [N, C, 64, 64]`` images: ``(means [N, D], logvars [N, D], psnr [N] dB)``.

    The reconstruction is the decoded mean code (no sampling), so PSNR is deterministic.
    """
    import torch

    from factorlens.data import to_float
    from factorlens.metrics.reconstruction import psnr

    means, logvars, psnrs = [], [], []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            x = to_float(images[start : start + batch_size])
            mu, logvar = model.encode(x)
            x_hat = model.decode(mu)
            means.append(mu.double().numpy())
            logvars.append(logvar.double().numpy())
            psnrs.append(psnr(x.double().numpy(), x_hat.double().clamp(0, 1).numpy()).per_image)
    if not means:
        raise DataError("no images to evaluate")
    return np.concatenate(means), np.concatenate(logvars), np.concatenate(psnrs)


def encoder_function(model, *, batch_size: int = 256) -> EncodeFn:
    """``uint8 [n, C, 64, 64] -> float64 [n, D]`` encoder means, batched, without gradients."""

    def encode(images: np.ndarray) -> np.ndarray:
        import torch

        from factorlens.data import to_float

        with torch.no_grad():
            return np.concatenate(
                [
                    model.encode(to_float(images[s : s + batch_size]))[0].double().numpy()
                    for s in range(0, len(images), batch_size)
                ]
            )

    return encode


def evaluate_runs(
    run_paths: Sequence[str | Path],
    data_spec: str | None = None,
    out_dir: str | Path = "results",
    *,
    seed: int = 0,
    batch_size: int = 256,
    dci_model: str = "gbt",
    interventional: bool = False,
    interventional_train: int = 10_000,
    interventional_eval: int = 5_000,
    exact_mig: bool = False,
    exact_mig_samples: int = 10_000,
    progress: bool = False,
) -> str:
    """Table 1 for trained runs: writes ``out_dir/table1.md``, ``table1.csv``, ``metrics.json``.

    Args:
        run_paths: run directories written by ``factorlens train``.
        data_spec: evaluate on this dataset (all of it) instead of each run's own test split.
        out_dir: output folder (created).
        seed: seed of every randomised metric (GMM seeds are ``0..9`` as in the paper's 10 realisations).
        batch_size: images per encoder/decoder pass.
        dci_model: ``"gbt"`` (dlib) or ``"random-forest"``.
        interventional, interventional_train, interventional_eval: opt-in FactorVAE/BetaVAE scores
            (need a dataset with a sampler) and their number of votes / points.
        exact_mig, exact_mig_samples: opt-in Chen et al. MIG (needs the full factor grid as data).

    Returns:
        the Markdown of ``table1.md``.
    """
    from factorlens import __version__
    from factorlens.data import load_dataset
    from factorlens.io import atomic_write_json, atomic_write_text
    from factorlens.training import load_run

    if not run_paths:
        raise DataError("evaluate needs at least one run directory")
    options = EvaluationOptions(
        seed=seed,
        dci_model=dci_model,
        interventional=interventional,
        interventional_train=interventional_train,
        interventional_eval=interventional_eval,
        exact_mig=exact_mig,
        exact_mig_samples=exact_mig_samples,
    )
    datasets: dict[str, object] = {}  # spec -> dataset, loaded once for runs sharing it
    rows, run_records = [], []
    for run_path in run_paths:
        run = load_run(run_path)
        if not run.model.has_encoder:
            raise DataError(f"run {run_path} ({run.model_name}) has no encoder; Table 1 needs one")
        run_spec = run.config["data"]["spec"]
        if data_spec is None or data_spec == run_spec:
            if run_spec not in datasets:
                datasets[run_spec] = run.load_dataset(progress=progress)
            test_idx = np.asarray(run.split["test"], dtype=np.int64)
            dataset = datasets[run_spec].subset(test_idx)
            evaluated_on = (
                f"the run's recorded test split ({len(test_idx)} of {run.split['n']} images of {run_spec})"
            )
            spec, split_name = run_spec, "test"
        else:
            if data_spec not in datasets:
                datasets[data_spec] = load_dataset(data_spec, progress=progress)
            dataset = datasets[data_spec]
            evaluated_on = f"all {len(dataset)} images of {data_spec} (the run was trained on {run_spec})"
            spec, split_name = data_spec, "all"
        if dataset.channels != run.model.channels:
            raise DataError(
                f"{spec} has {dataset.channels}-channel images but run {run_path} expects "
                f"{run.model.channels}"
            )
        means, logvars, psnr_per_image = encode_and_score_reconstruction(
            run.model, dataset.images, batch_size=batch_size
        )
        inputs = EvaluationInputs(
            codes=means,
            logvars=logvars,
            psnr_per_image=psnr_per_image,
            labels=dataset.labels,
            class_names=dataset.class_names,
            handcrafted=dataset.handcrafted,
            factors=dataset.factors,
            factor_names=list(dataset.factor_names),
            factor_sizes=list(dataset.factor_sizes),
            sampler=dataset.sampler,
            encode=encoder_function(run.model, batch_size=batch_size),
        )
        metrics = evaluate_codes(inputs, options)
        rows.append(TableRow(row_name="", model_name=run.model_name, run=str(run_path), metrics=metrics))
        run_records.append(
            {
                "run": str(run_path),
                "model": run.model_name,
                "iteration": run.iteration,
                "data": {
                    "spec": spec,
                    "split": split_name,
                    "n_images": len(dataset),
                    "evaluated_on": evaluated_on,
                    "latent_dim": int(means.shape[1]),
                },
            }
        )
    names = unique_row_names([r.model_name for r in rows], [Path(r.run).name for r in rows])
    for row, name, record in zip(rows, names, run_records, strict=True):
        row.row_name = name
        record["row"] = name
        record["metrics"] = {key: value.to_dict() for key, value in row.metrics.items()}
    relative = relative_change(rows)
    settings = {key: getattr(options, key) for key in options.__dataclass_fields__}
    evaluated = sorted({record["data"]["evaluated_on"] for record in run_records})
    markdown = format_markdown(rows, evaluated_on="; ".join(evaluated), relative=relative)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "table1.md", markdown)
    atomic_write_text(out / "table1.csv", format_csv(rows))
    atomic_write_json(
        out / "metrics.json",
        {
            "factorlens_version": __version__,
            # data_spec is the --data override; null means each run was evaluated on its own recorded
            # test split, which evaluated_on (and each run's "data") spells out.
            "data_spec": data_spec,
            "evaluated_on": "; ".join(evaluated),
            "options": settings,
            "columns": {
                name: {"column": METRICS.get(name).column, "percent": METRICS.get(name).percent}
                for name in TABLE_ORDER
            },
            "runs": run_records,
            "relative_to_btcvae": relative,
            "relative_to_btcvae_definition": "(m - m_btcvae) / |m_btcvae|, same metric and data",
        },
    )
    return markdown
