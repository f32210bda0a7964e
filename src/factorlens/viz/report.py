"""One self-contained HTML report for a set of runs.

Everything is inline: images are base64 ``data:`` URIs, CSS is in a ``<style>`` element, links are
in-page anchors, so the file opens from disk (or an e-mail attachment) without a server or network.
Per run: config, training curves, the figures of :mod:`factorlens.viz.run_figures` with their captions,
and a section per direction set in ``RUN/directions/*/``. Table 1 comes from ``results_dir``
(``table1.md`` rendered as HTML, else ``table1.csv``) when given.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import shlex
from collections.abc import Sequence
from pathlib import Path

import yaml

import factorlens
from factorlens.errors import FactorlensError
from factorlens.io import atomic_write_text
from factorlens.viz.run_figures import make_run_figures
from factorlens.viz.seed_plots import report_sections

MAX_EMBED_BYTES = 1_500_000  # per image; larger files (long GIFs) are listed instead of embedded
MIME = {".png": "image/png", ".gif": "image/gif"}
DIRECTIONS_META = "directions.json"
SCORES_FILE = "scores.json"
METRICS_FILE = "metrics.json"

CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 0 auto; max-width: 1400px;
       padding: 1em 2em; color: #222; line-height: 1.4; }
h1 { border-bottom: 2px solid #444; } h2 { border-bottom: 1px solid #bbb; margin-top: 2em; }
figure { margin: 1em 0 2em 0; } figure img { max-width: 100%; image-rendering: pixelated;
         border: 1px solid #ddd; } figcaption { font-size: 0.9em; color: #444; max-width: 70em; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; font-size: 0.85em; }
table { border-collapse: collapse; font-size: 0.9em; margin: 0.5em 0 1.5em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #eee; } td:first-child, th:first-child { text-align: left; }
nav ul { columns: 2; } .note { color: #a40; }
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _anchor(*parts: str) -> str:
    return "-".join("".join(ch if ch.isalnum() else "-" for ch in part).strip("-") for part in parts)


def image_tag(path: Path, alt: str) -> str:
    """``<img>`` with the file as a base64 data URI, or a note when it is too large to embed."""
    data = path.read_bytes()
    if len(data) > MAX_EMBED_BYTES:
        size_mb = len(data) / 1e6
        return f'<p class="note">{_e(path.name)} ({size_mb:.1f} MB) is too large to embed; see {_e(path)}</p>'
    mime = MIME.get(path.suffix.lower())
    if mime is None:
        raise FactorlensError(f"{path}: only PNG and GIF figures can be embedded in the report")
    encoded = base64.b64encode(data).decode("ascii")
    return f'<img src="data:{mime};base64,{encoded}" alt="{_e(alt)}">'


def figure_html(path: Path, caption: str) -> str:
    return f"<figure>{image_tag(path, caption)}<figcaption>{_e(caption)}</figcaption></figure>"


def table_html(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _markdown_row(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _is_markdown_rule(line: str) -> bool:
    cells = _markdown_row(line)
    return bool(cells) and all(cell and set(cell) <= set(":-") and "-" in cell for cell in cells)


def markdown_html(text: str) -> str:
    """The small Markdown subset ``factorlens evaluate`` writes, as HTML: pipe tables (header row, rule
    row, body rows), ``- `` bullet lists and paragraphs. Everything else is escaped text."""
    lines = text.splitlines()
    parts: list[str] = []
    bullets: list[str] = []
    i = 0

    def flush_bullets() -> None:
        if bullets:
            parts.append("<ul>" + "".join(f"<li>{_e(b)}</li>" for b in bullets) + "</ul>")
            bullets.clear()

    while i < len(lines):
        line = lines[i].strip()
        if line.startswith("|") and i + 1 < len(lines) and _is_markdown_rule(lines[i + 1]):
            flush_bullets()
            header = _markdown_row(line)
            body = []
            i += 2
            while i < len(lines) and lines[i].strip().startswith("|"):
                body.append(_markdown_row(lines[i]))
                i += 1
            parts.append(table_html(header, body))
            continue
        if line.startswith("- "):
            bullets.append(line[2:])
        else:
            flush_bullets()
            if line:
                parts.append(f"<p>{_e(line)}</p>")
        i += 1
    flush_bullets()
    return "".join(parts)


def table1_html(results_dir: Path) -> str:
    """Table 1 of ``factorlens evaluate``: ``table1.md`` rendered as HTML (values with std, n/a reasons,
    change relative to beta-TCVAE), else ``table1.csv``; plus what each run was evaluated on, from
    ``metrics.json`` when present."""
    csv_path, md_path = results_dir / "table1.csv", results_dir / "table1.md"
    if md_path.exists():
        parts = [markdown_html(md_path.read_text(encoding="utf-8")), f"<p>From {_e(md_path)}.</p>"]
    elif csv_path.exists():
        with csv_path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
        if not rows:
            raise FactorlensError(f"{csv_path} is empty")
        parts = [table_html(rows[0], rows[1:]), f"<p>From {_e(csv_path)}.</p>"]
    else:
        raise FactorlensError(
            f"{results_dir} holds neither table1.md nor table1.csv (run factorlens evaluate)"
        )
    metrics_path = results_dir / METRICS_FILE
    if metrics_path.exists():
        parts.append(evaluated_runs_html(metrics_path))
    return "".join(parts)


def evaluated_runs_html(metrics_path: Path) -> str:
    """One row per evaluated run of ``metrics.json``: table row name, model, iteration, data used."""
    try:
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        raise FactorlensError(f"{metrics_path} is not valid JSON") from None
    records = metrics.get("runs") if isinstance(metrics, dict) else None
    if not isinstance(records, list):
        raise FactorlensError(f"{metrics_path} has no 'runs' list (was it written by factorlens evaluate?)")
    rows = [
        (
            record.get("row", ""),
            record.get("model", ""),
            record.get("run", ""),
            record.get("iteration", ""),
            (record.get("data") or {}).get("evaluated_on", ""),
        )
        for record in records
    ]
    return table_html(["row", "model", "run", "iteration", "evaluated on"], rows)


def _format_value(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list) and all(isinstance(v, (int, float)) for v in value):
        return "[" + ", ".join(_format_value(v) for v in value) + "]"
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def flatten_scores(scores: object, prefix: str = "") -> list[tuple[str, str]]:
    """``scores.json`` as (dotted key, formatted value) rows; nested dicts are flattened."""
    if isinstance(scores, dict):
        rows: list[tuple[str, str]] = []
        for key, value in scores.items():
            rows += flatten_scores(value, f"{prefix}.{key}" if prefix else str(key))
        return rows
    return [(prefix, _format_value(scores))]


def directions_html(run_path: Path, run_anchor: str) -> tuple[str, list[tuple[str, str]]]:
    """Sections for each ``RUN/directions/<name>/`` holding a ``directions.json``; returns HTML and
    (anchor, title) entries for the table of contents."""
    parts, toc = [], []
    for folder in sorted(p for p in (run_path / "directions").glob("*") if (p / DIRECTIONS_META).is_file()):
        meta_path = folder / DIRECTIONS_META
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            raise FactorlensError(f"{meta_path} is not valid JSON") from None
        anchor = _anchor(run_anchor, "directions", folder.name)
        used = {existing for existing, _ in toc}
        if anchor in used:  # "a b" and "a-b" map to the same id: number the later one
            anchor = next(f"{anchor}-{n}" for n in range(2, len(toc) + 3) if f"{anchor}-{n}" not in used)
        title = f"Directions: {folder.name} ({meta.get('method', 'unknown method')})"
        toc.append((anchor, title))
        parts.append(f'<h3 id="{anchor}">{_e(title)}</h3>')
        for file_name, caption in (meta.get("figures") or {}).items():
            if (folder / file_name).is_file():
                parts.append(figure_html(folder / file_name, caption))
        if (folder / SCORES_FILE).is_file():
            scores = json.loads((folder / SCORES_FILE).read_text(encoding="utf-8"))
            parts.append(table_html(["score", "value"], flatten_scores(scores)))
        if (folder / "explanation.json").is_file():  # factorlens explain (docs/explain.md)
            from factorlens.explain.report import explanation_rows

            header, rows = explanation_rows(json.loads((folder / "explanation.json").read_text("utf-8")))
            parts.append(table_html(header, rows))
    return "".join(parts), toc


def run_section(
    run_path: Path, index: int, *, data_spec: str | None, figure_options: dict
) -> tuple[str, list]:
    from factorlens.training import load_run

    run = load_run(run_path)
    anchor = _anchor(f"run{index}", run_path.name)
    title = f"Run {index + 1}: {run_path.name} ({run.model_name}, iteration {run.iteration})"
    toc = [(anchor, title)]
    manifest = make_run_figures(run, data_spec=data_spec, **figure_options)
    config_yaml = yaml.safe_dump(run.config.to_dict(), sort_keys=False)
    parts = [
        f'<h2 id="{anchor}">{_e(title)}</h2>',
        f"<p>{_e(run_path.resolve())}</p>",
        # the report stays static; the interactive explorer is one command away
        f"<p>Explore this run interactively (sliders, walks, uploads; a local server): "
        f"<code>factorlens explore {_e(shlex.quote(str(run_path)))}</code></p>",
        f"<details><summary>config.yaml</summary><pre>{_e(config_yaml)}</pre></details>",
    ]
    figures_dir = run_path / "figures"
    for file_name, caption in manifest.items():
        if (figures_dir / file_name).is_file():
            parts.append(figure_html(figures_dir / file_name, caption))
    directions, directions_toc = directions_html(run_path, anchor)
    return "".join(parts) + directions, toc + directions_toc


def write_report(
    run_paths: Sequence[str | Path],
    out_html: str | Path,
    *,
    results_dir: str | Path | None = None,
    data_spec: str | None = None,
    **figure_options,
) -> Path:
    """Write ONE self-contained HTML report for ``run_paths`` to ``out_html``.

    Figures are (re)drawn into each ``RUN/figures/`` first (options as in
    :func:`~factorlens.viz.run_figures.make_run_figures`, e.g. ``n_images``, ``steps``, ``span``);
    ``data_spec`` draws them from another dataset than the one each run was trained on.
    """
    if not run_paths:
        raise FactorlensError("the report needs at least one run directory")
    out_html = Path(out_html)
    toc: list[tuple[str, str]] = []
    body: list[str] = []
    if results_dir is not None:
        results_dir = Path(results_dir)
        toc.append(("table1", "Table 1: disentanglement metrics"))
        body.append(f'<h2 id="table1">Table 1: disentanglement metrics</h2>{table1_html(results_dir)}')
    for anchor, title, section in report_sections(results_dir, run_paths):  # over seeds; machines
        toc.append((anchor, title))
        body.append(f'<h2 id="{anchor}">{_e(title)}</h2>{section}')
    for index, run_path in enumerate(run_paths):
        section, entries = run_section(
            Path(run_path), index, data_spec=data_spec, figure_options=figure_options
        )
        body.append(section)
        toc += entries
    nav = "".join(f'<li><a href="#{anchor}">{_e(title)}</a></li>' for anchor, title in toc)
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>factorlens report</title><style>{CSS}</style></head><body>"
        f"<h1>factorlens report</h1><p>factorlens {_e(factorlens.__version__)}; {len(run_paths)} run(s).</p>"
        f"<nav><h2>Contents</h2><ul>{nav}</ul></nav>{''.join(body)}</body></html>\n"
    )
    atomic_write_text(out_html, page)
    return out_html
