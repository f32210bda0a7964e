"""Turning a list of (image file, mask file, label, group) entries into an :class:`ImageDataset`.

Shared by the ISIC 2018 / HAM10000 and folder loaders: parallel decoding with a progress bar, the
``skip_bad`` policy, mask/handcrafted bookkeeping, and safe resolution of CSV paths inside a root.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from factorlens.data import imaging
from factorlens.data._progress import progress_enabled
from factorlens.data.base import IMAGE_SIZE, ImageDataset
from factorlens.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
# Below this many files a process pool costs more than it saves.
PARALLEL_MIN_FILES = 256
DECODE_WORKERS = 2
_CHUNK = 32


@dataclass(frozen=True)
class Entry:
    """One image to load: its file, optional mask file, label index and group key."""

    image_id: str
    image_path: Path
    mask_path: Path | None = None
    label: int | None = None
    group: str | None = None


def resolve_inside(root: Path, relative: str, where: str) -> Path:
    """``root / relative`` resolved; a path escaping ``root`` (``../../etc/passwd``) is a DataError."""
    try:
        candidate = (root / relative).resolve()
    except (ValueError, OSError) as error:  # a NUL byte, a symlink loop
        raise DataError(f"{where}: bad path {relative!r} ({error})") from None
    if not candidate.is_relative_to(root):
        raise DataError(f"{where}: path {relative!r} escapes the dataset root {root}")
    return candidate


def decode_all(entries: Sequence[Entry], *, progress: bool, desc: str, size: int = IMAGE_SIZE,
               channels: int = 3) -> list[imaging.DecodedItem]:
    """Decode every entry to ``uint8 [channels, size, size]``, in ``DECODE_WORKERS`` processes for large
    sets, in order."""
    tasks = [(str(e.image_path), None if e.mask_path is None else str(e.mask_path), size, channels)
             for e in entries]
    bar = tqdm(total=len(tasks), desc=desc, unit="img", disable=not progress_enabled(progress))
    results: list[imaging.DecodedItem] = []
    with bar:
        if len(tasks) < PARALLEL_MIN_FILES:
            for task in tasks:
                results.append(imaging.decode_item(task))
                bar.update(1)
        else:
            with ProcessPoolExecutor(max_workers=DECODE_WORKERS) as pool:
                for item in pool.map(imaging.decode_item, tasks, chunksize=_CHUNK):
                    results.append(item)
                    bar.update(1)
    return results


def build_dataset(
    entries: Sequence[Entry],
    *,
    name: str,
    spec: str,
    class_names: list[str] | None,
    with_masks: bool,
    skip_bad: bool,
    progress: bool,
    notes: dict,
    size: int = IMAGE_SIZE,
    channels: int = 3,
) -> ImageDataset:
    """Decode ``entries`` and assemble the dataset.

    Unreadable images raise :class:`DataError` naming the file, or are skipped and counted in
    ``notes["skipped_bad_images"]`` with ``skip_bad``; unreadable masks likewise (``notes["bad_masks"]``,
    the image is kept with NaN handcrafted factors). Missing masks (``missing_masks``) and empty masks
    (``empty_masks``) give NaN handcrafted factors and are kept.
    """
    decoded = decode_all(entries, progress=progress, desc=name, size=size, channels=channels)
    notes = dict(notes)
    kept: list[tuple[Entry, imaging.DecodedItem]] = []
    for entry, item in zip(entries, decoded, strict=True):
        if item.image_error is not None:
            if not skip_bad:
                raise DataError(f"cannot decode image {entry.image_path}: {item.image_error}")
            notes["skipped_bad_images"] = notes.get("skipped_bad_images", 0) + 1
            warnings.warn(f"skipped unreadable image {entry.image_path}", stacklevel=2)
            continue
        if item.mask_error is not None:
            if not skip_bad:
                raise DataError(f"cannot decode mask {entry.mask_path}: {item.mask_error}")
            notes["bad_masks"] = notes.get("bad_masks", 0) + 1
            warnings.warn(f"ignored unreadable mask {entry.mask_path}", stacklevel=2)
        kept.append((entry, item))
    if not kept:
        raise DataError(f"dataset {spec!r} has no readable images")

    images = np.stack([item.image for _, item in kept])
    upsampled = sum(item.upsampled for _, item in kept)
    if upsampled:
        notes["upsampled_images"] = upsampled
        warnings.warn(f"{upsampled} images smaller than {size} px were upsampled", stacklevel=2)
    masks = handcrafted = None
    if with_masks:
        masks = np.zeros((len(kept), size, size), dtype=np.uint8)
        handcrafted = np.stack([item.handcrafted for _, item in kept])
        for row, (_, item) in enumerate(kept):
            if item.mask is not None:
                masks[row] = item.mask
        missing = sum(entry.mask_path is None for entry, _ in kept)
        readable = sum(item.mask is not None for _, item in kept)
        empty = int(np.sum([item.mask is not None and np.isnan(item.handcrafted[0]) for _, item in kept]))
        notes["missing_masks"] = missing
        notes["empty_masks"] = empty
        notes["masks_used"] = readable
    labels = None
    if class_names is not None:
        labels = np.array([entry.label for entry, _ in kept], dtype=np.int64)
    groups = None
    if any(entry.group is not None for entry, _ in kept):
        # Images without a group key are their own group.
        keys = [entry.group if entry.group is not None else f"\0{entry.image_id}" for entry, _ in kept]
        _, groups = np.unique(np.array(keys), return_inverse=True)
        groups = groups.astype(np.int64)
    return ImageDataset(
        name=name,
        spec=spec,
        images=images,
        ids=[entry.image_id for entry, _ in kept],
        labels=labels,
        class_names=class_names,
        handcrafted=handcrafted,
        masks=masks,
        groups=groups,
        notes=notes,
    )


def list_images(folder: Path, *, recursive: bool, include_masks: bool = False) -> list[Path]:
    """Image files under ``folder`` (sorted), excluding ``*_segmentation`` masks unless ``include_masks``."""
    pattern = folder.rglob("*") if recursive else folder.glob("*")
    return sorted(
        path
        for path in pattern
        if path.suffix.lower() in IMAGE_SUFFIXES
        and path.is_file()
        and (include_masks or not path.stem.endswith("_segmentation"))
    )


# Suffixes a mask or label file may add to its image's stem (``ISIC_0000000_segmentation.png``,
# ``case01_seg.nii.gz``); tried in this order after the bare stem.
MASK_SUFFIXES = ("_segmentation", "_seg", "_lesion", "_mask", "_label", "_labels")


def find_by_stem(stem: str, candidates: dict[str, Path]) -> Path | None:
    """The candidate (``{stem: path}``) whose stem is ``stem`` or ``stem`` + one of :data:`MASK_SUFFIXES`."""
    for suffix in ("", *MASK_SUFFIXES):
        if stem + suffix in candidates:
            return candidates[stem + suffix]
    return None
