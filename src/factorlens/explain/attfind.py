"""AttFind (DiffEx's ranking), as a pure function of a per-image effect table.

Candidates are (direction, sign) pairs, candidate ``c = 2 k + s`` (s = 0: +alpha, 1: -alpha). Every
candidate edits the *original* codes, so its per-image change of the target probability ``delta[c, n]``
and whether it flips image n to the target class ``flipped[c, n]`` are computed once; the greedy rounds
only choose among them:

round r: over the source images not yet flipped by a chosen candidate, the unused candidate with the
largest mean delta is kept if that mean is > threshold_r; its flipped images leave the pool;
``threshold_{r+1} = threshold_r - step``; stop after ``max_directions``, when no candidate passes, or when
no image is left. (The public code hard-codes class 0 when removing flipped images and appends a None when
nothing passes; here the flips come from the target index and the loop stops.)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from factorlens.errors import ConfigError


@dataclass(frozen=True)
class AttFindStep:
    candidate: int
    direction: int
    sign: int  # +1 or -1
    round: int
    threshold: float
    mean_delta_active: float  # mean delta over the images still in the pool this round
    images_in_pool: int

    def to_json(self) -> dict:
        return asdict(self)


def candidate_of(direction: int, sign: int) -> int:
    return 2 * direction + (0 if sign > 0 else 1)


def attfind(
    delta: np.ndarray,
    flipped: np.ndarray,
    *,
    threshold: float = 0.25,
    step: float = 0.02,
    max_directions: int = 3,
) -> list[AttFindStep]:
    """Greedy selection on ``delta [2K, N]`` (float) and ``flipped [2K, N]`` (bool); see the module doc."""
    delta = np.asarray(delta, dtype=np.float64)
    flipped = np.asarray(flipped, dtype=bool)
    if delta.ndim != 2 or delta.shape != flipped.shape or delta.shape[0] % 2:
        raise ConfigError(
            f"AttFind needs delta and flipped of one shape [2K, N], got {delta.shape} and {flipped.shape}"
        )
    active = np.ones(delta.shape[1], dtype=bool)
    used: set[int] = set()
    chosen: list[AttFindStep] = []
    current = float(threshold)
    while len(chosen) < max_directions and active.any() and len(used) < len(delta):
        means = np.where([c in used for c in range(len(delta))], -np.inf, delta[:, active].mean(axis=1))
        best = int(np.argmax(means))  # ties: the lowest candidate index
        if not means[best] > current:
            break
        chosen.append(
            AttFindStep(
                best,
                best // 2,
                1 if best % 2 == 0 else -1,
                len(chosen),
                current,
                float(means[best]),
                int(active.sum()),
            )
        )
        used.add(best)
        active &= ~flipped[best]
        current -= step
    return chosen


def effect_table(
    base_probs: np.ndarray, edited_probs: np.ndarray, target: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(delta [C, N], flipped [C, N])`` from probabilities ``base [N, classes]`` and ``edited
    [C, N, classes]``: the change of the ``target`` column, and whether the predicted class became
    ``target`` where it was not."""
    base_probs, edited_probs = np.asarray(base_probs), np.asarray(edited_probs)
    if not 0 <= target < base_probs.shape[1]:
        raise ConfigError(f"target index {target} out of range for {base_probs.shape[1]} classes")
    delta = edited_probs[..., target] - base_probs[None, :, target]
    flipped = (edited_probs.argmax(axis=-1) == target) & (base_probs.argmax(axis=-1) != target)[None]
    return delta, flipped
