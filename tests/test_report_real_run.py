"""End to end on a real run directory: ``factorlens.training.train`` of a small ``vae`` on
``synthetic-lesions:n=128``, then the figures and the report read everything back through ``load_run``
(no faked pieces; Table 1 rendering is tested in test_report, ``evaluate_runs`` takes too long here)."""

from __future__ import annotations

import base64
import io
import json
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from factorlens.training import load_run, train
from factorlens.viz.report import write_report
from factorlens.viz.run_figures import figure_data, latent_stats
from factorlens.viz.traversals import traverse

DATA_SPEC = "synthetic-lesions:n=128"
LATENT_DIM = 4


class Sources(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.links += [value or "" for name, value in attrs if name in ("src", "href")]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        base = tmp_path_factory.mktemp("real-run")
        patch.setenv("FACTORLENS_CACHE", str(base / "cache"))
        patch.setenv("FACTORLENS_NO_PROGRESS", "1")
        config = {
            "model": {"name": "vae", "latent_dim": LATENT_DIM},
            "train": {
                "iterations": 6,
                "batch_size": 16,
                "log_every": 2,
                "checkpoint_every": 6,
                "seed": 0,
                "num_threads": 1,
            },
            "data": {"spec": DATA_SPEC, "test_fraction": 0.25, "split_seed": 0},
        }
        yield train(config, base / "vae")


def test_traversal_of_a_trained_run_sweeps_each_dimension_of_the_decoded_codes(trained_run):
    run = load_run(trained_run)
    data = figure_data(run)
    assert list(data.pool) == run.split["test"]
    stats = latent_stats(run.model, data)
    images = data.dataset.images[data.pool[:2]]
    traversal = traverse(run.model, images, steps=3, span=1.5, kl_per_dim=stats.kl_per_dim)
    assert traversal.images.shape == (2 * LATENT_DIM, 3, 3, 64, 64)
    assert [row.dim for row in traversal.rows[:LATENT_DIM]] == list(
        np.argsort(-stats.kl_per_dim, kind="stable")
    )
    # column k of row (image 0, dimension d) is decode(mu(image 0) with z_d = values[k])
    import torch

    with torch.no_grad():
        mu, _ = run.model.encode(torch.as_tensor(images[:1]).float() / 255.0)
        dim = traversal.rows[0].dim
        codes = mu.repeat(3, 1)
        codes[:, dim] = torch.tensor([-1.5, 0.0, 1.5])
        expected = run.model.decode(codes).clamp(0, 1).numpy()
    np.testing.assert_allclose(traversal.images[0], expected, atol=1e-5)


def test_report_of_a_trained_run_embeds_every_figure(trained_run, tmp_path):
    run_path = trained_run
    out = write_report([run_path], tmp_path / "report.html", n_images=1, steps=3)
    text = out.read_text(encoding="utf-8")
    parser = Sources()
    parser.feed(text)
    embedded = [link for link in parser.links if link.startswith("data:")]
    assert all(
        link.startswith(("data:image/png;base64,", "data:image/gif;base64,", "#")) for link in parser.links
    )
    for uri in embedded:
        Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).load()
    manifest = json.loads((run_path / "figures" / "figures.json").read_text())["figures"]
    assert len(embedded) == len(manifest) == 9  # curves, prior, recon, KL, MI, traversal+gif, walk+gif
    from factorlens.viz.panels import loss_terms

    assert loss_terms(load_run(run_path).log()) == ["loss", "rec", "kl"]  # one curve panel each
    without_machines = text[: text.index('<h2 id="machines"')] + text[text.index('<h2 id="run0'):]
    assert "<td>" not in without_machines  # no results dir given: no Table 1
    assert "test split (32 images)" in manifest["traversal.png"]
    # the MI labels come from the dataset's ground-truth factors
    assert "labels name the factor sharing most mutual information" in text
    assert out.stat().st_size < 2_000_000
