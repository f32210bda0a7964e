"""Table 1 of Sarhan et al. (2019) for trained runs, plus the factor-based metrics the data allows.

:func:`evaluate_runs` encodes each run's evaluation images once (:func:`score_images`: posterior and the
PSNR of the decoded means, in one pass), computes every applicable metric
(:func:`~factorlens.evaluation.adapters.evaluate_codes`) and writes ``table1.md``, ``table1.csv`` and
``metrics.json`` (:func:`write_results`). The tables use the paper's row names and its relative change
over β-TCVAE.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from factorlens.errors import DataError
from factorlens.evaluation.adapters import (
    METRICS,
    TABLE_ORDER,
    EvaluationInputs,
    EvaluationOptions,
    MetricValue,
    evaluate_codes,
)
from factorlens.evaluation.compare import run_provenance, write_seed_results
from factorlens.evaluation.images import evaluation_images
from factorlens.evaluation.posterior import ENCODE_BATCH, encode_images, evaluating
from factorlens.metrics.interventional import EncodeFn
from factorlens.schema import parse

# Paper row names (Table 1) for the model registry names.
PAPER_ROW_NAMES = {
    "vae": "VAE",
    "beta-vae": "β-VAE",
    "btcvae": "β-TCVAE",
    "btcvae-resnet": "Ours-resnet",
    "btcvae-adv": "Ours-Adv",
}
BASELINE_MODEL = "btcvae"  # the paper's relative improvements are over β-TCVAE


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
    extras = [n for n in TABLE_ORDER
              if n not in paper and any(n in r.metrics and r.metrics[n].value is not None for r in rows)]
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


# --- runs -----------------------------------------------------------------------------------------------


def score_images(model, dataset, *, batch_size: int = ENCODE_BATCH) -> EvaluationInputs:
    """The metrics' inputs for the images of ``dataset`` (an :class:`~factorlens.data.ImageDataset`):
    posterior means and log-variances, the PSNR of each image's reconstruction from its mean code (no
    sampling, so PSNR is deterministic; decoded in the same pass), and the dataset's labels, factors
    and sampler."""
    from factorlens.metrics.reconstruction import psnr

    psnrs = []

    def reconstruct(x, mu, logvar) -> None:
        x_hat = model.decode(mu)
        psnrs.append(psnr(x.double().numpy(), x_hat.double().clamp(0, 1).numpy()).per_image)

    posterior = encode_images(model, dataset.images, batch_size=batch_size, each_batch=reconstruct)
    if not len(posterior):
        raise DataError("no images to evaluate")
    return EvaluationInputs(
        codes=posterior.mean,
        logvars=posterior.logvar,
        psnr_per_image=np.concatenate(psnrs),
        labels=dataset.labels,
        class_names=dataset.class_names,
        handcrafted=dataset.handcrafted,
        factors=dataset.factors,
        factor_names=list(dataset.factor_names),
        factor_sizes=list(dataset.factor_sizes),
        exact_mig_factors=dataset.exact_mig_factors,
        sampler=dataset.sampler,
        encode=encoder_function(model, batch_size=batch_size),
        decode=decoder_function(model),
        latent_dim=model.latent_dim,
        first_layer_weight=_first_layer_weight(model),
    )


def decoder_function(model):
    """``float32 [n, d] -> float32 [n, C, H, W]`` decodes in eval mode without gradients (the VP score)."""
    import torch

    def decode(codes: np.ndarray) -> np.ndarray:
        with evaluating(model), torch.no_grad():
            return model.decode(torch.from_numpy(np.asarray(codes, dtype=np.float32))).float().numpy()

    return decode


def _first_layer_weight(model) -> np.ndarray | None:
    try:
        return model.first_decoder_layer_weight().detach().double().numpy()
    except NotImplementedError:
        return None


def encoder_function(model, *, batch_size: int = ENCODE_BATCH) -> EncodeFn:
    """``uint8 [n, C, 64, 64] -> float64 [n, D]`` encoder means (for the interventional scores)."""

    def encode(images: np.ndarray) -> np.ndarray:
        return encode_images(model, images, batch_size=batch_size).mean

    return encode


def evaluate_runs(
    run_paths: Sequence[str | Path],
    data_spec: str | None = None,
    out_dir: str | Path = "results",
    *,
    seed: int = 0,
    batch_size: int = ENCODE_BATCH,
    dci_model: str = "gbt",
    interventional: bool = False,
    interventional_train: int = 10_000,
    interventional_eval: int = 5_000,
    exact_mig: bool = False,
    exact_mig_samples: int = 10_000,
    vp: bool = False,
    vp_pairs: int = 10_000,
    vp_axes: str = "identity",
    progress: bool = False,
) -> str:
    """Table 1 for trained runs: writes ``out_dir/table1.md``, ``table1.csv``, ``metrics.json``.

    Args:
        run_paths: run directories written by ``factorlens train``.
        data_spec: evaluate on this dataset (all of it) instead of each run's own test split (see
            :func:`~factorlens.evaluation.evaluation_images`; an empty test split is not replaced).
        out_dir: output folder (created).
        seed: seed of every randomised metric (GMM seeds are ``0..9`` as in the paper's 10 realisations).
        batch_size: images per encoder/decoder pass.
        dci_model: ``"gbt"`` (dlib) or ``"random-forest"``.
        interventional, interventional_train, interventional_eval: opt-in FactorVAE/BetaVAE scores
            (need a dataset with a sampler) and their number of votes / points.
        exact_mig, exact_mig_samples: opt-in Chen et al. MIG (needs the full factor grid as data).
        vp, vp_pairs, vp_axes: opt-in VP score of the decoder (``"identity"`` or ``"sefa"`` axes).

    Returns:
        the Markdown of ``table1.md``.
    """
    from factorlens.training import load_run

    if not run_paths:
        raise DataError("evaluate needs at least one run directory")
    options = parse(EvaluationOptions, dict(
        seed=seed,
        dci_model=dci_model,
        interventional=interventional,
        interventional_train=interventional_train,
        interventional_eval=interventional_eval,
        exact_mig=exact_mig,
        exact_mig_samples=exact_mig_samples,
        vp=vp,
        vp_pairs=vp_pairs,
        vp_axes=vp_axes,
    ), where="evaluate_runs()", prefix="evaluate")
    datasets: dict[str, object] = {}  # spec -> dataset, loaded once for runs sharing it
    rows, run_records = [], []
    for run_path in run_paths:
        run = load_run(run_path)
        if not run.model.has_encoder:
            raise DataError(f"run {run_path} ({run.model_name}) has no encoder; Table 1 needs one")
        chosen = evaluation_images(run, data_spec, all_if_empty=False, progress=progress, datasets=datasets)
        dataset = chosen.subset()
        run_spec = run.config.data.spec
        if chosen.own:
            evaluated_on = (
                f"the run's recorded test split ({len(dataset)} of {run.split['n']} images of {run_spec})"
            )
        else:
            evaluated_on = f"all {len(dataset)} images of {data_spec} (the run was trained on {run_spec})"
        inputs = score_images(run.model, dataset, batch_size=batch_size)
        metrics = evaluate_codes(inputs, options)
        rows.append(TableRow(row_name="", model_name=run.model_name, run=str(run_path), metrics=metrics))
        run_records.append(
            {
                "run": str(run_path),
                "model": run.model_name,
                "iteration": run.iteration,
                **run_provenance(run),  # seed, config (grouping over seeds), trained_on (summary.json)
                "data": {
                    "spec": chosen.spec,
                    "split": chosen.split,
                    "n_images": len(dataset),
                    "evaluated_on": evaluated_on,
                    "latent_dim": int(inputs.codes.shape[1]),
                },
            }
        )
    return write_results(out_dir, rows, run_records, options=options, data_spec=data_spec)


def write_results(
    out_dir: str | Path,
    rows: list[TableRow],
    run_records: list[dict],
    *,
    options: EvaluationOptions,
    data_spec: str | None,
) -> str:
    """Name the rows, then write ``table1.md``, ``table1.csv`` and ``metrics.json`` (atomically) into
    ``out_dir`` (created); returns the Markdown. ``run_records``: one dict per row (run, model, iteration,
    data), completed here with the row name and every metric."""
    from factorlens import __version__
    from factorlens.environment import machine_record
    from factorlens.io import atomic_write_json, atomic_write_text

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
            "environment": machine_record("fp32"),  # where this evaluation ran (the encoder pass is fp32)
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
    # Runs of one config with several seeds: mean ± std, per seed, paired differences (seeds.md ...).
    seeds = write_seed_results(out, json.loads((out / "metrics.json").read_text(encoding="utf-8")))
    return markdown + ("\n" + seeds if seeds else "")
