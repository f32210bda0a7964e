"""Do fp32 and bf16 training agree? Loss curves of a preset over seeds, in both precisions, side by side.

Trains ``cpu/<model>`` (default the demo's β-TCVAE, 1,000 iterations) with each seed in fp32 and in bf16
autocast through the public ``factorlens.training.train`` and compares the logged training terms in
windows of ``--window`` iterations: per window, the mean and the standard deviation over seeds of each
precision, their difference, and that difference in units of the seed spread (the pooled standard
deviation over seeds). "Agree within the seed spread" means |difference| <= 2 spreads in every window.

    python -m benchmarks.precision_agreement --seeds 0 1 2 --iters 1000 --out /tmp/precision

Not a test: it prints tables and the machine line, and writes ``OUT/curves.json``. bf16 only makes sense
where the CPU has bf16 units (``train.precision: auto`` says which); elsewhere it is merely slower.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from factorlens.environment import machine_line

TERMS = ("loss", "rec", "kl")


def run_curves(model: str, seed: int, precision: str, iters: int, out: Path, threads: int) -> dict:
    from factorlens.config import load_config, resolve_config_path
    from factorlens.training import train

    config = load_config(resolve_config_path(f"cpu/{model}"))
    config["train"].update({"seed": seed, "precision": precision, "iterations": iters, "log_every": 10,
                            "checkpoint_every": iters, "num_threads": threads})
    run = out / f"{model}-{precision}-seed{seed}"
    started = time.perf_counter()
    train(config, run, force=True, progress=False)
    seconds = time.perf_counter() - started
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return {"iters": [r["iter"] for r in log], **{t: [r[t] for r in log] for t in TERMS if t in log[0]},
            "seconds": seconds}


def windows(curve: list[float], iters: list[int], window: int) -> np.ndarray:
    """Mean of the logged values in consecutive windows of ``window`` iterations."""
    iters_arr, values = np.asarray(iters), np.asarray(curve, dtype=np.float64)
    edges = np.arange(0, iters_arr.max() + window, window)
    return np.array([values[(iters_arr > lo) & (iters_arr <= lo + window)].mean() for lo in edges[:-1]])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="btcvae")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--iters", type=int, default=1000)
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="/tmp/precision-agreement")
    args = parser.parse_args(argv)
    if len(args.seeds) < 2:
        parser.error("--seeds needs at least two seeds (the comparison is in units of the seed spread)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    curves: dict[str, list[dict]] = {"fp32": [], "bf16": []}
    for seed in args.seeds:  # interleaved, so that a change of machine load hits both precisions alike
        for precision in curves:
            curves[precision].append(run_curves(args.model, seed, precision, args.iters, out, args.threads))
    (out / "curves.json").write_text(json.dumps(curves))
    print(f"# {machine_line('fp32 and bf16 autocast')}")
    print(f"# cpu/{args.model}, {args.iters} iterations, seeds {args.seeds}, windows of {args.window}")
    for precision, runs in curves.items():
        seconds = [r["seconds"] for r in runs]
        print(f"# {precision}: {np.mean(seconds):.1f} s per run "
              f"(min {min(seconds):.1f}, max {max(seconds):.1f})")
    worst = 0.0
    for term in TERMS:
        if term not in curves["fp32"][0]:
            continue
        per = {p: np.stack([windows(r[term], r["iters"], args.window) for r in runs])
               for p, runs in curves.items()}
        print(f"\n{term}: window | fp32 mean ± sd | bf16 mean ± sd | bf16 - fp32 | in seed spreads "
              "| paired: per-seed difference mean ± sd")
        for w in range(per["fp32"].shape[1]):
            a, b = per["fp32"][:, w], per["bf16"][:, w]
            spread = float(np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2))
            diff = float(b.mean() - a.mean())
            units = 0.0 if diff == 0 else (diff / spread if spread > 0 else float("inf"))
            worst = float("nan") if np.isnan(units) else max(worst, abs(units))
            paired = b - a  # the same seed in both precisions: how far one run drifts from its twin
            print(f"{(w + 1) * args.window:>6} | {a.mean():9.3f} ± {a.std(ddof=1):7.3f} | "
                  f"{b.mean():9.3f} ± {b.std(ddof=1):7.3f} | {diff:+8.3f} | {units:+6.2f} | "
                  f"{paired.mean():+8.3f} ± {paired.std(ddof=1):7.3f}")
    print(f"\nlargest |bf16 - fp32| over windows and terms: {worst:.2f} seed spreads "
          f"({'within' if worst <= 2 else 'NOT within'} 2 spreads)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
