"""NOG / OLR on the latent-reading layer (Song et al.) and the VP score (Zhu et al.)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from factorlens.config import parse_run_config
from factorlens.errors import ConfigError
from factorlens.metrics.vp import sefa_axes, vp_score
from factorlens.models.base import LatentModel, StepOutput
from factorlens.training import Callback, Trainer, load_run, train
from factorlens.training.orthogonality import (
    Orthogonality,
    latent_rows,
    layer_orthogonality,
    nearest_orthogonal,
    optimal_learning_rate,
)

DATA = "synthetic-lesions:n=64"


@pytest.fixture(autouse=True)
def _env(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("FACTORLENS_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.setenv("FACTORLENS_NO_PROGRESS", "1")


# --- NOG -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(8, 64), (4, 4), (16, 8)])
def test_nog_is_u_vt_with_unit_singular_values(shape):
    g = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    q = nearest_orthogonal(g)
    assert q.shape == g.shape and q.dtype == g.dtype
    singular = torch.linalg.svdvals(q.double())
    assert torch.allclose(singular, torch.ones_like(singular), atol=1e-5)
    u, _, vh = np.linalg.svd(g.double().numpy(), full_matrices=False)  # independent: numpy's SVD
    np.testing.assert_allclose(q.double().numpy(), u @ vh, atol=1e-6)
    # the nearest orthogonal matrix: no other orthogonal matrix (here a random one) is closer to g
    other = torch.linalg.qr(torch.randn(shape[1], shape[1], dtype=torch.float64))[0][: shape[0]]
    if shape[0] <= shape[1]:
        assert torch.linalg.norm(g.double() - q.double()) <= torch.linalg.norm(g.double() - other) + 1e-9


def test_nog_leaves_a_non_finite_gradient_alone():
    g = torch.randn(4, 6)
    g[1, 2] = float("nan")
    assert nearest_orthogonal(g) is g


def test_nog_rewrites_the_conv_gradient_rows_in_place_whatever_the_memory_format():
    layer = nn.ConvTranspose2d(4, 8, 4).to(memory_format=torch.channels_last)
    layer.weight.grad = torch.randn_like(layer.weight)
    trainer = type("T", (), {"latent_layer": layer})()
    Orthogonality("nog").on_before_optimizer_step(trainer)
    rows = latent_rows(layer.weight.grad, layer)
    assert rows.shape == (4, 8 * 16)
    torch.testing.assert_close(rows @ rows.t(), torch.eye(4), atol=1e-5, rtol=0)


# --- OLR -------------------------------------------------------------------------------------------------


def test_olr_is_the_formula_inside_its_range_and_the_base_rate_outside():
    rng = np.random.default_rng(0)
    for _ in range(20):
        w, g = rng.normal(size=50), rng.normal(size=50)
        ww, gw, gg = w @ w, g @ w, g @ g
        eta = ww * gw / (ww * gg + 2 * gw * gw)  # Song et al.'s eta*
        lr, active = optimal_learning_rate(torch.from_numpy(w), torch.from_numpy(g), base_lr=10.0)
        if 0 < eta < 10.0:
            assert active and lr == pytest.approx(eta, rel=1e-12)
        else:
            assert not active and lr == 10.0
    # g orthogonal to w: eta* = 0, not in (0, base): the base rate
    assert optimal_learning_rate(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]), 0.1) == (0.1, False)
    # eta* above the base rate: the base rate
    assert optimal_learning_rate(torch.tensor([1.0]), torch.tensor([1.0]), 1e-3) == (1e-3, False)
    with pytest.raises(ConfigError, match="base learning rate > 0"):
        optimal_learning_rate(torch.ones(2), torch.ones(2), 0.0)


class NormModel(LatentModel):
    """loss = ||W||^2 of the latent layer (+ a second parameter): g = 2W, so g.w > 0 and Song et al.'s
    eta* = w.w * 2w.w / (w.w * 4w.w + 2 * 4 (w.w)^2) = 1/6 whatever W is."""

    latent_dim, channels = 3, 1

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.ConvTranspose2d(3, 2, 2)
        self.other = nn.Parameter(torch.ones(2))

    def first_decoder_layer(self):
        return self.first

    def compute_loss(self, x, *, dataset_size):
        loss = self.first.weight.pow(2).sum() + self.other.pow(2).sum() + 0 * x.mean()
        return StepOutput(loss, {})


def test_olr_layer_has_its_own_non_empty_sgd_group_that_gets_the_rate():
    """The regression test for the public code's empty parameter group: the layer's weight is in its own
    SGD group (not in Adam's), and a step moves it by exactly -eta* * grad (eta* = 1/6 here: W -> 2/3 W)."""
    config = parse_run_config({"model": {"name": "gan"},
                               "train": {"iterations": 2, "batch_size": 2, "lr": 1.0, "log_every": 1,
                                         "orthogonality": {"method": "olr"}}})
    torch.manual_seed(0)
    model = NormModel()
    start = model.first.weight.detach().clone()
    records = []

    class Log(Callback):
        def on_log(self, trainer, record):
            records.append(dict(record))

    images = np.zeros((4, 1, 8, 8), np.uint8)
    trainer = Trainer(model=model, config=config, out=".", train_images=images, device=torch.device("cpu"),
                      callbacks=[Orthogonality("olr"), Log()])
    assert trainer.layer_optimizer.param_groups[0]["params"] == [model.first.weight]
    assert all(p is not model.first.weight for g in trainer.optimizer.param_groups for p in g["params"])
    trainer.run()
    assert trainer.layer_optimizer.param_groups[0]["lr"] == pytest.approx(1 / 6)
    torch.testing.assert_close(model.first.weight.detach(), start * (2 / 3) ** 2, rtol=1e-6, atol=0)
    assert [r["olr_active"] for r in records] == [1.0, 1.0]
    # without OLR the same layer is Adam's (lr 1.0): a different step
    config = parse_run_config({"model": {"name": "gan"},
                               "train": {"iterations": 1, "batch_size": 2, "lr": 1.0}})
    torch.manual_seed(0)
    plain = NormModel()
    Trainer(model=plain, config=config, out=".", train_images=images, device=torch.device("cpu")).run()
    assert not torch.allclose(plain.first.weight, start * (2 / 3))


def test_orthogonality_in_a_run_logs_its_figures_and_resumes_bitwise(tmp_path):
    base = {"model": {"name": "gan", "latent_dim": 4, "width": 4},
            "train": {"iterations": 6, "batch_size": 8, "log_every": 2, "checkpoint_every": 3,
                      "num_threads": 1, "orthogonality": {"method": "nog+olr"}},
            "data": {"spec": DATA}}
    straight = train(base, tmp_path / "straight")
    record = json.loads((straight / "log.jsonl").read_text().splitlines()[-1])
    assert 0.0 <= record["olr_active"] <= 1.0 and 0.0 <= record["layer_max_cos"] <= 1.0
    assert record["layer_condition"] >= 1.0
    half = {**base, "train": {**base["train"], "iterations": 3}}
    train(half, tmp_path / "resumed")
    train(base, tmp_path / "resumed", resume=True)
    a, b = load_run(straight).model.state_dict(), load_run(tmp_path / "resumed").model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_orthogonality_needs_a_latent_layer_and_a_known_method():
    class NoLayer(nn.Module):  # a model without first_decoder_layer()
        latent_dim, channels = 2, 3

        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 2)

    config = parse_run_config({"model": {"name": "gan"},
                               "train": {"batch_size": 2, "orthogonality": {"method": "nog"}}})
    with pytest.raises(ConfigError, match="needs a latent-reading first layer, and model NoLayer has none"):
        Trainer(model=NoLayer(), config=config, out=".", train_images=np.zeros((4, 3, 8, 8), np.uint8),
                device=torch.device("cpu"))
    with pytest.raises(ConfigError, match=r"train\.orthogonality\.method in c\.yaml must be one of none"):
        parse_run_config({"model": {"name": "gan"}, "train": {"orthogonality": {"method": "svd"}}},
                         "c.yaml")


def test_layer_orthogonality_figures():
    assert layer_orthogonality(torch.eye(3, 5)) == pytest.approx((0.0, 1.0))
    rows = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    max_cos, condition = layer_orthogonality(rows)
    assert max_cos == pytest.approx(1 / np.sqrt(2))
    s = np.linalg.svd(rows.numpy(), compute_uv=False)
    assert condition == pytest.approx(s.max() / s.min())


# --- VP score --------------------------------------------------------------------------------------------


def _blob_decoder(latent_dim: int, size: int = 16):
    """Each code dimension brightens its own square of the image: every axis moves one distinct factor."""
    patterns = np.zeros((latent_dim, 1, size, size), np.float32)
    cells = int(np.ceil(np.sqrt(latent_dim)))
    step = size // cells
    for k in range(latent_dim):
        r, c = divmod(k, cells)
        patterns[k, 0, r * step:(r + 1) * step, c * step:(c + 1) * step] = 1.0

    def decode(codes):
        return np.clip(0.5 + 0.1 * np.tensordot(codes, patterns, axes=1), 0, 1)

    return decode


def test_vp_is_high_when_each_axis_moves_its_own_factor_and_chance_when_the_code_is_ignored():
    d = 6
    good = vp_score(_blob_decoder(d), d, n_pairs=1000, train_fraction=0.3, epochs=10, seed=0)
    assert good.score >= 0.9 and good.chance == pytest.approx(1 / d)
    ignoring = vp_score(lambda codes: np.full((len(codes), 1, 16, 16), 0.5, np.float32), d, n_pairs=1000,
                        epochs=3, seed=0)
    assert abs(ignoring.score - 1 / d) < 0.05  # predicting from all-zero differences: one class
    # a rotated code: the decoder's axes are mixed, the SeFa axes of its (linear) layer unmix them
    rotation = np.linalg.qr(np.random.default_rng(1).normal(size=(d, d)))[0]
    blob = _blob_decoder(d)
    mixed = vp_score(lambda codes: blob(codes @ rotation), d, n_pairs=1000, train_fraction=0.3, epochs=10,
                     seed=0)
    assert mixed.score < good.score


def test_sefa_axes_are_the_left_singular_vectors_of_w_transposed():
    w = np.random.default_rng(0).normal(size=(20, 5))
    axes = sefa_axes(w)
    np.testing.assert_allclose(axes @ axes.T, np.eye(5), atol=1e-12)
    eigenvalues, eigenvectors = np.linalg.eigh(w.T @ w)  # independent: eigenvectors of W^T W
    top = eigenvectors[:, np.argmax(eigenvalues)]
    assert abs(abs(axes[0] @ top) - 1) < 1e-10
