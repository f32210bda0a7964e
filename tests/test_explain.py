"""Explain (DiffEx): contrastive loss, AttFind, target index, alpha units, classifiers, CLI bad inputs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from factorlens.directions.adapter import GeneratorAdapter
from factorlens.errors import CheckpointError
from factorlens.explain.attfind import attfind, effect_table
from factorlens.explain.classifier import (
    Classifier,
    ClassifierOptions,
    SmallCNN,
    balanced_accuracy,
    class_balanced_weights,
    confusion_matrix,
    load_classifier,
    save_classifier,
    train_classifier,
)
from factorlens.explain.contrastive import (
    ContrastiveOptions,
    EditModels,
    contrastive_loss,
    edit_codes,
)
from factorlens.explain.pipeline import ExplainOptions, explain

GAN_RUN = Path(__file__).parent / "fixtures" / "v1-gan-run"


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("FACTORLENS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("FACTORLENS_NO_PROGRESS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the machine is shared: one thread is faster than two contended ones
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------ contrastive loss
def test_contrastive_loss_matches_pairwise_loops():
    gen = torch.Generator().manual_seed(3)
    k, b, tau = 3, 4, 2.0
    feats = torch.randn(k, b, 5, generator=gen)
    feats = feats / feats.norm(dim=-1, keepdim=True)
    rows = [(i, j) for i in range(k) for j in range(b)]
    pos, neg = [], []
    for p, (ki, bi) in enumerate(rows):
        for q, (kj, bj) in enumerate(rows):
            if p == q:
                continue
            cos = float(np.dot(feats[ki, bi].numpy(), feats[kj, bj].numpy()))
            (pos if ki == kj else neg).append(math.exp(abs(cos) / tau))
    expected = -math.log(np.mean(pos) / np.mean(neg))
    assert len(pos) == k * b * (b - 1) and len(neg) == k * b * (k - 1) * b
    assert float(contrastive_loss(feats, tau)) == pytest.approx(expected, rel=1e-5)


def test_contrastive_loss_prefers_separated_directions():
    # K directions whose features are mutually orthogonal score lower than identical ones.
    eye = torch.eye(3)[:, None, :].expand(3, 2, 3)
    same = torch.ones(3, 2, 3) / math.sqrt(3)
    separated, collapsed = float(contrastive_loss(eye, 2.0)), float(contrastive_loss(same, 2.0))
    assert collapsed == pytest.approx(0.0, abs=1e-6) and separated < -0.1


# ------------------------------------------------------------------ AttFind
def test_attfind_greedy_selection_and_threshold_schedule():
    # 3 directions -> 6 candidates (2k: +, 2k+1: -), 4 images.
    delta = np.array([
        [0.50, 0.50, 0.00, 0.00],  # 0 = dir 0 +: mean 0.25 (not > 0.25 at round 0)
        [0.10, 0.10, 0.10, 0.10],  # 1 = dir 0 -
        [0.40, 0.40, 0.40, 0.40],  # 2 = dir 1 +: best in round 0 (0.40), flips images 0, 1
        [0.00, 0.00, 0.00, 0.00],
        [0.00, 0.00, 0.24, 0.30],  # 4 = dir 2 +: on images 2, 3 mean 0.27 > 0.23 (round 1)
        [0.00, 0.00, 0.60, 0.00],  # 5 = dir 2 -: on images 2, 3 mean 0.30: best in round 1, flips 2
    ])
    flipped = np.zeros_like(delta, dtype=bool)
    flipped[2, [0, 1]] = True
    flipped[5, 2] = True
    steps = attfind(delta, flipped, threshold=0.25, step=0.02, max_directions=3)
    assert [(s.candidate, s.direction, s.sign) for s in steps] == [(2, 1, 1), (5, 2, -1), (4, 2, 1)]
    assert [s.threshold for s in steps] == pytest.approx([0.25, 0.23, 0.21])
    assert [s.images_in_pool for s in steps] == [4, 2, 1]
    assert [s.mean_delta_active for s in steps] == pytest.approx([0.40, 0.30, 0.30])
    # A stricter threshold stops after the first round (no None is appended).
    assert [s.candidate for s in attfind(delta, flipped, threshold=0.38, step=0.07)] == [2]
    assert attfind(delta, flipped, threshold=0.5) == []


def test_effect_table_honours_the_target_index():
    base = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]])
    edited = np.array([[[0.1, 0.1, 0.8], [0.9, 0.05, 0.05]]])  # one candidate
    delta, flipped = effect_table(base, edited, target=2)
    assert delta[0] == pytest.approx([0.7, -0.05])
    assert flipped.tolist() == [[True, False]]
    delta0, flipped0 = effect_table(base, edited, target=0)  # what a hard-coded 0 would measure
    assert delta0[0] == pytest.approx([-0.6, 0.8])
    assert flipped0.tolist() == [[False, True]]


# ------------------------------------------------------------------ alpha units
def test_edit_size_is_alpha_posterior_sigmas():
    gen = torch.Generator().manual_seed(0)
    codes = torch.randn(500, 3, generator=gen) * torch.tensor([3.0, 1.0, 0.2])
    covariance = torch.cov(codes.T)
    edits = EditModels(2, 3, "fixed")
    with torch.no_grad():
        edits.vectors.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 2.0]]))
    z = codes[:4]
    out = edit_codes(edits, z, 2.5, covariance)
    shift = (out - z[None]).norm(dim=-1).detach()
    sd = codes.numpy().std(axis=0, ddof=1)
    assert shift[0].numpy() == pytest.approx(np.full(4, 2.5 * sd[0]), rel=1e-5)
    assert shift[1].numpy() == pytest.approx(np.full(4, 2.5 * sd[2]), rel=1e-5)
    back = edit_codes(edits, z, -2.5, covariance)
    assert torch.allclose((back - z[None]).detach(), -(out - z[None]).detach())


# ------------------------------------------------------------------ a toy explanation end to end
class Brightness(nn.Module):
    """Classes a, b, c; c (index 2) when the mean brightness is above 0.5, else b."""

    def forward(self, x):
        m = x.mean(dim=(1, 2, 3))
        return torch.stack([torch.full_like(m, -2.0), torch.zeros_like(m), 20 * (m - 0.5)], dim=1)


def toy_adapter() -> GeneratorAdapter:
    def decode(z):
        return torch.sigmoid(z[:, :1, None, None]).expand(len(z), 1, 8, 8)

    return GeneratorAdapter(decode, 3)


def toy_classifier() -> Classifier:
    return Classifier(Brightness(), ["a", "b", "c"], 1, 8, [0.0], [1.0], "toy")


def test_explain_on_a_toy_generator_uses_the_target_column():
    opts = ExplainOptions(k=3, steps=15, alpha=2.0, num_source=32, num_random=8, threshold=0.1)
    result = explain(toy_adapter(), toy_classifier(), target="c", source="b", options=opts,
                     contrastive=ContrastiveOptions(batch_size=16), progress=False)
    report = result.report
    assert report["target_index"] == 2 and report["codes"] == "prior"
    assert report["source_predicted_target"] == 0.0
    # Recompute the chosen candidate's figures from the saved directions (fixed edits).
    codes = result.source_codes
    top = report["selected"][0]
    unit = torch.as_tensor(result.directions.unit_matrix()[top["direction"]])
    edited = codes + top["sign"] * 2.0 * unit  # prior: sigma = 1 along any unit direction
    p = toy_classifier().probabilities(toy_adapter().decode(edited)).numpy()
    assert top["flip_fraction"] == pytest.approx(float((p.argmax(1) == 2).mean()), abs=1e-9)
    assert top["mean_delta_p"] > 0.1 and len(report["candidates"]) == 6
    assert top["sign"] * float(unit[0]) > 0  # it brightens


# ------------------------------------------------------------------ classifiers
def test_classifier_metrics_and_balanced_sampling():
    labels = np.array([0, 0, 0, 1])
    w = class_balanced_weights(labels)
    assert w[:3].sum() == pytest.approx(0.5) and w[3] == pytest.approx(0.5)
    matrix = confusion_matrix(np.array([0, 0, 1, 1, 1]), np.array([0, 1, 1, 1, 0]), 2)
    assert matrix.tolist() == [[1, 1], [1, 2]]
    assert balanced_accuracy(matrix) == pytest.approx((0.5 + 2 / 3) / 2)


def test_small_cnn_learns_brightness_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    images = (rng.integers(0, 60, (200, 1, 16, 16)) + 150 * labels[:, None, None, None]).astype(np.uint8)
    options = ClassifierOptions(epochs=3, batch_size=16, width=4)
    clf, report = train_classifier(images, labels, ["dark", "bright"], options, progress=False)
    assert report["test_accuracy"] == 1.0 and report["balanced_accuracy"] == 1.0
    assert np.sum(report["confusion_matrix"]) == report["test_images"] == 40
    save_classifier(clf, tmp_path / "clf", options=options)
    loaded = load_classifier(tmp_path / "clf")
    assert loaded.class_names == ["dark", "bright"] and (loaded.channels, loaded.image_size) == (1, 16)
    assert torch.allclose(loaded.probabilities(images[:8]), clf.probabilities(images[:8]), atol=1e-6)


def test_flatten_head_keeps_position_and_round_trips(tmp_path):
    # Left vs right blob, same brightness: the flatten head reads position; its shape follows the image size.
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    images = rng.integers(0, 30, (200, 1, 16, 16)).astype(np.uint8)
    rows = rng.integers(2, 11, 200)
    for i, (label, row) in enumerate(zip(labels, rows, strict=True)):
        col = 1 if label == 0 else 11
        images[i, 0, row : row + 4, col : col + 4] = 220
    options = ClassifierOptions(epochs=6, batch_size=16, width=4, head="flatten")
    clf, report = train_classifier(images, labels, ["left", "right"], options, progress=False)
    assert clf.module.head.in_features == 16 * 2 * 2  # 4w channels x (16 / 8)^2 positions
    assert report["test_accuracy"] == 1.0
    save_classifier(clf, tmp_path / "clf", options=options)
    loaded = load_classifier(tmp_path / "clf")
    assert loaded.meta["options"]["head"] == "flatten"
    assert torch.allclose(loaded.probabilities(images[:8]), clf.probabilities(images[:8]), atol=1e-6)
    meta = json.loads((tmp_path / "clf" / "classifier.json").read_text())
    meta["options"]["head"] = "bogus"
    (tmp_path / "clf" / "classifier.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="head must be one of pool, flatten"):
        load_classifier(tmp_path / "clf")


def test_torchscript_classifier_loads_and_pickles_are_refused(tmp_path):
    scripted = torch.jit.script(Brightness())
    scripted.save(str(tmp_path / "model.pt"))
    meta = {"classes": ["a", "b", "c"], "channels": 1, "image_size": 8,
            "normalisation": {"mean": [0.0], "std": [1.0]}}
    (tmp_path / "model.json").write_text(json.dumps(meta))
    clf = load_classifier(tmp_path / "model.pt")
    p = clf.probabilities(torch.full((2, 1, 8, 8), 0.9))
    assert p.argmax(1).tolist() == [2, 2]
    torch.save(Brightness(), tmp_path / "pickled.pt")
    (tmp_path / "pickled.json").write_text(json.dumps(meta))

    with pytest.raises(CheckpointError, match="pickle"):
        load_classifier(tmp_path / "pickled.pt")


# ------------------------------------------------------------------ CLI bad inputs
def _run_cli(args, capsys):
    from factorlens.cli.main import main

    code = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    return code, err


def _toy_classifier_dir(tmp_path, classes=("MEL", "NV"), channels=3, size=64) -> Path:
    torch.manual_seed(0)
    clf = Classifier(SmallCNN(channels, len(classes), 4), list(classes), channels, size,
                     [0.5] * channels, [0.25] * channels, "toy")
    return save_classifier(clf, tmp_path / "clf", options=ClassifierOptions(width=4))


@pytest.fixture(scope="module")
def tiny_vae_run(tmp_path_factory):
    from factorlens.training import train

    out = tmp_path_factory.mktemp("vae") / "run"
    config = {
        "model": {"name": "btcvae", "latent_dim": 4},
        "train": {"iterations": 2, "batch_size": 8, "log_every": 1, "checkpoint_every": 2, "num_threads": 1},
        "data": {"spec": "synthetic-lesions:n=64"},
    }
    return train(config, out)


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("target", "--target 'BOGUS' is not a class of the classifier"),
        ("size", "expects 3x32x32 images"),
        ("empty", "no source images: class DF has no images"),
        ("no-encoder", "has no encoder"),
    ],
)
def test_explain_bad_inputs_are_one_line_errors(case, needle, tmp_path, capsys, tiny_vae_run):
    run = GAN_RUN if case == "no-encoder" else tiny_vae_run
    clf = _toy_classifier_dir(tmp_path, classes=("MEL", "NV", "DF"), size=32 if case == "size" else 64)
    out = tmp_path / "out"
    args = [
        "explain", str(run), "--classifier", str(clf), "--target", "BOGUS" if case == "target" else "MEL",
        "--out", str(out), "--steps", "2", "-k", "2", "--option", "num_random=2",
    ]
    if case == "empty":
        args += ["--source", "DF", "--data", "synthetic-lesions:n=20"]
    if case == "no-encoder":
        args += ["--codes", "posterior"]
    code, err = _run_cli(args, capsys)
    assert code == 2 and len(err) == 1 and needle in err[0], err
    assert not out.exists()


def test_explain_cli_writes_a_direction_set(tmp_path, capsys, tiny_vae_run):
    from factorlens.directions import DirectionSet

    clf = _toy_classifier_dir(tmp_path)
    out = tmp_path / "out"
    code, err = _run_cli(["explain", str(tiny_vae_run), "--classifier", str(clf), "--target", "MEL",
                          "--source", "NV", "--out", str(out), "--steps", "3", "-k", "2", "--num-source", "8",
                          "--option", "num_random=3", "--option", "threshold=-1"], capsys)
    assert code == 0, err
    report = json.loads((out / "explanation.json").read_text())
    assert report["target_index"] == 0 and report["num_source"] == 8 and report["alpha"] == 3.0
    assert len(report["candidates"]) == 4 and report["selected"]
    assert {"moved_most", "effect"} <= set(report["selected"][0]["oracle"])
    dirs = DirectionSet.load(out)
    assert dirs.method == "explain" and dirs.matrix.shape == (2, 4)
    assert (out / "counterfactuals.png").is_file() and (out / "delta_p.png").is_file()
    # the report's directions section shows the explanation (written under RUN/directions/ by default)
    from factorlens.viz.report import directions_html

    run_copy = tmp_path / "run"
    (run_copy / "directions").mkdir(parents=True)
    (run_copy / "directions" / "explain-MEL").symlink_to(out)
    html, toc = directions_html(run_copy, "r")
    assert "Directions: explain-MEL (explain)" in toc[0][1] and "flip fraction" in html
    assert f"{report['selected'][0]['flip_fraction']:.3f}" in html


def test_classifier_cli_bad_class_is_one_line(tmp_path, capsys):
    out = tmp_path / "clf"
    code, err = _run_cli(["classifier", "train", "--data", "synthetic-lesions:n=30", "--classes", "MEL,XX",
                          "--out", str(out)], capsys)
    assert code == 2 and len(err) == 1 and "--classes XX not in dataset" in err[0]
    assert not out.exists()


def test_directions_live_in_the_active_subspace():
    # Aggregate posterior with 2 active axes of 5: learned edits have no component on the other 3.
    gen = torch.Generator().manual_seed(1)
    codes = torch.randn(400, 5, generator=gen) * torch.tensor([2.0, 1.0, 0.01, 0.01, 0.01])
    adapter = GeneratorAdapter(lambda z: torch.sigmoid(z[:, :1, None, None]).expand(len(z), 1, 4, 4), 5,
                               posterior_codes=codes)
    from factorlens.explain.contrastive import train_directions

    edits, losses = train_directions(adapter, ContrastiveOptions(batch_size=8), k=3, steps=5, alpha=2.0,
                                     progress=False)
    assert edits.basis.shape == (2, 5) and len(losses) == 5
    unit = edits.unit(codes[:4]).detach()
    basis = edits.basis
    assert torch.allclose(unit, (unit @ basis.T) @ basis, atol=1e-6)  # in the span of the active axes
    assert unit[..., 2:].abs().max() < 1e-2  # which are (up to sampling noise) the first two code axes
    assert torch.allclose(unit.norm(dim=-1), torch.ones(3, 4), atol=1e-5)
    whole, _ = train_directions(adapter, ContrastiveOptions(batch_size=8, active_threshold=0.0), k=3, steps=1,
                                alpha=2.0, progress=False)
    assert whole.basis.shape == (5, 5)


def test_explain_a_gan_from_prior_codes(tmp_path, capsys):
    clf = _toy_classifier_dir(tmp_path, classes=("MEL", "NV", "DF"))
    out = tmp_path / "out"
    args = ["explain", str(GAN_RUN), "--classifier", str(clf), "--target", "DF", "--out", str(out),
            "--steps", "3", "-k", "2", "--num-source", "8", "--option", "num_random=2"]
    code, err = _run_cli(args, capsys)
    assert code == 0, err
    report = json.loads((out / "explanation.json").read_text())
    assert report["codes"] == "prior" and report["num_source"] == 8
    assert report["codes_from"].startswith("8 prior codes (of ") and report["source_predicted_target"] == 0.0
    assert report["random"]["space"] == "code" and report["active_dim"] == 4


def test_explain_a_gan_from_inverted_source_images(tmp_path, capsys):
    clf = _toy_classifier_dir(tmp_path, classes=("MEL", "NV", "DF"))
    out = tmp_path / "out"
    args = ["explain", str(GAN_RUN), "--classifier", str(clf), "--target", "DF", "--out", str(out),
            "--data", "synthetic-lesions:n=24", "--codes", "inverted", "--option", "inversion_steps=5",
            "--steps", "3", "-k", "2", "--num-source", "8", "--option", "num_random=2"]
    code, err = _run_cli(args, capsys)
    assert code == 0, err
    report = json.loads((out / "explanation.json").read_text())
    assert report["codes"] == "inverted" and report["num_source"] == 8
    assert report["codes_from"].startswith("codes found by inverting the generator on 8 images (5 Adam steps")


def test_a_gan_with_data_but_prior_codes_is_a_one_line_error(tmp_path, capsys):
    clf = _toy_classifier_dir(tmp_path, classes=("MEL", "NV", "DF"))
    code, err = _run_cli(["explain", str(GAN_RUN), "--classifier", str(clf), "--target", "DF",
                          "--data", "synthetic-lesions:n=24", "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and len(err) == 1 and "--data needs --codes inverted" in err[0], err
    assert not (tmp_path / "o").exists()


def test_when_nothing_passes_the_threshold_the_strongest_candidate_is_reported_and_drawn(
    tmp_path, capsys, tiny_vae_run
):
    from factorlens.directions import DirectionSet

    clf = _toy_classifier_dir(tmp_path)
    out = tmp_path / "out"
    code, err = _run_cli(["explain", str(tiny_vae_run), "--classifier", str(clf), "--target", "MEL",
                          "--source", "NV", "--out", str(out), "--steps", "3", "-k", "3", "--num-source", "8",
                          "--option", "num_random=2", "--option", "threshold=1.5"], capsys)
    assert code == 0, err
    report = json.loads((out / "explanation.json").read_text())
    assert report["selected"] == []  # a change of probability cannot exceed 1
    below = report["best_below_threshold"]
    means = [c["mean_delta_p"] for c in report["candidates"]]
    best = int(np.argmax(means))
    assert (below["direction"], below["sign"]) == (best // 2, 1 if best % 2 == 0 else -1)
    assert below["mean_delta_p"] == pytest.approx(means[best]) and "oracle" in below
    dirs = DirectionSet.load(out)
    assert all(label == "" for label in dirs.labels)  # it is not a selected direction
    assert (out / "counterfactuals.png").is_file()
    assert "BELOW AttFind's threshold" in (out / "directions.json").read_text()
