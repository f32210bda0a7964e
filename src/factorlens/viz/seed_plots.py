"""Report sections for results over seeds and for where results were made.

- Over seeds (when ``factorlens evaluate`` wrote ``seeds.json``): the mean ± std table, the per-seed
  table and the paired differences (``seeds.md``), and one dot plot per metric — a dot per seed, a bar
  at each model's mean — as inline SVG, so the report stays one self-contained file.
- Machines: the machine record of the evaluation (``metrics.json``) and of each run's training
  (``summary.json``), since the same seed gives other numbers on another kind of CPU.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from pathlib import Path

from factorlens.environment import describe_machine

# Dot-plot geometry (pixels)
LABEL_W, PLOT_W, ROW_H, TOP, BOTTOM = 190, 420, 26, 22, 30
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering [lo, hi]."""
    span = hi - lo
    step = 10 ** math.floor(math.log10(span / n)) if span > 0 else 1.0
    for factor in (1, 2, 5, 10):
        if span / (step * factor) <= n + 2:
            step *= factor
            break
    first = math.ceil(lo / step) * step
    return [round(first + i * step, 12) for i in range(int((hi - first) / step + 1e-9) + 1)]


def dot_plot_svg(rows: Sequence[tuple[str, dict]], label: str, scale: float = 1.0) -> str:
    """One metric: a row per model, a dot per seed (hover: the seed and value), a bar at the mean.

    ``rows``: (model name, ``{seed: value}``) in table order; values are multiplied by ``scale``.
    """
    values = [v * scale for _, per_seed in rows for v in per_seed.values()]
    if not values:
        return ""
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.08 or abs(hi) * 0.05 or 1.0
    lo, hi = lo - pad, hi + pad

    def x(v: float) -> float:
        return LABEL_W + (v - lo) / (hi - lo) * PLOT_W

    height = TOP + ROW_H * len(rows) + BOTTOM
    width = LABEL_W + PLOT_W + 20
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="{_e(label)}: one dot per seed, a bar at the mean" '
        'font-family="system-ui, sans-serif" font-size="12">',
        f'<text x="{LABEL_W}" y="14" font-weight="bold">{_e(label)}</text>',
    ]
    axis_y = TOP + ROW_H * len(rows)
    for tick in _ticks(lo, hi):
        parts.append(
            f'<line x1="{x(tick):.1f}" y1="{TOP}" x2="{x(tick):.1f}" y2="{axis_y}" stroke="#e4e4e4"/>'
            f'<text x="{x(tick):.1f}" y="{axis_y + 16}" text-anchor="middle" fill="#555">{tick:g}</text>'
        )
    for i, (name, per_seed) in enumerate(rows):
        y = TOP + ROW_H * i + ROW_H / 2
        colour = COLOURS[i % len(COLOURS)]
        parts.append(f'<text x="{LABEL_W - 8}" y="{y + 4:.1f}" text-anchor="end">{_e(name)}</text>')
        if not per_seed:
            continue
        mean = sum(per_seed.values()) / len(per_seed) * scale
        parts.append(
            f'<line x1="{x(mean):.1f}" y1="{y - 9:.1f}" x2="{x(mean):.1f}" y2="{y + 9:.1f}" '
            f'stroke="{colour}" stroke-width="3"><title>{_e(name)} mean {mean:.4g}</title></line>'
        )
        for seed, value in per_seed.items():
            parts.append(
                f'<circle cx="{x(value * scale):.1f}" cy="{y:.1f}" r="4.5" fill="{colour}" '
                f'fill-opacity="0.55" stroke="{colour}">'
                f"<title>{_e(name)}, seed {_e(seed)}: {value * scale:.4g}</title></circle>"
            )
    parts.append("</svg>")
    return "".join(parts)


def seeds_html(results_dir: Path) -> str:
    """The over-seeds section: ``seeds.md`` as HTML and a dot plot per metric from ``seeds.json``."""
    from factorlens.viz.report import markdown_html

    data = json.loads((results_dir / "seeds.json").read_text(encoding="utf-8"))
    plots = []
    for metric, spec in data["columns"].items():
        rows = [
            (g["name"], dict(zip(g["metrics"][metric]["seeds"], g["metrics"][metric]["values"], strict=True)))
            for g in data["groups"]
        ]
        plots.append(dot_plot_svg(rows, spec["column"], 100.0 if spec.get("percent") else 1.0))
    parts = [
        "<p>One dot per training seed, a bar at each model's mean.</p>",
        '<div style="display:flex;flex-wrap:wrap;gap:1em">' + "".join(plots) + "</div>",
    ]
    if (results_dir / "seeds.md").is_file():
        parts.append(markdown_html((results_dir / "seeds.md").read_text(encoding="utf-8")))
    parts.append(f"<p>From {_e(results_dir / 'seeds.json')} ({_e(data['definition'])}).</p>")
    return "".join(parts)


def machines_html(results_dir: Path | None, run_paths: Sequence[str | Path]) -> str:
    """Where each run was trained (its ``summary.json``) and where it was evaluated (``metrics.json``)."""
    from factorlens.viz.report import table_html

    rows = []
    for run in run_paths:
        summary = Path(run) / "summary.json"
        record = _read(summary).get("environment")
        rows.append(("trained", str(run), describe_machine(record) if record else "not recorded"))
    if results_dir is not None:
        record = _read(Path(results_dir) / "metrics.json").get("environment")
        if record:
            rows.append(("evaluated", str(results_dir), describe_machine(record)))
    note = (
        "<p>Training is deterministic for one seed on one kind of CPU; other CPUs (other instruction "
        "sets, hence other oneDNN/MKL kernels and summation orders) give other numbers for the same seed. "
        "Compare models over seeds, not one seed across machines.</p>"
    )
    return note + table_html(["what", "where", "machine"], rows)


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def report_sections(
    results_dir: str | Path | None, run_paths: Sequence[str | Path]
) -> list[tuple[str, str, str]]:
    """(anchor, title, HTML) of the sections :func:`~factorlens.viz.report.write_report` adds."""
    sections = []
    if results_dir is not None and (Path(results_dir) / "seeds.json").is_file():
        sections.append(
            (
                "seeds",
                "Over training seeds: mean ± std, per seed, paired differences",
                seeds_html(Path(results_dir)),
            )
        )
    sections.append(
        (
            "machines",
            "Where these results were made",
            machines_html(None if results_dir is None else Path(results_dir), run_paths),
        )
    )
    return sections
