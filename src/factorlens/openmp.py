"""The OpenMP wait policy the ``factorlens`` command (cli/main.py) sets before torch loads (issue 20).

PyTorch's CPU kernels run on libgomp's thread pool, whose idle threads spin-wait for the next parallel
region before they sleep. Alone on a machine that is the fastest choice; with a second busy process (two
trainings, or the tests during a training) spinning threads take the cores the other process needs and
both slow down far more than the halving that sharing implies. ``OMP_WAIT_POLICY=PASSIVE`` makes idle
threads sleep at once, which costs 10-25 % when the process is alone (waking threads at each of a step's
hundreds of parallel regions). Measured on a 2-vCPU AMD EPYC (``benchmarks/contention.py``, β-TCVAE,
docs/performance.md): two spinning trainings 0.09-0.21x of one alone each; two passive 0.69-0.91x; the
first spinning and the second passive 0.52x each. So the command looks at the machine before torch loads:
if other processes keep at least half a CPU busy, it sets PASSIVE; on an idle machine it keeps libgomp's
default. A policy (``OMP_WAIT_POLICY``) or spin count (``GOMP_SPINCOUNT``) the user exported wins.

This module imports nothing heavy: it runs before ``import torch``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path

BUSY_THRESHOLD_CPUS = 0.5  # other processes' CPU use, in CPUs, above which idle threads must not spin
SAMPLE_SECONDS = 0.1
PROC_STAT = Path("/proc/stat")

# What apply_openmp_environment decided and why (recorded by factorlens.environment.machine_record).
decision: str | None = None


def busy_cpus(sample_seconds: float = SAMPLE_SECONDS, stat: Path = PROC_STAT) -> float | None:
    """CPUs kept busy by other processes over ``sample_seconds`` (this one sleeps meanwhile), from the
    ``cpu`` line of ``/proc/stat``; None where that file does not exist (not Linux)."""

    def read() -> tuple[int, int]:
        fields = [int(v) for v in stat.read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields[:8]), idle  # user..steal; guest time is already inside user

    try:
        total_0, idle_0 = read()
        time.sleep(sample_seconds)
        total_1, idle_1 = read()
    except (OSError, ValueError, IndexError):
        return None
    elapsed = total_1 - total_0
    if elapsed <= 0:
        return None
    return (elapsed - (idle_1 - idle_0)) / elapsed * (os.cpu_count() or 1)


def openmp_environment(environ: Mapping[str, str], busy: float | None) -> tuple[dict[str, str], str]:
    """The variables to add to ``environ`` and the reason: ``OMP_WAIT_POLICY=PASSIVE`` when other
    processes keep ``busy`` >= 0.5 CPUs busy, nothing on an idle machine or when the user chose a policy
    (``OMP_WAIT_POLICY``) or a spin count (``GOMP_SPINCOUNT``, which PASSIVE would override)."""
    for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
        if name in environ:
            return {}, f"{name}={environ[name]} from the environment"
    if busy is None:
        return {}, "libgomp default (machine load unknown)"
    if busy >= BUSY_THRESHOLD_CPUS:
        return {"OMP_WAIT_POLICY": "PASSIVE"}, f"PASSIVE: {busy:.1f} CPUs busy with other work at start"
    return {}, f"libgomp default spinning: machine idle at start ({busy:.1f} CPUs busy)"


def apply_openmp_environment() -> None:
    """Decide and set the policy in this process (call before torch is imported); the decision is kept
    in :data:`decision` for the machine record (summary.json, metrics.json)."""
    global decision
    environ = os.environ
    user_choice = "OMP_WAIT_POLICY" in environ or "GOMP_SPINCOUNT" in environ
    added, decision = openmp_environment(environ, None if user_choice else busy_cpus())
    os.environ.update(added)
