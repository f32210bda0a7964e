"""Latent traversals (Fig. 1a of Sarhan et al. 2019).

For each chosen image, one row per latent dimension: the image's code (posterior mean) is decoded with
that one dimension replaced by ``linspace(-span, span, steps)``; all other coordinates keep the image's
mean. Rows are ordered by the dimension's average KL to the prior over a batch of data (the dimensions
the model actually uses first); dimensions whose KL is below ``active_threshold`` nats carry no
information about the input and are greyed out or hidden.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image

from factorlens.evaluation.posterior import as_float_images, encode_images, evaluating, require_encoder
from factorlens.models.base import LatentModel
from factorlens.viz.figure import Figure
from factorlens.viz.grid import FigureError, gif_bytes, hstack_images, png_bytes, render_grid
from factorlens.viz.stats import MI_BINS, mean_kl_per_dim

DECODE_BATCH = 256
GIF_MAX_TILES = 48  # a GIF frame shows every row at one step; beyond this the frame gets too large


@dataclass
class TraversalRow:
    """What one row of a traversal grid shows."""

    image_index: int  # index into the ``x`` given to :func:`traverse`
    image_id: str
    dim: int
    kl: float | None  # average KL of this dimension to the prior (nats), when known
    active: bool
    factor: str | None = None  # factor sharing the most MI with this dimension
    mi: float | None = None  # that MI (nats)

    def label(self) -> str:
        text = f"z{self.dim}"
        if self.kl is not None:
            text += f" KL {self.kl:.2f}"
        if self.factor is not None and self.mi is not None:
            text += f" | {self.factor} MI {self.mi:.2f}"
        if not self.active:
            text += " (inactive)"
        return text


@dataclass
class Traversal:
    """A traversal grid and what it shows.

    Attributes:
        images: ``float32 [rows, steps, C, H, W]`` in [0, 1].
        rows: one :class:`TraversalRow` per grid row (image-major: all rows of image 0 first).
        values: ``float64 [steps]``, the values the swept dimension takes in each column.
        codes: ``float32 [n, d]``, posterior means of the input images.
        inputs: ``float32 [n, C, H, W]``, the input images.
    """

    images: np.ndarray
    rows: list[TraversalRow]
    values: np.ndarray
    codes: np.ndarray
    inputs: np.ndarray

    @property
    def greyed_rows(self) -> list[int]:
        return [i for i, row in enumerate(self.rows) if not row.active]

    def row_labels(self, *, with_image: bool = True) -> list[str]:
        return [(f"{row.image_id}: " if with_image else "") + row.label() for row in self.rows]

    def col_labels(self) -> list[str]:
        return [f"{v:+.2f}" for v in self.values]


def best_factors(
    mi: np.ndarray | None, factor_names: Sequence[str] | None
) -> list[tuple[str | None, float | None]]:
    """Per latent dimension, the factor with the largest MI in ``mi [d, K]`` and that MI."""
    if mi is None or factor_names is None or len(factor_names) == 0:
        return []
    mi = np.asarray(mi, dtype=np.float64)
    if mi.ndim != 2 or mi.shape[1] != len(factor_names):
        raise FigureError(f"factor MI must be [d, {len(factor_names)}], got shape {list(mi.shape)}")
    best = np.nanargmax(np.where(np.isnan(mi), -np.inf, mi), axis=1)
    return [(str(factor_names[k]), float(mi[j, k])) for j, k in enumerate(best)]


@torch.no_grad()
def decode_codes(
    model: LatentModel, codes: np.ndarray | torch.Tensor, batch_size: int = DECODE_BATCH
) -> np.ndarray:
    """``float32 [N, C, H, W]`` decoded from ``codes [N, d]`` in batches."""
    z = torch.as_tensor(np.asarray(codes, dtype=np.float32))
    if len(z) == 0:
        raise FigureError("nothing to decode: no latent codes were given")
    with evaluating(model):
        parts = [
            model.decode(z[start : start + batch_size]).float() for start in range(0, len(z), batch_size)
        ]
    return torch.cat(parts).clamp_(0.0, 1.0).numpy()


def order_dims(kl_per_dim: np.ndarray | None, latent_dim: int, dims: Sequence[int] | None) -> list[int]:
    """The dimensions to show: ``dims`` in the given order, else every dimension by decreasing KL
    (ties and unknown KL: by index)."""
    if dims is not None:
        chosen = [int(d) for d in dims]
        bad = [d for d in chosen if not 0 <= d < latent_dim]
        if bad:
            raise FigureError(f"latent dimensions {bad} do not exist (the model has {latent_dim})")
        return chosen
    if kl_per_dim is None:
        return list(range(latent_dim))
    return [int(d) for d in np.argsort(-np.asarray(kl_per_dim, dtype=np.float64), kind="stable")]


def traverse(
    model: LatentModel,
    x: np.ndarray | torch.Tensor,
    *,
    dims: Sequence[int] | None = None,
    steps: int = 10,
    span: float = 3.0,
    kl_per_dim: np.ndarray | None = None,
    active_threshold: float = 0.01,
    inactive: Literal["grey", "hide"] = "grey",
    factor_mi: np.ndarray | None = None,
    factor_names: Sequence[str] | None = None,
    image_ids: Sequence[str] | None = None,
) -> Traversal:
    """Latent traversals of the images ``x [n, C, 64, 64]`` (float in [0, 1] or uint8).

    Args:
        dims: dimensions to sweep, in this order (default: all, by decreasing ``kl_per_dim``).
        steps, span: each row decodes ``linspace(-span, span, steps)`` in the swept dimension.
        kl_per_dim: ``[d]`` average KL of each dimension to the prior over a batch of data (see
            :func:`~factorlens.viz.stats.mean_kl_per_dim`); default: computed on ``x`` itself.
        active_threshold: dimensions with KL below this (nats) are inactive.
        inactive: ``"grey"`` keeps inactive rows, marked for greying; ``"hide"`` drops them.
        factor_mi, factor_names: ``[d, K]`` MI between dimensions and known factors; rows are labelled
            with the factor sharing most MI with their dimension.
        image_ids: names of the images for the row labels (default: their index).

    Returns a :class:`Traversal` with ``images [n * shown_dims, steps, C, H, W]``.
    """
    require_encoder(model, "a latent traversal")
    if steps < 2:
        raise FigureError(f"a traversal needs at least 2 steps, got {steps}")
    if not span > 0:
        raise FigureError(f"the traversal span must be positive, got {span}")
    if inactive not in ("grey", "hide"):
        raise FigureError(f"inactive must be 'grey' or 'hide', got {inactive!r}")
    inputs = as_float_images(x)
    posterior = encode_images(model, inputs, dtype=np.float32)
    codes, logvars = posterior.mean, posterior.logvar
    latent_dim = codes.shape[1]
    if kl_per_dim is None:
        kl_per_dim = mean_kl_per_dim(codes, logvars)
    kl_per_dim = np.asarray(kl_per_dim, dtype=np.float64)
    if kl_per_dim.shape != (latent_dim,):
        raise FigureError(f"kl_per_dim must have {latent_dim} entries, got shape {list(kl_per_dim.shape)}")
    shown = order_dims(kl_per_dim, latent_dim, dims)
    active = {d: bool(kl_per_dim[d] >= active_threshold) for d in shown}
    if inactive == "hide":
        shown = [d for d in shown if active[d]]
        if not shown:
            raise FigureError(
                f"no latent dimension has KL >= {active_threshold} nats; use inactive='grey' to see them all"
            )
    factor_of = best_factors(factor_mi, factor_names)
    ids = [str(i) for i in range(len(inputs))] if image_ids is None else [str(i) for i in image_ids]
    if len(ids) != len(inputs):
        raise FigureError(f"{len(ids)} image ids for {len(inputs)} images")

    values = np.linspace(-span, span, steps)
    # codes_grid[i, j, t] = code of image i with dimension shown[j] set to values[t]
    codes_grid = np.repeat(codes[:, None, None, :], len(shown), axis=1).repeat(steps, axis=2)
    for j, dim in enumerate(shown):
        codes_grid[:, j, :, dim] = values
    decoded = decode_codes(model, codes_grid.reshape(-1, latent_dim))
    images = decoded.reshape(len(inputs) * len(shown), steps, *decoded.shape[1:])
    rows = [
        TraversalRow(
            image_index=i,
            image_id=ids[i],
            dim=dim,
            kl=float(kl_per_dim[dim]),
            active=active[dim],
            factor=factor_of[dim][0] if factor_of else None,
            mi=factor_of[dim][1] if factor_of else None,
        )
        for i in range(len(inputs))
        for dim in shown
    ]
    return Traversal(images=images, rows=rows, values=values, codes=codes, inputs=inputs.numpy())


def render_traversal(traversal: Traversal, *, title: str | None = None, scale: int = 2) -> Image.Image:
    """The traversal grid as a PIL image (columns: swept values; rows: image x dimension)."""
    return render_grid(
        traversal.images,
        row_labels=traversal.row_labels(),
        col_labels=traversal.col_labels(),
        title=title,
        greyed_rows=traversal.greyed_rows,
        scale=scale,
    )


def traversal_frames(
    traversal: Traversal, *, title: str | None = None, max_tiles: int = GIF_MAX_TILES
) -> list[Image.Image]:
    """GIF frames, one per step: every row of the grid at that step, arranged dimensions x images."""
    n_images = len({row.image_index for row in traversal.rows})
    dims_per_image = len(traversal.rows) // n_images
    # [n_images * dims, steps, ...] -> [dims, n_images, steps, ...]: one column per image in a frame.
    per_image = traversal.images.reshape(n_images, dims_per_image, *traversal.images.shape[1:])
    if n_images * dims_per_image > max_tiles:
        dims_per_image = max(1, max_tiles // n_images)
        per_image = per_image[:, :dims_per_image]
    by_dim = per_image.transpose(1, 0, *range(2, per_image.ndim))
    labels = [row.label() for row in traversal.rows[:dims_per_image]]
    greyed = [j for j, row in enumerate(traversal.rows[:dims_per_image]) if not row.active]
    image_ids = [traversal.rows[i * (len(traversal.rows) // n_images)].image_id for i in range(n_images)]
    frames = []
    for t, value in enumerate(traversal.values):
        frame_title = f"{title + ': ' if title else ''}z = {value:+.2f}"
        frames.append(
            render_grid(
                by_dim[:, :, t],
                row_labels=labels,
                col_labels=image_ids,
                title=frame_title,
                greyed_rows=greyed,
                scale=1,
            )
        )
    return frames


def traversal_figure(
    traversal: Traversal,
    *,
    title: str | None = None,
    caption: str | None = None,
    description: str | None = None,
    animation_caption: str | None = None,
    gif_duration_ms: int = 200,
) -> Figure:
    """The grid of ``traversal`` as a :class:`~factorlens.viz.figure.Figure`, with its animation (one
    frame per step, looping; not bouncing back, which would double its size in the report)."""
    if caption is None:
        caption = (
            f"Latent traversals of {len({row.image_index for row in traversal.rows})} images over "
            f"[{traversal.values[0]:g}, {traversal.values[-1]:g}] in {len(traversal.values)} steps."
        )
    return Figure(
        render_traversal(traversal, title=title),
        caption,
        description=description,
        data=traversal,
        animation=lambda: gif_bytes(traversal_frames(traversal, title=title), duration_ms=gif_duration_ms),
        animation_caption=animation_caption,
    )


def traversal(
    run,
    images: np.ndarray | torch.Tensor,
    *,
    image_ids: Sequence[str] | None = None,
    source: str | None = None,
    dims: Sequence[int] | None = None,
    max_dims: int | None = None,
    steps: int = 10,
    span: float = 3.0,
    kl_per_dim: np.ndarray | None = None,
    kl_images: int | None = None,
    active_threshold: float = 0.01,
    inactive: Literal["grey", "hide"] = "grey",
    factor_mi: np.ndarray | None = None,
    factor_names: Sequence[str] | None = None,
    mi_bins: int = MI_BINS,
    title: str | None = None,
    gif_duration_ms: int = 200,
) -> Figure:
    """Latent traversals (Fig. 1a) of ``images [n, C, 64, 64]`` (uint8 or float in [0, 1]) as a
    :class:`~factorlens.viz.figure.Figure` with a caption saying how it was made; ``.data`` is the
    :class:`Traversal`, ``.gif`` the animation.

    Args:
        run: a :class:`~factorlens.training.Run` (the title names its model) or a bare model.
        image_ids: names of the images (default: their index); source: where they come from, for the
            caption (e.g. ``"synthetic-lesions, test split (400 images)"``).
        dims, max_dims: dimensions to sweep in this order (default: all by decreasing KL), or only the
            ``max_dims`` with the most KL.
        kl_per_dim, kl_images: ``[d]`` mean KL of each dimension to the prior over a batch of data and the
            number of images it was computed on (default: computed on ``images``).
        factor_mi, factor_names, mi_bins: ``[d, K]`` MI with known factors (computed with ``mi_bins``
            bins): rows are labelled with the factor sharing most MI with their dimension.
        steps, span, active_threshold, inactive: as in :func:`traverse`.
    """
    model = getattr(run, "model", run)
    require_encoder(model, "a latent traversal")
    if max_dims is not None and max_dims < 1:
        raise FigureError(f"max_dims must be at least 1, got {max_dims}")
    if kl_per_dim is None:
        posterior = encode_images(model, images, dtype=np.float32)
        kl_per_dim, kl_images = mean_kl_per_dim(posterior.mean, posterior.logvar), len(posterior)
    kl_per_dim = np.asarray(kl_per_dim, dtype=np.float64)
    if dims is None and max_dims is not None:
        dims = order_dims(kl_per_dim, len(kl_per_dim), None)[:max_dims]
    data = traverse(
        model,
        images,
        dims=dims,
        steps=steps,
        span=span,
        kl_per_dim=kl_per_dim,
        active_threshold=active_threshold,
        inactive=inactive,
        factor_mi=factor_mi,
        factor_names=factor_names,
        image_ids=image_ids,
    )
    n_images = len({row.image_index for row in data.rows})
    rows_per_image = len(data.rows) // max(n_images, 1)
    ids = [row.image_id for row in data.rows[::rows_per_image]]
    n_active = int((kl_per_dim >= active_threshold).sum())
    how = (
        f"{n_images} images ({', '.join(ids)})" + (f" from {source}" if source else "") + "; each row "
        f"decodes the image's posterior mean with one latent dimension set to {steps} values in "
        f"[-{span:g}, {span:g}]; rows ordered by the dimension's mean KL to the prior over "
        f"{kl_images if kl_images is not None else 'a batch of'} images; {n_active} of "
        f"{len(kl_per_dim)} dimensions have KL >= {active_threshold:g} nats"
        + (" (the others greyed)" if inactive == "grey" else " (the others hidden)")
    )
    if max_dims is not None and max_dims < len(kl_per_dim):
        how += f"; only the {max_dims} dimensions with the most KL are shown"
    if factor_mi is not None:
        how += f"; labels name the factor sharing most mutual information ({mi_bins} bins) with the dimension"
    gif_how = how
    if n_images * rows_per_image > GIF_MAX_TILES:
        # traversal_frames keeps at most GIF_MAX_TILES tiles per frame: say which rows the GIF drops.
        gif_rows = max(1, GIF_MAX_TILES // n_images)
        gif_how += f"; the GIF shows only the first {gif_rows} of the {rows_per_image} rows per image"
    if title is None and hasattr(run, "model_name"):
        title = f"{run.model_name} traversals"
    return traversal_figure(
        data,
        title=title,
        caption=f"Latent traversals (Fig. 1a): {how}.",
        description=how,
        animation_caption=(
            f"Animated traversal, one frame per step (-{span:g} to {span:g}, looping): {gif_how}."
        ),
        gif_duration_ms=gif_duration_ms,
    )


def save_traversal(
    traversal: Traversal,
    png_path: str | Path,
    gif_path: str | Path | None = None,
    *,
    title: str | None = None,
    gif_duration_ms: int = 200,
) -> list[Path]:
    """Write the traversal grid PNG (and the animated GIF) of :func:`traversal_figure`."""
    figure = traversal_figure(traversal, title=title, gif_duration_ms=gif_duration_ms)
    written = [figure.save(png_path, format="png")]
    if gif_path is not None:
        written.append(figure.save(gif_path, format="gif"))
    return [Path(path) for path in written]


def save_traversal_comparison(
    traversals: Sequence[Traversal], names: Sequence[str], path: str | Path
) -> Path:
    """Side-by-side traversal grids of several runs on the same images (one panel per run, titled)."""
    from factorlens.io import atomic_write_bytes

    if len(traversals) != len(names):
        raise FigureError(f"{len(names)} names for {len(traversals)} traversals")
    panels = [render_traversal(t, title=name) for t, name in zip(traversals, names, strict=True)]
    atomic_write_bytes(path, png_bytes(hstack_images(panels)))
    return Path(path)
