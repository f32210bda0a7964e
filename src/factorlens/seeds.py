"""Training seeds as a dimension of an experiment: the ``--seeds`` list and the run layout it writes.

``factorlens train ... --seeds 0,1,2`` and ``factorlens demo --seeds 0,1,2`` train one normal (resumable)
run per seed into ``OUT/<model>/seed-<s>/``; ``factorlens evaluate`` pools runs whose resolved configs
differ only in ``train.seed`` (:mod:`factorlens.evaluation.compare`). Without ``--seeds`` the layout is
the single-run one (``OUT/`` for ``train``, ``OUT/<model>/`` for ``demo``).
"""

from __future__ import annotations

from pathlib import Path

from factorlens.errors import ConfigError
from factorlens.schema import integer

SEED_DIR_PREFIX = "seed-"


def parse_seeds(text: str, where: str = "--seeds") -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]``: non-negative integers, no repeats, at least one."""
    parts = [part.strip() for part in str(text).split(",") if part.strip()]
    if not parts:
        raise ConfigError(f"{where} is empty; give comma-separated seeds such as 0,1,2")
    seeds = []
    for part in parts:
        try:
            value = int(part)
        except ValueError:
            message = f"{where} must be comma-separated integers such as 0,1,2, got {part!r}"
            raise ConfigError(message) from None
        seeds.append(integer(0)(value, where))
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise ConfigError(f"{where} repeats seed {', '.join(map(str, repeated))}")
    return seeds


def seed_run_dir(out: str | Path, model: str, seed: int) -> Path:
    """The run directory of one seed: ``OUT/<model>/seed-<s>``."""
    return Path(out) / model / f"{SEED_DIR_PREFIX}{seed}"
