"""Cross-checks of ``evaluate_runs`` plumbing with deterministic stand-in runs (no training needed): the
right split is encoded, PSNR and MIG_hf match independent computations on that split, relative changes
follow (m - m_btcvae) / m_btcvae, rows carry the paper's names, and missing masks give n/a, never 0."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import factorlens.training
from factorlens.config import DataConfig, ModelSection, RunConfig
from factorlens.data import load_dataset, to_float
from factorlens.metrics.mig import mig_handcrafted
from factorlens.models.base import LatentModel

SPEC = "synthetic-lesions:n=160"


@dataclass(frozen=True)
class PoolingConfig:
    """The fake runs' model options (none)."""


class PoolingModel(LatentModel):
    """Deterministic stand-in: means are a fixed random projection of 2x2-pooled channel averages; the
    decoder outputs mid-grey, so each image's PSNR is 10 log10(1 / mean((x - 0.5)^2))."""

    def __init__(self, seed: int, latent_dim: int = 4, channels: int = 3) -> None:
        super().__init__()
        self.latent_dim, self.channels = latent_dim, channels
        generator = torch.Generator().manual_seed(seed)
        self.projection = torch.randn(channels * 4, latent_dim, generator=generator)

    def encode(self, x):
        pooled = torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1)
        mu = pooled @ self.projection
        return mu, torch.zeros_like(mu)

    def decode(self, z):
        return torch.full((z.shape[0], self.channels, 64, 64), 0.5)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("FACTORLENS_CACHE", str(tmp_path_factory.mktemp("cache")))
    try:
        yield load_dataset(SPEC, progress=False)
    finally:
        mp.undo()


def fake_runs(monkeypatch, dataset, tmp_path: Path, models: dict[str, int], *, data=None):
    """Run directories named after models, served by a patched ``load_run``; test split = every 5th image."""
    test = np.arange(0, len(dataset), 5)
    split = {"train": sorted(set(range(len(dataset))) - set(test.tolist())), "test": test.tolist(),
             "n": len(dataset)}
    runs = {}
    for name, seed in models.items():
        path = tmp_path / name
        path.mkdir()
        served = data if data is not None else dataset
        config = RunConfig(model=ModelSection(name, None, PoolingConfig()), data=DataConfig(spec=SPEC))
        runs[str(path)] = SimpleNamespace(path=path, config=config, split=split,
                                          model=PoolingModel(seed), model_name=name, iteration=7,
                                          load_dataset=lambda progress=False, served=served: served)
    monkeypatch.setattr(factorlens.training, "load_run", lambda p: runs[str(p)])
    return list(runs), test


def test_evaluate_runs_values_files_and_relative_change(monkeypatch, tmp_path, dataset):
    from factorlens.evaluation import evaluate_runs

    paths, test = fake_runs(monkeypatch, dataset, tmp_path, {"btcvae": 0, "btcvae-adv": 1})
    out = tmp_path / "table"
    markdown = evaluate_runs(paths, out_dir=out, seed=0, dci_model="random-forest")
    result = json.loads((out / "metrics.json").read_text())
    by_model = {r["model"]: r for r in result["runs"]}
    assert {r["row"] for r in result["runs"]} == {"β-TCVAE", "Ours-Adv"}
    assert "| β-TCVAE |" in markdown and "| Ours-Adv |" in markdown
    assert (out / "table1.md").read_text().strip() == markdown.strip()

    images = dataset.images[test]
    x = to_float(images).double().numpy()
    expected_psnr = np.mean(10 * np.log10(1 / ((x - 0.5) ** 2).reshape(len(x), -1).mean(axis=1)))
    for name, seed in (("btcvae", 0), ("btcvae-adv", 1)):
        record = by_model[name]
        assert record["data"]["split"] == "test" and record["data"]["n_images"] == len(test)
        assert record["metrics"]["psnr"]["value"] == pytest.approx(expected_psnr, rel=1e-6)
        with torch.no_grad():
            codes = PoolingModel(seed).encode(to_float(images))[0].double().numpy()
        expected_hf = mig_handcrafted(codes, dataset.handcrafted[test]).score
        assert record["metrics"]["mig_hf"]["value"] == pytest.approx(expected_hf, abs=1e-9)

    base = by_model["btcvae"]["metrics"]
    adv = by_model["btcvae-adv"]["metrics"]
    relative = result["relative_to_btcvae"]["Ours-Adv"]
    for key in ("mig_p", "mig_hf", "nmi", "acc"):
        expected = (adv[key]["value"] - base[key]["value"]) / abs(base[key]["value"])
        assert relative[key] == pytest.approx(expected, rel=1e-9)
    assert relative["psnr"] == pytest.approx(0.0, abs=1e-12)  # same decoder, same images

    with (out / "table1.csv").open() as handle:
        rows = list(csv.reader(handle))
    assert len(rows) == 3  # header + one line per run


def test_evaluate_runs_without_masks_reports_mig_hf_not_applicable(monkeypatch, tmp_path, dataset):
    from factorlens.evaluation import evaluate_runs

    no_masks = dataset.subset(np.arange(len(dataset)))
    no_masks.handcrafted, no_masks.masks = None, None
    paths, _ = fake_runs(monkeypatch, dataset, tmp_path, {"vae": 0}, data=no_masks)
    markdown = evaluate_runs(paths, out_dir=tmp_path / "t", seed=0, dci_model="random-forest")
    record = json.loads((tmp_path / "t" / "metrics.json").read_text())["runs"][0]
    assert record["metrics"]["mig_hf"]["value"] is None
    assert record["metrics"]["mig_hf"]["reason"]
    vae_line = next(line for line in markdown.splitlines() if line.startswith("| VAE |"))
    assert vae_line.split("|")[3].strip() == "n/a"  # the MIG_hf column, never 0


def test_evaluate_command_prints_table_and_maps_errors(monkeypatch, tmp_path, dataset, capsys):
    from factorlens.cli.main import main

    paths, _ = fake_runs(monkeypatch, dataset, tmp_path, {"beta-vae": 0})
    assert main(["evaluate", *paths, "--out", str(tmp_path / "o"), "--dci-model", "random-forest"]) == 0
    printed = capsys.readouterr().out
    assert "| β-VAE |" in printed
    assert printed.strip() == (tmp_path / "o" / "table1.md").read_text().strip()
    monkeypatch.undo()  # the real load_run: a missing run directory is a one-line user error, exit 2
    assert main(["evaluate", str(tmp_path / "missing"), "--out", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "missing" in err and len(err.splitlines()) == 1
