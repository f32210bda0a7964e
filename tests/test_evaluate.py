"""Table 1: evaluate_codes on arrays, the table writers, and evaluate_runs on tiny trained runs."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from factorlens.evaluation import (
    EvaluationInputs,
    EvaluationOptions,
    TableRow,
    evaluate_codes,
    format_markdown,
    relative_change,
)
from factorlens.metrics import mig_pathology
from factorlens.models import MODELS, ModelEntry
from factorlens.models.base import LatentModel, StepOutput
from factorlens.training import train


def lesion_like_inputs(with_masks: bool) -> EvaluationInputs:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 240)
    handcrafted = rng.random((240, 3)) if with_masks else None
    codes = np.c_[np.eye(3)[labels] + rng.normal(0, 0.2, (240, 3)), rng.normal(size=(240, 2))]
    return EvaluationInputs(
        codes=codes,
        psnr_per_image=np.full(240, 25.0),
        labels=labels,
        class_names=["a", "b", "c"],
        handcrafted=handcrafted,
    )


def test_evaluate_codes_reports_na_with_reason_never_zero():
    options = EvaluationOptions(nmi_seeds=2, folds=4)
    results = evaluate_codes(lesion_like_inputs(with_masks=False), options)
    assert results["mig_hf"].value is None and "mask" in results["mig_hf"].reason
    assert results["dci"].value is None and "factors" in results["dci"].reason
    assert results["factor_vae"].value is None and "opt-in" in results["factor_vae"].reason
    inputs = lesion_like_inputs(with_masks=False)
    expected = mig_pathology(inputs.codes, inputs.labels, 3).score
    assert results["mig_p"].value == pytest.approx(expected, abs=1e-12)
    assert results["psnr"].value == pytest.approx(25.0)
    assert results["acc"].value > 0.9 and results["acc"].std is not None
    with_masks = evaluate_codes(lesion_like_inputs(with_masks=True), options)
    assert with_masks["mig_hf"].value is not None and with_masks["mig_hf"].value < 0.1  # masks unrelated


def test_relative_change_and_markdown_follow_the_paper():
    def row(model, value):
        return TableRow(
            row_name={"btcvae": "β-TCVAE", "btcvae-adv": "Ours-Adv"}[model],
            model_name=model,
            run=model,
            metrics={"mig_p": MetricStub(value), "mig_hf": MetricStub(None, reason="no masks")},
        )

    from factorlens.evaluation import MetricValue as MetricStub

    rows = [row("btcvae", 0.1), row("btcvae-adv", 0.25)]
    relative = relative_change(rows)
    assert relative["Ours-Adv"]["mig_p"] == pytest.approx(1.5) and relative["β-TCVAE"]["mig_p"] == 0.0
    assert relative["Ours-Adv"]["mig_hf"] is None
    for r in rows:
        r.metrics.update(
            {
                name: MetricStub(None, reason="x")
                for name in (
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
                )
            }
        )
    table = format_markdown(rows, evaluated_on="test", relative=relative)
    assert "| Ours-Adv | 25.00 | n/a |" in table and "MIG_hf % n/a: no masks." in table
    assert "+150.0%" in table


class TinyVAE(LatentModel):
    """One strided conv encoder, linear decoder upsampled x8 (fast enough to train for a few steps)."""

    def __init__(self, channels: int = 3, latent_dim: int = 3) -> None:
        super().__init__()
        self.channels, self.latent_dim = channels, latent_dim
        self.enc = nn.Conv2d(channels, 4, kernel_size=8, stride=8)
        self.head = nn.Linear(4 * 8 * 8, 2 * latent_dim)
        self.dec = nn.Linear(latent_dim, channels * 8 * 8)

    def encode(self, x):
        return self.head(torch.relu(self.enc(x)).flatten(1)).chunk(2, dim=1)

    def decode(self, z):
        small = self.dec(z).view(-1, self.channels, 8, 8)
        return torch.sigmoid(nn.functional.interpolate(small, scale_factor=8, mode="nearest"))

    def compute_loss(self, x, *, dataset_size):
        mu, logvar = self.encode(x)
        x_hat = self.decode(mu + torch.randn_like(mu) * torch.exp(0.5 * logvar))
        rec = (x_hat - x).pow(2).flatten(1).sum(1).mean()
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1).mean()
        return StepOutput(rec + kl, {"rec": rec.detach(), "kl": kl.detach()}, x_hat)

    def first_decoder_layer_weight(self):
        return self.dec.weight


@pytest.fixture()
def tiny_runs(monkeypatch, tmp_path):
    # The registry models are not needed to test evaluation; the run format and load_run are. The two
    # paper names are overridden by a tiny model (the public seam), so the rows keep the paper's names.
    monkeypatch.setenv("FACTORLENS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("FACTORLENS_NO_PROGRESS", "1")
    entry = ModelEntry(TinyVAEConfig, lambda config, channels: TinyVAE(channels=channels), "test model")
    with MODELS.override("btcvae", entry), MODELS.override("btcvae-adv", entry):
        yield _train_tiny_runs(tmp_path)


@dataclass(frozen=True)
class TinyVAEConfig:
    pass


def _train_tiny_runs(tmp_path):
    runs = []
    for name, seed in (("btcvae", 1), ("btcvae-adv", 2)):
        config = {
            "model": {"name": name},
            "data": {"spec": "synthetic-lesions:n=300"},
            "train": {
                "iterations": 8,
                "batch_size": 16,
                "lr": 3e-3,
                "log_every": 4,
                "checkpoint_every": 8,
                "num_threads": 1,
                "seed": seed,
            },
        }
        runs.append(train(config, tmp_path / name))
    return runs


def test_evaluate_runs_writes_table1_for_trained_runs(tiny_runs, tmp_path):
    from factorlens.evaluation import evaluate_runs

    out = tmp_path / "results"
    table = evaluate_runs(tiny_runs, out_dir=out, dci_model="random-forest")
    assert table == (out / "table1.md").read_text(encoding="utf-8")
    assert "| β-TCVAE |" in table and "| Ours-Adv |" in table
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    first = metrics["runs"][0]
    split = json.loads((tiny_runs[0] / "split.json").read_text(encoding="utf-8"))
    assert first["data"]["split"] == "test" and first["data"]["n_images"] == len(split["test"])
    assert first["metrics"]["mig_p"]["estimator"].startswith("binned-20")
    # Independent check of one number: PSNR from the run's own model on its test images.
    from factorlens.training import load_run

    run = load_run(tiny_runs[0])
    images = run.load_dataset().images[split["test"]]
    with torch.no_grad():
        x = torch.as_tensor(images).double() / 255.0
        x_hat = run.model.decode(run.model.encode(x.float())[0]).double()
    mse = ((x - x_hat) ** 2).flatten(1).mean(1).numpy()
    assert first["metrics"]["psnr"]["value"] == pytest.approx(
        float(np.mean(10 * np.log10(1 / mse))), rel=1e-5
    )
    rel = metrics["relative_to_btcvae"]["Ours-Adv"]["psnr"]
    second = metrics["runs"][1]["metrics"]["psnr"]["value"]
    assert rel == pytest.approx(
        (second - first["metrics"]["psnr"]["value"]) / first["metrics"]["psnr"]["value"]
    )
    with (out / "table1.csv").open(encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0][:3] == ["Model", "run", "MIG_p %"] and [r[0] for r in rows[1:]] == ["β-TCVAE", "Ours-Adv"]
    assert float(rows[1][2]) == pytest.approx(100 * first["metrics"]["mig_p"]["value"], abs=1e-4)


def test_evaluate_cli_prints_the_table(tiny_runs, tmp_path, capsys):
    from factorlens.cli.main import main

    code = main(
        ["evaluate", str(tiny_runs[0]), "--out", str(tmp_path / "cli"), "--dci-model", "random-forest"]
    )
    assert code == 0
    assert capsys.readouterr().out == (tmp_path / "cli" / "table1.md").read_text(encoding="utf-8")
    assert main(["evaluate", str(tiny_runs[0]), "--out", str(tmp_path / "x"), "--dci-model", "nope"]) == 2


def test_table1_exact_mig_on_dsprites_scores_chen_s_four_factors() -> None:
    from factorlens.data.dsprites import exact_mig_factors
    from factorlens.evaluation import METRICS

    sizes = [3, 2, 2, 2, 2]  # a small grid with dSprites' factor names, in the canonical order
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in sizes], indexing="ij"), axis=-1).reshape(-1, 5)
    codes = grid[:, 1:].astype(float) * 3.0  # one latent per non-shape factor
    inputs = EvaluationInputs(
        codes=codes,
        logvars=np.full(codes.shape, np.log(0.01)),
        factors=grid,
        factor_names=["shape", "scale", "orientation", "posX", "posY"],
        factor_sizes=sizes,
        # the dataset says which factors exact MIG scores (ImageDataset.exact_mig_factors of dSprites)
        exact_mig_factors=exact_mig_factors(["shape", "scale", "orientation", "posX", "posY"]),
    )
    value = METRICS.get("mig_exact").compute(inputs, EvaluationOptions(exact_mig=True, exact_mig_samples=200))
    assert value.estimator == "chen-exact-S200[scale,orientation,posX,posY]"
    assert value.details["factors_scored"] == ["scale", "orientation", "posX", "posY"]
    assert value.value > 0.9
