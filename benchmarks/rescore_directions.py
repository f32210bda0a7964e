"""Score saved diffusion direction sets (and hspace-pca / random built here) with the lesion oracle at a
chosen list of traversal shifts, e.g. the range a learned set was trained on rather than the default +-3.

    python -m benchmarks.rescore_directions RUN DIR [DIR ...] --t-edit 500 --shifts -9 -6 -3 -1 0 1 3 6 9

Each DIR is a saved ``DirectionSet`` (``ddpm_quality --save-directions``); it is decoded with the DDIM
steps and t_edit it was discovered with. ``--closed-form`` adds ``hspace-pca`` (read at ``--t-edit``) and
``random`` (seed 0), the same sets ``ddpm_quality --closed-form`` scores. Every set is scored on the same
``--codes`` initial noises (seed 0) with ``factorlens.directions.scores.score_directions``; the found-rate
(``ddpm_quality``'s lesion test) is read at the largest shift, both signs. ``--rca-steps N`` adds the
pooled RCA of every set and of ``rca_comparison``'s random baseline on one shared pool of pairs
(``--rca-input difference``: reconstructors on the RMS-normalised difference). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from factorlens.directions.voynov import RECONSTRUCTOR_INPUTS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("sets", nargs="*", help="saved DirectionSet directories")
    parser.add_argument("--closed-form", action="store_true", help="also hspace-pca and random, K = 6")
    parser.add_argument("--t-edit", type=int, default=0, help="for the closed-form sets")
    parser.add_argument("--shifts", type=float, nargs="+", default=[-3, -2, -1, 0, 1, 2, 3],
                        help="traversal shifts in units of r (include 0 and +-1, the effect matrix's)")
    parser.add_argument("--codes", type=int, default=32)
    parser.add_argument("--found-codes", type=int, default=32)
    parser.add_argument("--min-darkness", type=float, default=0.05)
    parser.add_argument("--rca-steps", type=int, default=0,
                        help="also the pooled RCA of every set and a random baseline (0 = none)")
    parser.add_argument("--rca-pairs", type=int, default=1024, help="RCA's pool of decoded training pairs")
    parser.add_argument("--rca-input", choices=RECONSTRUCTOR_INPUTS, default="pair",
                        help="what RCA's reconstructors see (difference: RMS-normalised difference, log RMS)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not {0.0, 1.0, -1.0} <= set(args.shifts):
        parser.error("--shifts must include 0 (the base codes' readings) and +-1 (the effect matrix's)")
    if args.rca_steps < 0 or args.rca_pairs < 1:
        parser.error("--rca-steps must be >= 0 and --rca-pairs >= 1")

    from benchmarks.ddpm_quality import shifted_found_rates
    from factorlens.directions import DirectionSet, GeneratorAdapter, discover_directions
    from factorlens.directions.hspace import DiffusionAdapter
    from factorlens.directions.oracle import ORACLES
    from factorlens.directions.scores import score_directions
    from factorlens.environment import machine_line
    from factorlens.errors import FactorlensError
    from factorlens.io import atomic_write_text
    from factorlens.training import load_run

    oracle = ORACLES.get("synthetic-lesions")
    try:  # bad input: one line, before any decoding
        adapter = GeneratorAdapter.from_model(load_run(args.run).model, None)
        named: list[tuple[str, DirectionSet]] = [(str(Path(p)), DirectionSet.load(p)) for p in args.sets]
    except FactorlensError as error:
        parser.exit(2, f"error: {error}\n")
    if not isinstance(adapter, DiffusionAdapter):
        parser.exit(2, f"error: {args.run} is not a diffusion run\n")
    if args.closed_form:
        named.append(("hspace-pca", discover_directions(adapter, "hspace-pca", k=6, seed=0,
                                                        t_edit=args.t_edit)))
        named.append(("random", discover_directions(adapter, "random", k=6, seed=0)))
    if args.rca_steps > 0:  # one pool of pairs serves every set: one K, one t_edit
        sizes = {directions.num_directions for _, directions in named}
        edits = {int(directions.params.get("t_edit", args.t_edit)) for _, directions in named}
        if len(sizes) != 1 or len(edits) != 1:
            parser.exit(2, f"error: --rca-steps needs sets of one K and one t_edit, got K {sorted(sizes)}, "
                           f"t_edit {sorted(edits)}\n")
    result: dict = {"run": args.run, "machine": machine_line(), "threads": args.threads,
                    "shifts": args.shifts, "codes": args.codes, "load_average_start": os.getloadavg()}
    largest = max(abs(s) for s in args.shifts)
    for name, directions in named:
        started = time.perf_counter()
        t_edit = int(directions.params.get("t_edit", args.t_edit))
        adapter.configure(ddim_steps=int(directions.params.get("ddim_steps", adapter.ddim_steps)),
                          t_edit=t_edit)
        scores = score_directions(adapter, directions, oracle.read, oracle.factor_names,
                                  shifts=args.shifts, num_codes=args.codes, seed=0)
        rho = np.round(scores.matched_rho, 3)
        result[name] = {
            "method": directions.method, "t_edit": t_edit, "ddim_steps": adapter.ddim_steps,
            "matched_abs_spearman": dict(zip(scores.factor_names, rho.tolist(), strict=True)),
            "factors_at_0.7": int((rho >= 0.7).sum()),
            "matched_direction": scores.matched_direction.tolist(),
            "direction_mig": scores.direction_mig,
            "found_at_largest_shifts": shifted_found_rates(adapter, directions, oracle, n=args.found_codes,
                                                           min_darkness=args.min_darkness, largest=largest),
            "seconds": round(time.perf_counter() - started, 1),
        }
        print(name, result[name]["matched_abs_spearman"], flush=True)
    if args.rca_steps > 0:
        result["rca"] = pooled_rca(adapter, named, args)
        print("rca", result["rca"], flush=True)
    result["load_average_end"] = os.getloadavg()
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        atomic_write_text(args.out, text + "\n")


def pooled_rca(adapter, named: list, args: argparse.Namespace) -> dict:
    """Pooled RCA of every set on one shared pool of pairs (as ``rca_comparison`` with ``pairs``), with
    ``rca_comparison``'s random baseline (K random orthonormal rows, seed 1) added."""
    from factorlens.directions import discover_directions
    from factorlens.directions.voynov import cached_reconstructor_accuracies, pool_eval_pairs

    k = named[0][1].num_directions
    t_edit = int(named[0][1].params.get("t_edit", args.t_edit))
    adapter.configure(t_edit=t_edit)
    matrices = {name: directions.matrix for name, directions in named}
    matrices["random (seed 1)"] = discover_directions(adapter, "random", k=k, seed=1).matrix
    started = time.perf_counter()
    eval_pairs = pool_eval_pairs(args.rca_pairs)
    accuracies = cached_reconstructor_accuracies(adapter, matrices, pairs=args.rca_pairs,
                                                 eval_pairs=eval_pairs, steps=args.rca_steps, seed=0,
                                                 input_kind=args.rca_input)
    return {"estimator": "pool", "input": args.rca_input, "steps": args.rca_steps, "pairs": args.rca_pairs,
            "eval_pairs": eval_pairs, "chance": 1.0 / k, "t_edit": t_edit, "accuracy": accuracies,
            "seconds": round(time.perf_counter() - started, 1)}


if __name__ == "__main__":
    main()
