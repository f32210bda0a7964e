"""Manifold walk from a source to a target image, one latent dimension at a time (Fig. 1b of Sarhan et al.).

Starting from the source image's code (posterior mean), each column moves one dimension from its current
value to the target's value in ``frames`` evenly spaced steps, while every other coordinate stays where
the previous column ended. Column ``j`` therefore starts at the image on which column ``j - 1`` ended; as
in the paper, a coloured square marks that image in both columns. After the last column, the moved
dimensions all equal the target's code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from factorlens.evaluation.posterior import as_float_images, encode_images, require_encoder
from factorlens.models.base import LatentModel
from factorlens.viz.figure import Figure
from factorlens.viz.grid import (
    MARKER_COLOURS,
    FigureError,
    Marker,
    gif_bytes,
    hstack_images,
    render_grid,
)
from factorlens.viz.traversals import decode_codes

DEFAULT_MAX_DIMS = 8


@dataclass
class Walk:
    """A manifold walk.

    Attributes:
        images: ``float32 [frames, n_moves, C, H, W]``: column ``j`` is the move of ``dims[j]``.
        codes: ``float32 [frames, n_moves, d]``, the decoded codes.
        dims: the dimension moved in each column, in order.
        source_code, target_code: ``float32 [d]`` posterior means of the two images.
        source, target: ``float32 [C, H, W]`` the input images.
    """

    images: np.ndarray
    codes: np.ndarray
    dims: list[int]
    source_code: np.ndarray
    target_code: np.ndarray
    source: np.ndarray
    target: np.ndarray

    def markers(self) -> list[Marker]:
        """A square of one colour on the last image of column ``j - 1`` and the first of column ``j``
        (the same image: where the move of ``dims[j]`` starts)."""
        last_row = self.images.shape[0] - 1
        markers: list[Marker] = []
        for j in range(1, len(self.dims)):
            colour = MARKER_COLOURS[(j - 1) % len(MARKER_COLOURS)]
            markers += [(last_row, j - 1, colour), (0, j, colour)]
        return markers

    def col_labels(self) -> list[str]:
        return [
            f"z{d}: {self.codes[0, j, d]:+.1f} \u2192 {self.codes[-1, j, d]:+.1f}"
            for j, d in enumerate(self.dims)
        ]


def walk_order(
    source_code: np.ndarray,
    target_code: np.ndarray,
    *,
    dims: Sequence[int] | None = None,
    max_dims: int | None = DEFAULT_MAX_DIMS,
) -> list[int]:
    """The dimensions to move: ``dims`` as given, else by decreasing ``|target - source|`` (at most
    ``max_dims``, ``None`` = all; dimensions where both agree are skipped)."""
    latent_dim = len(source_code)
    if dims is not None:
        chosen = [int(d) for d in dims]
        bad = [d for d in chosen if not 0 <= d < latent_dim]
        if bad:
            raise FigureError(f"latent dimensions {bad} do not exist (the model has {latent_dim})")
        if len(set(chosen)) != len(chosen):
            raise FigureError(f"walk dimensions must not repeat, got {chosen}")
        if not chosen:
            raise FigureError("a walk needs at least one dimension to move")
        return chosen
    distance = np.abs(np.asarray(target_code, np.float64) - np.asarray(source_code, np.float64))
    # a dimension on which source and target agree would make a column of identical images
    order = [int(d) for d in np.argsort(-distance, kind="stable") if distance[d] > 0]
    if not order:
        raise FigureError(
            "source and target have the same latent code: nothing to walk (choose a different target)"
        )
    return order if max_dims is None else order[:max_dims]


@torch.no_grad()
def manifold_walk(
    model: LatentModel,
    source: np.ndarray | torch.Tensor,
    target: np.ndarray | torch.Tensor,
    *,
    dims: Sequence[int] | None = None,
    frames: int = 5,
    max_dims: int | None = DEFAULT_MAX_DIMS,
) -> Walk:
    """Walk from ``source [C, H, W]`` to ``target [C, H, W]`` (float in [0, 1] or uint8).

    Args:
        dims: dimensions to move, in order (default: the ``max_dims`` with the largest
            ``|mu_target - mu_source|``, largest first).
        frames: images per column, both ends included (the first equals the previous column's last).
    """
    require_encoder(model, "a manifold walk")
    if frames < 2:
        raise FigureError(f"a walk needs at least 2 frames per dimension, got {frames}")
    pair = as_float_images(
        torch.stack([torch.as_tensor(np.asarray(source)), torch.as_tensor(np.asarray(target))])
    )
    means = encode_images(model, pair, dtype=np.float32).mean
    source_code, target_code = means[0], means[1]
    order = walk_order(source_code, target_code, dims=dims, max_dims=max_dims)

    fractions = np.linspace(0.0, 1.0, frames)
    current = source_code.astype(np.float64).copy()
    codes = np.empty((frames, len(order), len(current)), dtype=np.float64)
    for j, dim in enumerate(order):
        start, end = current[dim], float(target_code[dim])
        codes[:, j, :] = current
        codes[:, j, dim] = start + fractions * (end - start)
        current = codes[-1, j].copy()
    decoded = decode_codes(model, codes.reshape(-1, codes.shape[-1]))
    return Walk(
        images=decoded.reshape(frames, len(order), *decoded.shape[1:]),
        codes=codes.astype(np.float32),
        dims=order,
        source_code=source_code,
        target_code=target_code,
        source=pair[0].numpy(),
        target=pair[1].numpy(),
    )


def render_walk(
    walk: Walk, *, source_name: str = "source", target_name: str = "target", title: str | None = None
) -> Image.Image:
    """The input pair (left) next to the walk grid (columns: one dimension each, rows: frames)."""
    inputs = np.stack([walk.source, walk.target])[:, None]  # [2, 1, C, H, W]
    pair = render_grid(
        inputs, row_labels=[f"source {source_name}", f"target {target_name}"], col_labels=["input"]
    )
    grid = render_grid(
        walk.images,
        col_labels=walk.col_labels(),
        markers=walk.markers(),
        title=title or f"{source_name} -> {target_name}, one latent dimension per column",
    )
    return hstack_images([pair, grid])


def walk_frames(walk: Walk) -> np.ndarray:
    """``float32 [T, C, H, W]``: the whole path in order, each column's repeated first frame dropped."""
    path = [walk.images[:, 0]] + [walk.images[1:, j] for j in range(1, len(walk.dims))]
    return np.concatenate(path)


def walk_figure(
    walk: Walk,
    *,
    source_name: str = "source",
    target_name: str = "target",
    title: str | None = None,
    caption: str | None = None,
    description: str | None = None,
    animation_caption: str | None = None,
    gif_duration_ms: int = 120,
) -> Figure:
    """The walk of :func:`render_walk` as a :class:`~factorlens.viz.figure.Figure`; its animation is the
    whole path, source to target."""
    if caption is None:
        caption = f"Manifold walk from {source_name} to {target_name} along {len(walk.dims)} dimensions."
    return Figure(
        render_walk(walk, source_name=source_name, target_name=target_name, title=title),
        caption,
        description=description,
        data=walk,
        animation=lambda: gif_bytes(walk_frames(walk), duration_ms=gif_duration_ms),
        animation_caption=animation_caption,
    )


def walk(
    run,
    source: np.ndarray | torch.Tensor,
    target: np.ndarray | torch.Tensor,
    *,
    dims: Sequence[int] | None = None,
    frames: int = 5,
    max_dims: int | None = DEFAULT_MAX_DIMS,
    source_name: str = "source",
    target_name: str = "target",
    where: str | None = None,
    gif_duration_ms: int = 120,
) -> Figure:
    """The manifold walk (Fig. 1b) from ``source [C, H, W]`` to ``target`` as a
    :class:`~factorlens.viz.figure.Figure` with a caption; ``.data`` is the :class:`Walk`.

    ``run``: a :class:`~factorlens.training.Run` or a bare model; ``source_name``, ``target_name``: the
    images' ids; ``where``: where they come from, for the caption; the rest as in :func:`manifold_walk`.
    """
    data = manifold_walk(
        getattr(run, "model", run), source, target, dims=dims, frames=frames, max_dims=max_dims
    )
    ordering = (
        "as given" if dims is not None else f"the {len(data.dims)} largest |mu_target - mu_source| first"
    )
    how = (
        f"from image {source_name} to image {target_name}" + (f" ({where})" if where else "") + ", moving "
        f"one latent dimension per column ({ordering}: {', '.join(f'z{d}' for d in data.dims)}) in "
        f"{frames} frames from where the previous column ended; coloured squares mark the image each "
        f"column starts from"
    )
    return walk_figure(
        data,
        source_name=source_name,
        target_name=target_name,
        caption=f"Manifold walk (Fig. 1b) {how}.",
        description=how,
        animation_caption=f"Animated manifold walk {how}.",
        gif_duration_ms=gif_duration_ms,
    )


def save_walk(
    walk: Walk,
    png_path: str | Path,
    gif_path: str | Path | None = None,
    *,
    source_name: str = "source",
    target_name: str = "target",
    gif_duration_ms: int = 120,
) -> list[Path]:
    """Write the walk PNG (and a GIF of the whole path, source to target) of :func:`walk_figure`."""
    figure = walk_figure(
        walk, source_name=source_name, target_name=target_name, gif_duration_ms=gif_duration_ms
    )
    written = [figure.save(png_path, format="png")]
    if gif_path is not None:
        written.append(figure.save(gif_path, format="gif"))
    return written
