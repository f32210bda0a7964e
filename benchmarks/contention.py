"""Two trainings at once on one machine: does each keep half the speed of one alone, under each OpenMP policy?

On a 2-core machine a user trains two models at once, or runs the tests during a training. PyTorch's
OpenMP threads spin-wait between parallel regions by default (libgomp's ``OMP_WAIT_POLICY=ACTIVE``-like
spinning for a while), so two processes with 2 threads each steal cores from each other while they spin.
This benchmark measures, per policy, one training alone and then two started at once (separate
processes, the same ``Trainer.step`` as ``factorlens train``, random 64 px images in memory):

    python -m benchmarks.contention                               # btcvae, batch 64, default vs passive
    python -m benchmarks.contention --model vae --steps 40 --policies default passive factorlens

Policies: ``default`` (no OMP_WAIT_POLICY in the environment), ``passive`` (OMP_WAIT_POLICY=PASSIVE),
``VAR=VALUE`` (that variable, e.g. ``GOMP_SPINCOUNT=10000``: libgomp's spin iterations before sleeping),
``factorlens`` (what the ``factorlens`` command would set now: PASSIVE when the machine is busy),
``A+B`` (the first process with policy A, the second with B: ``default+passive`` is what the
``factorlens`` command does when a training starts on an idle machine and a second one starts later).
The goal (issue 20): each of two at once >= 45 % of one alone, and one alone not
slower than with the default policy. Not a test: prints a markdown table; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

POLICIES = ("default", "passive", "factorlens")


def child(model: str, batch: int, steps: int, warmup: int) -> None:
    """Run in a child process: time ``steps`` training steps (train_throughput's measure), print one JSON
    line."""
    import torch

    from benchmarks.train_throughput import measure

    row = measure(model, batch, "fp32", warmup=warmup, steps=steps, dataset_size=2048)
    print(json.dumps({"images_per_s": row["images_per_s"], "threads": torch.get_num_threads(),
                      "wait_policy": os.environ.get("OMP_WAIT_POLICY", "(unset)")}))


def environment_for(policy: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy == "passive":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    elif policy == "factorlens":
        from factorlens.openmp import busy_cpus, openmp_environment

        env.update(openmp_environment(env, busy_cpus())[0])
    elif "=" in policy:  # any variable, e.g. GOMP_SPINCOUNT=10000
        name, _, value = policy.partition("=")
        env[name] = value
    return env


def run_together(count: int, policy: str, args: argparse.Namespace) -> list[dict]:
    """Start ``count`` children at once; their JSON results. Policy ``A+B`` gives the first child policy
    A and the others B (e.g. ``default+passive``: a training that started alone, then a second one)."""
    command = [sys.executable, "-m", "benchmarks.contention", "--child", "--model", args.model,
               "--batch", str(args.batch), "--steps", str(args.steps), "--warmup", str(args.warmup)]
    first, _, rest = policy.partition("+")
    policies = [first] + [rest or first] * (count - 1)
    processes = [subprocess.Popen(command, env=environment_for(p), stdout=subprocess.PIPE, text=True)
                 for p in policies]
    results = []
    for process in processes:
        out, _ = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"child failed with exit code {process.returncode}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="btcvae")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--policies", nargs="+", default=["default", "passive"],
                        help=f"{', '.join(POLICIES)} or VAR=VALUE (e.g. GOMP_SPINCOUNT=10000)")
    parser.add_argument("--repeat", type=int, default=2, help="alternate the policies this many times")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.model, args.batch, args.steps, args.warmup)
        return
    from factorlens.environment import machine_line

    print(f"# {machine_line()}; {time.strftime('%Y-%m-%d')}; load average before {os.getloadavg()[0]:.2f}")
    print(f"# {args.model}, batch {args.batch}, fp32, {args.steps} timed steps per process, "
          f"{args.repeat} alternations of the policies")
    alone: dict[str, list[float]] = {p: [] for p in args.policies}
    first: dict[str, list[float]] = {p: [] for p in args.policies}
    second: dict[str, list[float]] = {p: [] for p in args.policies}
    for repeat in range(args.repeat):
        for policy in args.policies if repeat % 2 == 0 else args.policies[::-1]:
            # "alone" runs the first child's policy: the speed of a training that has the machine
            alone[policy] += [r["images_per_s"] for r in run_together(1, policy.partition("+")[0], args)]
            one, two = run_together(2, policy, args)
            first[policy].append(one["images_per_s"])
            second[policy].append(two["images_per_s"])
    print("| policy | one alone, images/s | two at once: first, second, images/s | first / alone | "
          "second / alone | both / alone |")
    print("|---|---:|---:|---:|---:|---:|")
    for policy in args.policies:
        solo, a, b = (float(np.median(v)) for v in (alone[policy], first[policy], second[policy]))
        spread = f"({min(alone[policy]):.0f}-{max(alone[policy]):.0f})"
        print(f"| {policy} | {solo:.0f} {spread} | {a:.0f}, {b:.0f} | {a / solo:.2f} | {b / solo:.2f} | "
              f"{(a + b) / solo:.2f} |", flush=True)


if __name__ == "__main__":
    main()
