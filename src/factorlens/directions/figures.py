"""Figures of a direction set: traversal grid along the top directions and the effect-matrix heat map."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from factorlens.directions.adapter import GeneratorAdapter
from factorlens.directions.direction_set import DirectionSet
from factorlens.io import atomic_write_bytes

TRAVERSAL_SHIFTS = (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0)


@torch.no_grad()
def traversal_images(
    adapter: GeneratorAdapter,
    directions: DirectionSet,
    *,
    top: int = 8,
    shifts: Sequence[float] = TRAVERSAL_SHIFTS,
    seed: int = 0,
) -> np.ndarray:
    """``float32 [R, len(shifts), C, H, W]``: one base code shifted by ``shifts`` posterior sigmas along
    each of the first ``R = min(top, K)`` directions."""
    base = adapter.sample_base(1, torch.Generator().manual_seed(seed))[0]
    vectors = torch.as_tensor(directions.shift_vectors()[:top])
    t = torch.tensor(list(shifts), dtype=torch.float32)
    codes = base + t[None, :, None] * vectors[:, None, :]  # [R, S, d]
    images = adapter.decode_batched(codes.reshape(-1, adapter.latent_dim))
    return images.reshape(len(vectors), len(t), *images.shape[1:]).numpy()


def save_traversal_grid(
    adapter: GeneratorAdapter, directions: DirectionSet, path: str | Path, *, top: int = 8, seed: int = 0
) -> Path:
    """Write the traversal grid PNG (rows: directions, columns: shifts in sigmas) via ``viz.grid``."""
    from factorlens.viz.grid import save_grid

    images = traversal_images(adapter, directions, top=top, seed=seed)
    labels = directions.labels or [""] * directions.num_directions
    row_labels = [
        f"{directions.method} {k}" + (f" ({labels[k]})" if labels[k] else "") for k in range(len(images))
    ]
    col_labels = [f"{t:+g} sd" for t in TRAVERSAL_SHIFTS]
    save_grid(images, Path(path), row_labels=row_labels, col_labels=col_labels)
    return Path(path)


def save_effect_heatmap(
    effect: np.ndarray, factor_names: Sequence[str], path: str | Path, title: str = ""
) -> Path:
    """Write a ``[K, J]`` effect matrix as a heat map PNG (directions as rows, factors as columns)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    K, J = effect.shape
    fig, ax = plt.subplots(figsize=(1.2 + 0.7 * J, 1.0 + 0.3 * K))
    try:
        image = ax.imshow(effect, cmap="viridis", aspect="auto")
        ax.set_xticks(range(J), list(factor_names), rotation=45, ha="right")
        ax.set_yticks(range(K), [str(k) for k in range(K)])
        ax.set_xlabel("factor (oracle)")
        ax.set_ylabel("direction")
        if title:
            ax.set_title(title)
        fig.colorbar(image, ax=ax, label="factor sd per posterior sd")
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100)
    finally:
        plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)
