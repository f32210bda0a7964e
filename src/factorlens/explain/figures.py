"""Figures of an explanation: counterfactual strips with the classifier's probability, a delta-p bar chart."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from factorlens.io import atomic_write_bytes


def _save(fig, path: Path) -> None:
    from matplotlib import pyplot as plt

    try:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100)
    finally:
        plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def save_strips(strips: dict, report: dict, entries: list[dict], path: Path, *,
                below_threshold: bool = False) -> Path:
    """Rows: (direction, source image); columns: alpha = 0 (reconstruction) then the edits. ``entries``:
    the report's entries of the drawn candidates, in the strips' order (AttFind's choice, or the strongest
    candidate below the threshold when ``below_threshold``, which the title then says)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    images, probs, alphas = strips["images"], strips["p_target"], strips["alphas"]
    rows, cols = images.shape[:2]
    per_direction = rows // max(1, len(entries))
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols + 1.2, 1.45 * rows), squeeze=False)
    for r in range(rows):
        entry = entries[r // max(1, per_direction)]
        for c in range(cols):
            ax = axes[r, c]
            image = np.clip(images[r, c].transpose(1, 2, 0), 0, 1)
            ax.imshow(
                image[..., 0] if image.shape[-1] == 1 else image,
                cmap="gray" if image.shape[-1] == 1 else None,
            )
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(f"p={probs[r, c]:.2f}", fontsize=8)
            if r == 0:
                ax.set_title(f"{entry['sign'] * alphas[c] + 0.0:+g} sd", fontsize=8)
        sign = "+" if entry["sign"] > 0 else "-"
        axes[r, 0].set_ylabel(f"dir {entry['direction']}{sign}", fontsize=8)
    title = f"towards {report['target']}"
    if below_threshold:
        title += f" -- strongest candidate, below AttFind's threshold {report['options']['threshold']:g}"
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    _save(fig, path)
    return path


def save_delta_bars(report: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    candidates = report["candidates"]
    values = [c["mean_delta_p"] for c in candidates]
    labels = [f"{c['direction']}{'+' if c['sign'] > 0 else '-'}" for c in candidates]
    chosen = {(e["direction"], e["sign"]) for e in report["selected"]}
    below = report.get("best_below_threshold")
    weak = {(below["direction"], below["sign"])} if below else set()
    colours = [
        "tab:red" if (c["direction"], c["sign"]) in chosen
        else "tab:orange" if (c["direction"], c["sign"]) in weak else "tab:gray"
        for c in candidates
    ]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.3 * len(values) + 1.5), 3.0))
    ax.bar(range(len(values)), values, color=colours)
    ax.set_xticks(range(len(values)), labels, rotation=90, fontsize=7)
    ax.axhline(0, color="black", linewidth=0.5)
    p95 = report["random"].get("mean_delta_p_p95")
    if p95 is not None:
        ax.axhline(p95, color="tab:blue", linestyle="--", linewidth=1)
    ax.set_ylabel(f"mean change of p({report['target']})")
    ax.axhline(report["options"]["threshold"], color="tab:red", linestyle=":", linewidth=1)
    ax.set_title(f"alpha = {report['alpha']:g} posterior sd; red: AttFind's choice"
                 + ("; orange: strongest, below the first threshold (dotted)" if below
                    else "; dotted: first threshold"),
                 fontsize=9)
    fig.tight_layout()
    _save(fig, path)
    return path
