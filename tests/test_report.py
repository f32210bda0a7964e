"""The HTML report: self-contained (only data: URIs and in-page anchors), every image decodes, Table 1 and
direction sets included. Runs are faked around the spy model of test_viz (no training needed)."""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image
from test_viz import SpyLinearModel, graded_images

import factorlens.training
from factorlens.config import DataConfig, ModelSection, RunConfig, TrainConfig
from factorlens.data.base import ImageDataset
from factorlens.errors import FactorlensError
from factorlens.io import atomic_write_json, atomic_write_text
from factorlens.training import Run
from factorlens.viz.grid import save_grid
from factorlens.viz.report import write_report


class LinkCollector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href"):
                self.links.append((tag, name, value or ""))
            if name == "id":
                self.ids.add(value)


@dataclass(frozen=True)
class SpyConfig:
    latent_dim: int = 4


def fake_run(path, n_images: int = 12) -> Run:
    path.mkdir(parents=True, exist_ok=True)
    records = [
        {"iter": i, "time_s": i * 0.5, "images_per_s": 200.0, "loss": 100.0 / i, "kl": 2.0 + i}
        for i in range(10, 60, 10)
    ]
    atomic_write_text(path / "log.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    dataset = ImageDataset(
        name="graded",
        spec="graded:n=12",
        images=graded_images(n_images),
        ids=[f"img{i}" for i in range(n_images)],
        # brightness tercile: the spy encoder's codes are monotone in brightness, so MI is high
        factors=(np.arange(n_images) * 3 // n_images)[:, None],
        factor_names=["brightness"],
        factor_sizes=[3],
    )
    config = RunConfig(
        model=ModelSection(name="spy", network=None, params=SpyConfig(latent_dim=4)),
        train=TrainConfig(iterations=50),
        data=DataConfig(spec="graded:n=12", test_fraction=0.5, split_seed=0),
    )
    split = {"train": list(range(0, n_images, 2)), "test": list(range(1, n_images, 2)), "n": n_images}
    return Run(
        path=path,
        config=config,
        model=SpyLinearModel(),
        split=split,
        model_name="spy",
        iteration=50,
        _dataset=dataset,
    )


@pytest.fixture()
def two_runs(tmp_path, monkeypatch):
    runs = {str(tmp_path / name): fake_run(tmp_path / name) for name in ("run-a", "run-b")}
    monkeypatch.setattr(factorlens.training, "load_run", lambda p: runs[str(p)])
    # a direction set in run-a, as the directions pipeline writes it
    folder = tmp_path / "run-a" / "directions" / "sefa"
    save_grid(np.full((1, 2, 1, 64, 64), 0.25), folder / "traversal.png")
    atomic_write_json(
        folder / "directions.json",
        {
            "method": "sefa",
            "figures": {
                "traversal.png": "sefa directions: traversals of one base code",
                "missing.png": "never drawn",
            },
        },
    )
    atomic_write_json(folder / "scores.json", {"method": "sefa", "mig": 0.4321, "rca": {"ours": 0.9}})
    return [tmp_path / "run-a", tmp_path / "run-b"]


def test_report_is_self_contained_and_every_image_decodes(tmp_path, two_runs):
    results = tmp_path / "results"
    results.mkdir()
    atomic_write_text(results / "table1.csv", "model,MIG,SAP\nbtcvae-adv,0.3141,0.0271\nvae,0.0912,0.0055\n")
    out = write_report(two_runs, tmp_path / "report.html", results_dir=results, n_images=2, steps=4)
    text = out.read_text(encoding="utf-8")
    parser = LinkCollector()
    parser.feed(text)
    images = [value for tag, name, value in parser.links if tag == "img"]
    for tag, name, value in parser.links:
        assert value.startswith("data:image/") or value.startswith("#"), (tag, name, value[:40])
        if value.startswith("#"):
            assert value[1:] in parser.ids  # every table-of-contents entry lands somewhere
    # per run: curves, prior samples, reconstructions, KL bars, MI heat map, traversal png+gif,
    # walk png+gif = 9;
    # plus the one drawn direction figure of run-a
    assert len(images) == 2 * 9 + 1
    formats = []
    for uri in images:
        header, payload = uri.split(",", 1)
        image = Image.open(io.BytesIO(base64.b64decode(payload)))
        image.load()
        formats.append(image.format)
        assert header == f"data:image/{image.format.lower()};base64"
    assert formats.count("GIF") == 4
    assert "<script" not in text and "<link" not in text
    # Table 1 values, direction scores and captions are in the page
    for value in ("0.3141", "0.0271", "btcvae-adv", "0.0055"):
        assert f"<td>{value}</td>" in text
    assert "<td>mig</td><td>0.4321</td>" in text and "<td>rca.ours</td><td>0.9</td>" in text
    assert "sefa directions: traversals of one base code" in text and "never drawn" not in text
    assert "4 values in [-3, 3]" in text  # the traversal caption says how it was made
    assert "labels name the factor sharing most mutual information (20 bins)" in text
    assert out.stat().st_size < 3_000_000
    # figures and their manifest were written into each run
    manifest = json.loads((two_runs[1] / "figures" / "figures.json").read_text())["figures"]
    assert list(manifest)[:2] == ["training_curves.png", "prior_samples.png"]
    assert all((two_runs[1] / "figures" / name).is_file() for name in manifest)


def test_report_renders_table1_md_as_html_with_the_evaluated_runs(tmp_path, two_runs):
    results = tmp_path / "results"
    results.mkdir()
    # the shape factorlens evaluate writes: table, notes, n/a reasons, relative-change table
    atomic_write_text(
        results / "table1.md",
        "| Model | MIG_p % | ACC % |\n| --- | ---: | ---: |\n| VAE | 7.77 | 41.20 ± 3.10 |\n"
        "| Ours-Adv | n/a | 55.00 ± 1.00 |\n\nEvaluated on: the run's test split.\n"
        "- MIG_p % n/a: no labels.\n\nRelative change:\n\n| Model | ACC % |\n| --- | ---: |\n"
        "| Ours-Adv | +33.5% |\n",
    )
    atomic_write_text(results / "table1.csv", "Model,run\nignored-when-md-exists,x\n")
    atomic_write_json(
        results / "metrics.json",
        {
            "runs": [
                {
                    "run": "runs/vae",
                    "row": "VAE",
                    "model": "vae",
                    "iteration": 1000,
                    "data": {"evaluated_on": "all 77 images of folder:/data"},
                }
            ]
        },
    )
    text = write_report(
        two_runs[1:], tmp_path / "r.html", results_dir=results, n_images=1, steps=3
    ).read_text()
    table1 = text[text.index('id="table1"') : text.index('id="machines"')]  # the machines table follows
    assert "<th>Model</th><th>MIG_p %</th><th>ACC %</th>" in table1
    assert "<tr><td>VAE</td><td>7.77</td><td>41.20 ± 3.10</td></tr>" in table1
    assert "<tr><td>Ours-Adv</td><td>n/a</td><td>55.00 ± 1.00</td></tr>" in table1
    assert "<li>MIG_p % n/a: no labels.</li>" in table1 and "<td>+33.5%</td>" in table1
    assert table1.count("<table>") == 3 and "ignored-when-md-exists" not in table1
    assert "<td>all 77 images of folder:/data</td>" in table1 and "<td>1000</td>" in table1
    with pytest.raises(FactorlensError, match="neither table1.md nor table1.csv"):
        write_report(two_runs[1:], tmp_path / "r2.html", results_dir=tmp_path / "run-b", n_images=1, steps=3)
    assert not (tmp_path / "r2.html").exists()


def test_traversal_rows_capped_to_the_dimensions_with_most_kl(tmp_path, two_runs):
    from factorlens.viz.run_figures import make_run_figures

    run = factorlens.training.load_run(two_runs[0])
    manifest = make_run_figures(run, tmp_path / "figs", n_images=2, steps=3, max_dims=2)
    # spy model: dimension 1 has the most KL, then 3; 2 images x 2 dimensions x 3 steps of 128 px tiles
    grid = Image.open(tmp_path / "figs" / "traversal.png")
    assert grid.height == 6 + 28 + 26 + 4 * 128 + 3 * 2 + 6  # margin, title, column labels, rows
    assert "only the 2 dimensions with the most KL are shown" in manifest["traversal.png"]
    with pytest.raises(FactorlensError, match="max_dims must be at least 1"):
        make_run_figures(run, tmp_path / "figs", max_dims=0)


def test_direction_sections_get_distinct_anchors_even_when_names_differ_only_in_punctuation(tmp_path):
    import json as _json

    from factorlens.viz.report import directions_html

    run = tmp_path / "run"
    for name in ("a b", "a-b", "a_b"):
        folder = run / "directions" / name
        folder.mkdir(parents=True)
        (folder / "directions.json").write_text(_json.dumps({"method": "sefa", "figures": {}}))
    html, toc = directions_html(run, "run0-x")
    anchors = [anchor for anchor, _ in toc]
    assert len(set(anchors)) == 3, anchors
    for anchor in anchors:
        assert html.count(f'id="{anchor}"') == 1
