"""Figures: grid drawing, traversal and manifold-walk geometry on a tiny spy model whose decoder records
every code it is given."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from factorlens.errors import FactorlensError
from factorlens.models.base import LatentModel
from factorlens.viz import panels
from factorlens.viz.grid import render_grid, save_gif, save_grid
from factorlens.viz.stats import mean_kl_per_dim
from factorlens.viz.traversals import save_traversal, save_traversal_comparison, traverse
from factorlens.viz.walks import manifold_walk, save_walk, walk_frames

# Per-dimension scale of the spy encoder's mean: dimension 0 is never used (KL 0, inactive); by KL the
# order is 1, 3, 2, 0.
ENCODER_SCALES = (0.0, 2.0, 0.5, 1.0)


class SpyLinearModel(LatentModel):
    """``mu_j(x) = scale_j * (4 * mean(x) - 2)``, ``logvar = 0``; ``decode(z) = sigmoid(z @ W)``.

    Every batch of codes given to :meth:`decode` is recorded in ``decoded_codes``.
    """

    def __init__(self, channels: int = 1, scales=ENCODER_SCALES, seed: int = 0):
        super().__init__()
        self.channels = channels
        self.latent_dim = len(scales)
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("scales", torch.tensor(scales, dtype=torch.float32))
        self.register_buffer("weight", torch.randn(self.latent_dim, channels * 64 * 64, generator=generator))
        self.decoded_codes: list[torch.Tensor] = []

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feature = 4.0 * x.mean(dim=(1, 2, 3)) - 2.0
        mu = feature[:, None] * self.scales[None, :]
        return mu, torch.zeros_like(mu)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        self.decoded_codes.append(z.detach().clone())
        return torch.sigmoid(z @ self.weight).reshape(len(z), self.channels, 64, 64)

    def all_decoded_codes(self) -> np.ndarray:
        return torch.cat(self.decoded_codes).numpy()


def graded_images(n: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """``uint8 [n, C, 64, 64]`` images of distinct mean brightness (so their codes differ)."""
    rng = np.random.default_rng(seed)
    levels = np.linspace(30, 220, n)
    noise = rng.integers(-20, 21, size=(n, channels, 64, 64))
    return np.clip(levels[:, None, None, None] + noise, 0, 255).astype(np.uint8)


def expected_means(images: np.ndarray) -> np.ndarray:
    feature = 4.0 * (images.astype(np.float32) / 255.0).mean(axis=(1, 2, 3)) - 2.0
    return feature[:, None] * np.array(ENCODER_SCALES, dtype=np.float32)[None, :]


# --- grid ------------------------------------------------------------------------------------------------


def test_grid_tiles_are_nearest_upscaled_and_markers_drawn(tmp_path):
    images = np.zeros((2, 3, 1, 64, 64))
    images[1, 2] = 1.0  # one white tile
    images[0, 0, 0, :32] = 0.5
    path = save_grid(images, tmp_path / "g.png", scale=2, markers=[(0, 1, (255, 0, 0))])
    canvas = np.asarray(Image.open(path).convert("RGB"))
    bare = np.asarray(render_grid(images, scale=2))
    assert canvas.shape == bare.shape
    # No labels: tiles start at the margin; tile (1, 2) is all white, tile (0, 0) half grey (128).
    margin, gap, tile = 6, 2, 128
    top, left = margin + tile + gap, margin + 2 * (tile + gap)
    assert (canvas[top : top + tile, left : left + tile] == 255).all()
    assert (canvas[margin : margin + 64, margin : margin + tile] == 128).all()
    assert (canvas[margin + 64 : margin + tile, margin : margin + tile] == 0).all()
    # The marker is a red frame around tile (0, 1); its inside stays black.
    left = margin + tile + gap
    assert tuple(canvas[margin, left + 10]) == (255, 0, 0)
    assert tuple(canvas[margin + 10, left]) == (255, 0, 0)
    assert (canvas[margin + 10 : margin + 100, left + 10 : left + 100] == 0).all()


def test_grid_greyed_rows_and_labels(tmp_path):
    rng = np.random.default_rng(0)
    images = np.zeros((2, 2, 3, 64, 64))
    images[:, :, 0] = 1.0  # pure red tiles
    labelled = render_grid(
        images, row_labels=["active", "inactive"], col_labels=["-1", "+1"], title="t", greyed_rows=[1]
    )
    plain = render_grid(images)
    assert labelled.width > plain.width and labelled.height > plain.height
    pixels = np.asarray(labelled)
    bottom_right = pixels[-6 - 10, -6 - 10]
    assert bottom_right[0] == bottom_right[1] == bottom_right[2]  # greyed: no colour left
    assert bottom_right[0] > 150  # and faded
    with pytest.raises(FactorlensError, match="row labels"):
        render_grid(rng.random((2, 2, 3, 64, 64)), row_labels=["only one"])
    with pytest.raises(FactorlensError, match="NaN"):
        render_grid(np.full((1, 1, 1, 64, 64), np.nan))


def test_gif_has_one_frame_per_step(tmp_path):
    frames = np.linspace(0, 1, 6)[:, None, None, None] * np.ones((6, 1, 64, 64))
    path = save_gif(frames, tmp_path / "a.gif", duration_ms=80)
    gif = Image.open(path)
    assert gif.n_frames == 6
    gif.seek(5)
    assert gif.convert("L").getpixel((40, 40)) >= 250  # last frame is white


# --- traversal -------------------------------------------------------------------------------------------


def test_traversal_sweeps_only_one_coordinate_from_the_mean_code():
    model = SpyLinearModel()
    images = graded_images(2)
    steps, span = 7, 2.5
    traversal = traverse(model, images, steps=steps, span=span, inactive="grey")
    assert traversal.images.shape == (2 * 4, steps, 1, 64, 64)
    np.testing.assert_allclose(traversal.codes, expected_means(images), rtol=1e-5, atol=1e-6)
    codes = model.all_decoded_codes().reshape(2, 4, steps, 4)  # [image, row, step, d]
    shown = [row.dim for row in traversal.rows[:4]]
    assert shown == [1, 3, 2, 0]
    sweep = np.linspace(-span, span, steps)
    for i in range(2):
        for j, dim in enumerate(shown):
            np.testing.assert_allclose(codes[i, j, :, dim], sweep, rtol=1e-6)
            others = [d for d in range(4) if d != dim]
            np.testing.assert_allclose(
                codes[i, j][:, others], np.repeat(traversal.codes[i : i + 1, others], steps, 0)
            )
    # the grid shows exactly those decodings
    decoded = torch.sigmoid(torch.as_tensor(codes[1, 0]) @ model.weight).reshape(steps, 1, 64, 64).numpy()
    np.testing.assert_allclose(traversal.images[4], decoded, atol=1e-6)


def test_traversal_kl_ordering_greying_and_hiding():
    model = SpyLinearModel()
    images = graded_images(5)
    mu = expected_means(images)
    kl = mean_kl_per_dim(mu, np.zeros_like(mu))
    np.testing.assert_allclose(kl, 0.5 * (mu**2).mean(0), rtol=1e-6)
    assert kl[0] == 0 and kl[1] > kl[3] > kl[2] > 0

    greyed = traverse(model, images[:2], steps=5, kl_per_dim=kl)
    assert [row.dim for row in greyed.rows] == [1, 3, 2, 0, 1, 3, 2, 0]
    assert greyed.greyed_rows == [3, 7]
    assert [row.active for row in greyed.rows[:4]] == [True, True, True, False]

    hidden = traverse(model, images[:2], steps=5, kl_per_dim=kl, inactive="hide")
    assert hidden.images.shape == (2 * 3, 5, 1, 64, 64)  # rows = active dims x images, columns = steps
    assert [row.dim for row in hidden.rows] == [1, 3, 2, 1, 3, 2]
    assert hidden.greyed_rows == []

    # a KL given from elsewhere reorders the rows; explicit dims keep the user's order
    flipped = traverse(model, images[:1], steps=3, kl_per_dim=np.array([0.0, 0.1, 0.3, 0.2]), inactive="hide")
    assert [row.dim for row in flipped.rows] == [2, 3, 1]
    explicit = traverse(model, images[:1], steps=3, dims=[2, 0])
    assert [row.dim for row in explicit.rows] == [2, 0]


def test_traversal_labels_name_the_factor_with_most_mi(tmp_path):
    model = SpyLinearModel()
    images = graded_images(1)
    mi = np.array([[0.0, 0.0], [0.1, 0.7], [0.4, 0.2], [0.3, 0.05]])
    traversal = traverse(
        model, images, steps=4, factor_mi=mi, factor_names=["colour", "size"], image_ids=["ISIC_1"]
    )
    by_dim = {row.dim: row for row in traversal.rows}
    assert (by_dim[1].factor, by_dim[1].mi) == ("size", 0.7)
    assert (by_dim[2].factor, by_dim[2].mi) == ("colour", 0.4)
    assert (
        traversal.row_labels()[0].startswith("ISIC_1: z1 KL") and "size MI 0.70" in traversal.row_labels()[0]
    )
    png, gif = save_traversal(traversal, tmp_path / "t.png", tmp_path / "t.gif")
    assert Image.open(gif).n_frames == 4  # one frame per step
    compare = save_traversal_comparison([traversal, traversal], ["a", "b"], tmp_path / "c.png")
    assert Image.open(compare).width > 2 * Image.open(png).width


def test_traversal_rejects_bad_options():
    model = SpyLinearModel()
    with pytest.raises(FactorlensError, match="do not exist"):
        traverse(model, graded_images(1), dims=[7])
    with pytest.raises(FactorlensError, match="at least 2 steps"):
        traverse(model, graded_images(1), steps=1)
    with pytest.raises(FactorlensError, match="no latent dimension"):
        traverse(model, graded_images(1), kl_per_dim=np.zeros(4), inactive="hide")


# --- manifold walk ---------------------------------------------------------------------------------------


def test_walk_moves_one_dimension_per_column_and_ends_at_the_target(tmp_path):
    model = SpyLinearModel(scales=(0.2, -1.5, 0.7, 3.0, 0.0))
    images = graded_images(2)
    frames = 4
    walk = manifold_walk(model, images[0], images[1], frames=frames)
    source, target = walk.source_code, walk.target_code
    # by decreasing |target - source|; dimension 4 is unused by the encoder (equal codes) and skipped
    assert walk.dims == [3, 1, 2, 0]
    assert walk.images.shape == (frames, 4, 1, 64, 64)
    np.testing.assert_allclose(walk.codes[0, 0], source, atol=1e-6)
    previous_end = source
    for j, dim in enumerate(walk.dims):
        column = walk.codes[:, j]
        np.testing.assert_allclose(column[0], previous_end, atol=1e-6)  # starts where the last column ended
        changed = np.flatnonzero(np.abs(column[-1] - column[0]) > 1e-6)
        assert set(changed) <= {dim}
        others = [d for d in range(5) if d != dim]
        np.testing.assert_allclose(column[:, others], np.repeat(column[:1, others], frames, 0), atol=1e-6)
        np.testing.assert_allclose(
            column[:, dim], np.linspace(previous_end[dim], target[dim], frames), atol=1e-5
        )
        previous_end = column[-1]
    np.testing.assert_allclose(walk.codes[-1, -1], target, atol=1e-5)
    # markers link the end of each column to the start of the next, one colour per link
    markers = walk.markers()
    assert [(r, c) for r, c, _ in markers] == [(3, 0), (0, 1), (3, 1), (0, 2), (3, 2), (0, 3)]
    assert markers[0][2] == markers[1][2] != markers[2][2]
    path = walk_frames(walk)
    assert len(path) == frames + 3 * (frames - 1)
    png, gif = save_walk(walk, tmp_path / "w.png", tmp_path / "w.gif")
    assert Image.open(gif).n_frames == len(path)


def test_walk_user_order_and_max_dims():
    model = SpyLinearModel(scales=(0.2, -1.5, 0.7, 3.0, 0.0))
    images = graded_images(2)
    walk = manifold_walk(model, images[0], images[1], dims=[0, 2], frames=3)
    assert walk.dims == [0, 2]
    np.testing.assert_allclose(walk.codes[-1, -1, [0, 2]], walk.target_code[[0, 2]], atol=1e-6)
    np.testing.assert_allclose(walk.codes[-1, -1, [1, 3, 4]], walk.source_code[[1, 3, 4]], atol=1e-6)
    assert manifold_walk(model, images[0], images[1], max_dims=2).dims == [3, 1]
    with pytest.raises(FactorlensError, match="must not repeat"):
        manifold_walk(model, images[0], images[1], dims=[1, 1])


# --- panels ----------------------------------------------------------------------------------------------


def test_reconstructions_and_prior_samples():
    model = SpyLinearModel()
    images = graded_images(3)
    grid = panels.reconstructions(model, images)
    assert grid.shape == (2, 3, 1, 64, 64)
    np.testing.assert_allclose(grid[0], images / 255.0, atol=1e-6)
    expected = torch.sigmoid(torch.as_tensor(expected_means(images)) @ model.weight).reshape(3, 1, 64, 64)
    np.testing.assert_allclose(grid[1], expected.numpy(), atol=1e-5)
    a, b = panels.prior_samples(model, 4, seed=3), panels.prior_samples(model, 4, seed=3)
    np.testing.assert_array_equal(a, b)
    z = torch.randn(4, 4, generator=torch.Generator().manual_seed(3))
    np.testing.assert_allclose(a, torch.sigmoid(z @ model.weight).reshape(4, 1, 64, 64).numpy(), atol=1e-6)


def test_training_curves_plot_every_loss_term(tmp_path):
    records = [
        {"iter": i, "time_s": 0.1 * i, "images_per_s": 100.0, "loss": 10.0 / i, "recon": 8.0 / i, "kl": 1.0}
        for i in range(1, 6)
    ]
    assert panels.loss_terms(records) == ["loss", "recon", "kl"]
    path = panels.save_training_curves(records, tmp_path / "curves.png")
    assert Image.open(path).size == (900, 220)  # 3 panels of 3.0 x 2.2 inches at 100 dpi
    with pytest.raises(FactorlensError, match="no loss terms"):
        panels.save_training_curves([{"iter": 1, "time_s": 0.1}], tmp_path / "none.png")
    kl_path = panels.save_kl_bars(np.array([0.0, 2.0, 0.5]), tmp_path / "kl.png")
    mi_path = panels.save_mi_heatmap(
        np.array([[0.1, 0.2], [0.3, 0.0], [0.5, 0.5]]), ["a", "b"], tmp_path / "mi.png", dim_order=[2, 0, 1]
    )
    assert Image.open(kl_path).format == Image.open(mi_path).format == "PNG"


def test_factor_mi_of_a_code_monotone_in_the_factor_is_the_factor_entropy():
    from factorlens.viz.stats import latent_factor_mi

    images = graded_images(12)
    codes = expected_means(images)
    factors = (np.arange(12) * 3 // 12)[:, None]  # brightness terciles, 4 images each
    mi = latent_factor_mi(codes, factors, bins=20)
    assert mi.shape == (4, 1)
    assert mi[0, 0] == pytest.approx(0.0, abs=1e-12)  # dimension 0 is constant
    np.testing.assert_allclose(mi[1:, 0], np.log(3), rtol=1e-9)  # each bin holds one tercile only


def test_walk_between_images_with_the_same_code_is_a_clear_error():
    model = SpyLinearModel()
    image = graded_images(1)[0]
    with pytest.raises(FactorlensError, match="same latent code: nothing to walk"):
        manifold_walk(model, image, image.copy())


class BatchNormDecoder(LatentModel):
    """A decoder with BatchNorm, to tell eval-mode decoding (running statistics) from train mode."""

    def __init__(self) -> None:
        super().__init__()
        self.channels, self.latent_dim = 1, 2
        self.norm = torch.nn.BatchNorm1d(2)
        self.linear = torch.nn.Linear(2, 64 * 64)

    def encode(self, x):
        mu = torch.stack([x.mean(dim=(1, 2, 3)), x.std(dim=(1, 2, 3))], dim=1)
        return mu, torch.zeros_like(mu)

    def decode(self, z):
        return torch.sigmoid(self.linear(self.norm(z))).reshape(len(z), 1, 64, 64)


def test_figures_decode_in_eval_mode_and_leave_the_model_as_they_found_it():
    from factorlens.viz.traversals import decode_codes

    torch.manual_seed(0)
    model = BatchNormDecoder()
    model.train()  # as handed over straight from a trainer
    running_mean = model.norm.running_mean.clone()
    codes = np.random.default_rng(0).normal(size=(6, 2)).astype(np.float32)
    decoded = decode_codes(model, codes)
    assert model.training  # mode restored
    torch.testing.assert_close(model.norm.running_mean, running_mean)  # statistics untouched
    model.eval()
    with torch.no_grad():
        expected = model.decode(torch.as_tensor(codes)).numpy()
    np.testing.assert_allclose(decoded, expected, atol=1e-6)
    # Decoding one code alone gives the same image as decoding it in a batch (no batch statistics).
    np.testing.assert_allclose(decode_codes(model, codes[:1]), decoded[:1], atol=1e-6)


def test_gif_frames_of_different_sizes_are_padded_not_cropped(tmp_path):
    from factorlens.viz.grid import gif_bytes

    small = Image.new("RGB", (40, 30), "red")
    large = Image.new("RGB", (52, 30), "blue")
    path = tmp_path / "a.gif"
    path.write_bytes(gif_bytes([small, large], duration_ms=100))
    with Image.open(path) as gif:
        assert gif.size == (52, 30)
        gif.seek(1)
        frame = gif.convert("RGB")
        assert frame.getpixel((51, 15)) == (0, 0, 255)  # the wide frame's right edge survives
