"""Smaller figures: reconstructions, prior samples, per-dimension KL, MI heat map, training curves."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from factorlens.evaluation.posterior import as_float_images, encode_images
from factorlens.io import atomic_write_bytes
from factorlens.models.base import LatentModel
from factorlens.viz.grid import FigureError, save_grid
from factorlens.viz.traversals import decode_codes

# log.jsonl columns that are bookkeeping, not loss terms
LOG_BOOKKEEPING = frozenset({"iter", "time_s", "images_per_s"})


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt


def _save_figure(fig, path: str | Path, dpi: int = 100) -> Path:
    plt = _pyplot()
    try:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


@torch.no_grad()
def reconstructions(model: LatentModel, x: np.ndarray | torch.Tensor) -> np.ndarray:
    """``float32 [2, n, C, H, W]``: row 0 the inputs, row 1 their reconstructions decode(mu(x))."""
    inputs = as_float_images(x)
    means = encode_images(model, inputs, dtype=np.float32).mean
    return np.stack([inputs.numpy(), decode_codes(model, means)])


def save_reconstructions(
    model: LatentModel,
    x: np.ndarray | torch.Tensor,
    path: str | Path,
    *,
    image_ids: Sequence[str] | None = None,
) -> Path:
    grid = reconstructions(model, x)
    return save_grid(
        grid,
        path,
        row_labels=["input", "reconstruction"],
        col_labels=None if image_ids is None else [str(i) for i in image_ids],
    )


def prior_samples(model: LatentModel, n: int, *, seed: int = 0) -> np.ndarray:
    """``float32 [n, C, H, W]`` decoded from ``z ~ N(0, I)`` drawn with a seeded generator."""
    z = torch.randn(n, model.latent_dim, generator=torch.Generator().manual_seed(seed))
    return decode_codes(model, z)


def save_prior_samples(
    model: LatentModel, path: str | Path, *, rows: int = 4, cols: int = 8, seed: int = 0
) -> Path:
    samples = prior_samples(model, rows * cols, seed=seed)
    return save_grid(
        samples.reshape(rows, cols, *samples.shape[1:]),
        path,
        title=f"decoded prior samples z ~ N(0, I), seed {seed}",
    )


def save_kl_bars(
    kl_per_dim: np.ndarray, path: str | Path, *, active_threshold: float = 0.01, title: str = ""
) -> Path:
    """Bar chart of the average KL (nats) of each latent dimension to the prior, sorted decreasing;
    bars under ``active_threshold`` are grey."""
    kl = np.asarray(kl_per_dim, dtype=np.float64)
    order = np.argsort(-kl, kind="stable")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(3.5, 0.35 * len(kl) + 1.5), 2.8))
    colours = ["tab:blue" if kl[d] >= active_threshold else "lightgrey" for d in order]
    ax.bar(range(len(kl)), kl[order], color=colours)
    ax.set_xticks(range(len(kl)), [f"z{d}" for d in order], rotation=90 if len(kl) > 16 else 0)
    ax.axhline(active_threshold, color="grey", linestyle=":", linewidth=1)
    ax.set_ylabel("mean KL to prior (nats)")
    ax.set_title(title or f"per-dimension KL (grey: < {active_threshold:g} nats, inactive)", fontsize=10)
    fig.tight_layout()
    return _save_figure(fig, path)


def save_mi_heatmap(
    mi: np.ndarray,
    factor_names: Sequence[str],
    path: str | Path,
    *,
    dim_order: Sequence[int] | None = None,
    title: str = "",
) -> Path:
    """Heat map of ``mi [d, K]`` (nats): latent dimensions as rows (in ``dim_order``), factors as columns,
    each cell annotated with its value."""
    mi = np.asarray(mi, dtype=np.float64)
    if mi.ndim != 2 or mi.shape[1] != len(factor_names):
        raise FigureError(f"MI matrix must be [d, {len(factor_names)}], got shape {list(mi.shape)}")
    order = list(range(mi.shape[0])) if dim_order is None else [int(d) for d in dim_order]
    shown = mi[order]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.8 + 0.9 * len(factor_names), 1.0 + 0.32 * len(order)))
    image = ax.imshow(shown, cmap="viridis", aspect="auto", vmin=0.0)
    ax.set_xticks(range(len(factor_names)), list(factor_names), rotation=30, ha="right")
    ax.set_yticks(range(len(order)), [f"z{d}" for d in order])
    finite_max = np.nanmax(shown) if np.isfinite(shown).any() else 0.0
    for (r, c), value in np.ndenumerate(shown):
        if np.isfinite(value):
            ax.text(
                c,
                r,
                f"{value:.2f}",
                ha="center",
                va="center",
                fontsize=7,
                color="black" if value > 0.6 * finite_max else "white",
            )
    ax.set_xlabel("factor")
    ax.set_ylabel("latent dimension")
    ax.set_title(title or "mutual information (nats)", fontsize=10)
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    return _save_figure(fig, path)


def loss_terms(records: Sequence[dict]) -> list[str]:
    """Every numeric column of ``log.jsonl`` that is a loss term, in first-seen order."""
    names: list[str] = []
    for record in records:
        for key, value in record.items():
            if key not in LOG_BOOKKEEPING and key not in names and isinstance(value, (int, float)):
                names.append(key)
    return names


def save_training_curves(records: Sequence[dict], path: str | Path, *, title: str = "") -> Path:
    """One small panel per loss term of ``log.jsonl`` against the iteration (symlog y when a term spans
    more than two decades, so early spikes do not flatten the rest)."""
    terms = loss_terms(records)
    if not terms:
        raise FigureError("the training log has no loss terms to plot")
    cols = min(4, len(terms))
    rows = math.ceil(len(terms) / cols)
    plt = _pyplot()
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 2.2 * rows), squeeze=False)
    for ax, term in zip(axes.flat, terms, strict=False):
        points = [(r["iter"], r[term]) for r in records if isinstance(r.get(term), (int, float))]
        iters, values = np.array(points, dtype=np.float64).T
        ax.plot(iters, values, linewidth=1.2)
        finite = np.abs(values[np.isfinite(values)])
        if finite.size and finite.min() > 0 and finite.max() / finite.min() > 100:
            ax.set_yscale("symlog", linthresh=max(finite.min(), 1e-3))
        ax.set_title(term, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("iteration", fontsize=7)
    for ax in list(axes.flat)[len(terms) :]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save_figure(fig, path)
