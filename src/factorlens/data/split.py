"""Grouped train/test splits and the ``factorlens data info`` summary."""

from __future__ import annotations

import numpy as np

from factorlens.data.base import HANDCRAFTED_FACTOR_NAMES, ImageDataset
from factorlens.errors import ConfigError


def split_indices(
    ds: ImageDataset, *, test_fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``(train_idx, test_idx)``: sorted ``int64`` image indices, no group on both sides.

    Groups (``ds.groups``, else one group per image) are shuffled with ``seed`` and taken into the test
    side until it holds ``round(test_fraction * N)`` images or the next group would overshoot by more
    than stopping short, so the test share is as close to ``test_fraction`` as whole groups allow.
    Deterministic for a given dataset, fraction and seed.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"test_fraction must be in (0, 1), got {test_fraction}")
    n = len(ds)
    groups = np.arange(n) if ds.groups is None else np.asarray(ds.groups)
    unique, group_of_image, group_sizes = np.unique(groups, return_inverse=True, return_counts=True)
    if len(unique) < 2:
        raise ConfigError(f"cannot split {n} images in {len(unique)} group(s) into train and test")
    order = np.random.default_rng(seed).permutation(len(unique))
    target = test_fraction * n
    cumulative = np.cumsum(group_sizes[order])
    # Smallest prefix of shuffled groups whose image count is closest to the target (ties: fewer images).
    count = int(np.argmin(np.abs(cumulative - target))) + 1
    count = min(max(count, 1), len(unique) - 1)
    in_test = np.zeros(len(unique), dtype=bool)
    in_test[order[:count]] = True
    test_mask = in_test[group_of_image]
    return np.flatnonzero(~test_mask).astype(np.int64), np.flatnonzero(test_mask).astype(np.int64)


def describe(ds: ImageDataset) -> str:
    """A multi-line, human-readable summary of ``ds`` (what ``factorlens data info`` prints)."""
    lines = [f"dataset: {ds.name} ({ds.spec})", f"images: {len(ds)} x {tuple(ds.images.shape[1:])} uint8"]
    if ds.labels is not None and ds.class_names is not None:
        counts = np.bincount(ds.labels, minlength=len(ds.class_names))
        order = sorted(range(len(counts)), key=lambda c: (-counts[c], ds.class_names[c]))
        lines.append("classes: " + ", ".join(f"{ds.class_names[c]} {counts[c]}" for c in order))
    if ds.groups is not None:
        lines.append(f"groups: {len(np.unique(ds.groups))}")
    if ds.factor_names:
        sizes = ", ".join(
            f"{name} ({size})" for name, size in zip(ds.factor_names, ds.factor_sizes, strict=True)
        )
        lines.append(f"factors: {sizes}")
    if ds.handcrafted is not None:
        measured = ~np.isnan(ds.handcrafted[:, 0])
        medians = (
            ", ".join(
                f"{name} {np.median(ds.handcrafted[measured, k]):.3f}"
                for k, name in enumerate(HANDCRAFTED_FACTOR_NAMES)
            )
            if measured.any()
            else "n/a"
        )
        lines.append(f"handcrafted medians: {medians} ({int(measured.sum())} measured)")
        lines.append(f"empty masks: {ds.notes.get('empty_masks', 0)}")
    if ds.notes:
        lines.append("notes: " + ", ".join(f"{key}={value}" for key, value in sorted(ds.notes.items())))
    return "\n".join(lines)
