"""The explanation's table in the HTML report (``viz/report.py`` calls :func:`explanation_rows`)."""

from __future__ import annotations


def explanation_rows(report: dict) -> tuple[list[str], list[list[object]]]:
    """Header and rows: one per direction AttFind chose (or, when it chose none, the strongest candidate,
    marked below the threshold), then the random baseline."""
    header = ["rank", "direction", "mean Δp", "flip fraction", "oracle: moved most (ratio to next)"]
    rows: list[list[object]] = []
    below = report.get("best_below_threshold")
    entries = [(entry["round"] + 1, entry) for entry in report.get("selected", [])]
    if below:
        entries.append(("none selected; strongest, below threshold", below))
    for rank, entry in entries:
        oracle = entry.get("oracle")
        ratio = (oracle or {}).get("ratio_to_next")
        shown = "inf" if ratio is None else f"{ratio:.2f}"
        moved = "n/a" if not oracle else f"{oracle['moved_most']} ({shown})"
        rows.append([rank, f"{entry['direction']}{'+' if entry['sign'] > 0 else '-'}",
                     f"{entry['mean_delta_p']:.3f}", f"{entry['flip_fraction']:.3f}", moved])
    baseline = report.get("random") or {}
    if baseline.get("num_random"):
        rows.append([f"random x{baseline['num_random']} (p95)", "",
                     f"{baseline['mean_delta_p_p95']:.3f}", f"{baseline['flip_fraction_p95']:.3f}", ""])
    rows.append([f"target {report.get('target')}", f"alpha {report.get('alpha')} posterior sd",
                 f"{report.get('num_source')} source codes", report.get("codes_from", ""), ""])
    return header, rows
