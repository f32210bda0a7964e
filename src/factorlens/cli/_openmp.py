"""The OpenMP environment the ``factorlens`` command sets before torch loads (issue 20, shared machines).

PyTorch's CPU kernels run on libgomp's thread pool, whose idle threads spin-wait for the next parallel
region before they sleep. Alone on a machine that saves microseconds; with a second busy process (two
trainings, or the tests during a training) the spinning threads take the cores the other process needs,
and both slow down far more than the halving that sharing implies. ``OMP_WAIT_POLICY=PASSIVE`` makes idle
threads sleep at once. libgomp reads the variable once, when torch loads it, so the command line sets it
first thing; a value the user exported wins. Measured in ``benchmarks/contention.py`` (docs/performance.md).

This module imports nothing heavy: it runs before ``import torch``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

WAIT_POLICY = "PASSIVE"


def openmp_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables to add to ``environ``: ``OMP_WAIT_POLICY=PASSIVE``, unless the user chose a policy
    (``OMP_WAIT_POLICY``) or a spin count (``GOMP_SPINCOUNT``, which PASSIVE would override;
    ``GOMP_SPINCOUNT=300000`` restores libgomp's default spinning)."""
    if "OMP_WAIT_POLICY" in environ or "GOMP_SPINCOUNT" in environ:
        return {}
    return {"OMP_WAIT_POLICY": WAIT_POLICY}


def apply_openmp_environment() -> None:
    """Set the variables in this process (call before torch is imported). The policy in effect is part
    of :func:`factorlens.environment.machine_record` (summary.json, metrics.json, benchmark tables)."""
    os.environ.update(openmp_environment(os.environ))
