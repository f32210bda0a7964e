"""Methods x runs table of the direction scores written by `factorlens discover`.

    python -m benchmarks.directions_table runs/demo/btcvae runs/demo/gan

Reads ``RUN/directions/<method>/scores.json`` for every method found and prints one markdown row per
(run, method): direction-MIG, modularity, coverage (factors with a direction of |Spearman rho| >= 0.8),
the mean Interpretability Index of Klindt et al. (chance 0.5),
the number of directions, the post-hoc RCA of the directions next to the latent axes and random
orthonormal directions (same K, same reconstructor budget), and the seconds each stage took.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from factorlens.environment import machine_line


def rows(run: Path) -> list[str]:
    found = []
    for scores_path in sorted((run / "directions").glob("*/scores.json")):
        scores = json.loads(scores_path.read_text(encoding="utf-8"))
        rca = scores.get("rca") or {}
        seconds = scores.get("seconds") or {}
        k = len(scores.get("effect") or [])  # effect is [K, J]

        def fmt(value, spec=".3f"):
            return "n/a" if value is None else format(value, spec)

        found.append(
            f"| {run.name} | {scores['method']} | {k} | {fmt(scores.get('direction_mig'))} | "
            f"{fmt(scores.get('modularity'))} | {fmt(scores.get('coverage'), '.2f')} | "
            f"{fmt((scores.get('interpretability_index') or {}).get('mean'), '.2f')} | "
            f"{fmt(rca.get('directions'), '.2f')} / {fmt(rca.get('axes'), '.2f')} / "
            f"{fmt(rca.get('random'), '.2f')} (chance {fmt(rca.get('chance'), '.2f')}) | "
            + " / ".join(str(seconds.get(stage, "n/a")) for stage in ("discover", "score", "rca"))
            + " |"
        )
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args(argv)
    print("| run | method | K | direction-MIG | modularity | coverage | II (Klindt) | "
          "RCA directions / axes / random | seconds discover / score / RCA |")
    print("|---|---|---:|---:|---:|---:|---:|---|---|")
    for run in args.runs:
        for row in rows(run):
            print(row)
    # The scores were computed by `factorlens discover` on the machine of the runs (normally this one).
    print(f"\n{machine_line('fp32')}")


if __name__ == "__main__":
    main()
