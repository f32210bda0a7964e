"""``isic2018:PATH[:MASKS]`` and ``ham10000:PATH[:MASKS]``: the ISIC 2018 Task 3 / HAM10000 images.

Accepted layouts under ``PATH``:

- official ISIC 2018: ``ISIC2018_Task3_Training_Input/*.jpg`` and
  ``ISIC2018_Task3_Training_GroundTruth/ISIC2018_Task3_Training_GroundTruth.csv`` (or the CSV in ``PATH``);
- HAM10000 (Kaggle/Dataverse): ``HAM10000_images_part_1/``, ``HAM10000_images_part_2/``,
  ``HAM10000_metadata.csv`` (``lesion_id, image_id, dx, ...``);
- flat: ``images/`` (or the images in ``PATH`` itself), ``masks/`` and either CSV.

``isic2018`` takes labels from the one-hot ground truth when present, ``ham10000`` from ``dx``; both
fall back to the other CSV (ISIC: Training, else Validation, else Test ground truth). ``groups`` come
from ``lesion_id`` of the metadata CSV, else of the official
``ISIC2018_Task3_Training_LesionGroupings.csv``; images without one are counted in the notes.
Masks: ``MASKS`` (a folder; relative paths are tried from the working directory, then inside ``PATH``),
else ``PATH/masks`` or ``PATH/ISIC2018_Task1_Training_GroundTruth`` when present; a mask for image
``ID`` is ``ID_segmentation.png`` or ``ID.png``.
"""

from __future__ import annotations

import csv
import warnings
from collections.abc import Callable
from pathlib import Path

from factorlens.data.base import ImageDataset
from factorlens.data.cache import cached_build, content_fingerprint, file_fingerprint
from factorlens.data.collection import Entry, build_dataset, list_images, resolve_inside
from factorlens.data.loading import DATASETS, DatasetSpec, existing_path
from factorlens.errors import ConfigError, DataError

ISIC_CLASS_NAMES = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
ISIC_SPLITS = ("Training", "Validation", "Test")
IMAGE_FOLDERS = (
    *(f"ISIC2018_Task3_{split}_Input" for split in ISIC_SPLITS),
    "HAM10000_images_part_1",
    "HAM10000_images_part_2",
    "images",
)
# In order of preference: the first one present gives the labels (Training, then Validation, then Test).
GROUND_TRUTH_CSVS = tuple(
    name
    for split in ISIC_SPLITS
    for name in (
        f"ISIC2018_Task3_{split}_GroundTruth/ISIC2018_Task3_{split}_GroundTruth.csv",
        f"ISIC2018_Task3_{split}_GroundTruth.csv",
    )
)
# The official Task 3 training ground truth also ships the lesion of every image.
LESION_GROUPING_CSVS = (
    "ISIC2018_Task3_Training_GroundTruth/ISIC2018_Task3_Training_LesionGroupings.csv",
    "ISIC2018_Task3_Training_LesionGroupings.csv",
)
METADATA_CSV = "HAM10000_metadata.csv"
MASK_FOLDERS = ("masks", "ISIC2018_Task1_Training_GroundTruth")
MASK_SUFFIXES = ("_segmentation.png", ".png")


def _read_csv(path: Path, required: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """Rows of ``path`` as ``(line number, row)``; missing columns or an empty file are DataErrors."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = [name.strip() for name in (reader.fieldnames or [])]
            missing = [name for name in required if name not in header]
            if missing:
                raise DataError(
                    f"{path}: missing column(s) {', '.join(missing)} (header: {','.join(header)})"
                )
            reader.fieldnames = header
            rows = [(reader.line_num, {k: (v or "").strip() for k, v in row.items() if k}) for row in reader]
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not a UTF-8 CSV file ({error.reason})") from None
    except csv.Error as error:
        raise DataError(f"{path}: malformed CSV ({error})") from None
    if not rows:
        raise DataError(f"{path}: CSV has no rows")
    return rows


def _check_unique(path: Path, line: int, image_id: str, seen: dict[str, int]) -> None:
    if image_id in seen:
        raise DataError(f"{path} row {line}: duplicate image id {image_id!r} (first on row {seen[image_id]})")
    seen[image_id] = line


def read_ground_truth(path: Path) -> dict[str, tuple[int, int]]:
    """One-hot ``image,MEL,...,VASC`` CSV -> ``{image id: (class index, line)}``."""
    labels: dict[str, tuple[int, int]] = {}
    seen: dict[str, int] = {}
    for line, row in _read_csv(path, ("image", *ISIC_CLASS_NAMES)):
        image_id = row["image"]
        if not image_id:
            raise DataError(f"{path} row {line}: empty image id")
        _check_unique(path, line, image_id, seen)
        try:
            values = [float(row[name]) for name in ISIC_CLASS_NAMES]
        except ValueError:
            raise DataError(f"{path} row {line}: non-numeric class column for {image_id!r}") from None
        if sorted(values) != [0.0] * (len(values) - 1) + [1.0]:
            raise DataError(
                f"{path} row {line}: {image_id!r} is not one-hot over {','.join(ISIC_CLASS_NAMES)}"
            )
        labels[image_id] = (values.index(1.0), line)
    return labels


def read_metadata(path: Path) -> tuple[dict[str, tuple[int, int]], dict[str, str]]:
    """HAM10000 metadata CSV -> ``({image id: (class index, line)}, {image id: lesion id})``."""
    labels: dict[str, tuple[int, int]] = {}
    lesions: dict[str, str] = {}
    seen: dict[str, int] = {}
    by_name = {name.lower(): index for index, name in enumerate(ISIC_CLASS_NAMES)}
    for line, row in _read_csv(path, ("lesion_id", "image_id", "dx")):
        image_id = row["image_id"]
        if not image_id:
            raise DataError(f"{path} row {line}: empty image_id")
        _check_unique(path, line, image_id, seen)
        diagnosis = row["dx"].lower()
        if diagnosis not in by_name:
            choices = ", ".join(sorted(by_name))
            raise DataError(
                f"{path} row {line}: unknown class {row['dx']!r} for {image_id!r}; expected {choices}"
            )
        labels[image_id] = (by_name[diagnosis], line)
        if row["lesion_id"]:
            lesions[image_id] = row["lesion_id"]
    return labels, lesions


def read_lesion_groupings(path: Path) -> dict[str, str]:
    """Official ``ISIC2018_Task3_Training_LesionGroupings.csv`` (``image,lesion_id,...``) ->
    ``{image id: lesion id}``."""
    lesions: dict[str, str] = {}
    seen: dict[str, int] = {}
    for line, row in _read_csv(path, ("image", "lesion_id")):
        image_id = row["image"]
        if not image_id:
            raise DataError(f"{path} row {line}: empty image id")
        _check_unique(path, line, image_id, seen)
        if row["lesion_id"]:
            lesions[image_id] = row["lesion_id"]
    return lesions


def _find_masks(root: Path, spec: DatasetSpec) -> Path | None:
    if len(spec.args) >= 2:
        given = Path(spec.args[1]).expanduser()
        for candidate in (given, root / given):
            if candidate.is_dir():
                return candidate.resolve()
        raise DataError(f"mask folder {spec.args[1]!r} (from dataset spec {spec.raw!r}) does not exist")
    for name in MASK_FOLDERS:
        if (root / name).is_dir():
            return (root / name).resolve()
    return None


def _image_files(root: Path) -> dict[str, Path]:
    """``{file stem: path}`` over the known image folders (or ``root`` itself when none exists)."""
    folders = [root / name for name in IMAGE_FOLDERS if (root / name).is_dir()] or [root]
    files: dict[str, Path] = {}
    for folder in folders:
        for path in list_images(folder, recursive=False):
            if path.stem in files:
                raise DataError(f"image {path.stem!r} is in two places: {files[path.stem]} and {path}")
            files[path.stem] = path
    return files


def _mask_files(mask_folder: Path | None) -> dict[str, Path]:
    """``{image id: mask path}`` for every ``ID_segmentation.png`` / ``ID.png`` in the mask folder."""
    if mask_folder is None:
        return {}
    masks: dict[str, Path] = {}
    for path in sorted(mask_folder.iterdir()):
        if path.suffix.lower() != ".png":
            continue
        if path.name.lower().endswith(MASK_SUFFIXES[0]):  # any case: ID_Segmentation.PNG counts too
            masks[path.name[: -len(MASK_SUFFIXES[0])]] = path  # the official name wins over ID.png
        else:
            masks.setdefault(path.stem, path)
    return masks


def _resolve_image(
    root: Path, files: dict[str, Path], image_id: str, csv_path: Path, line: int
) -> tuple[str, Path]:
    """The image file of a CSV id: a file stem, or a relative path that must stay inside ``root``."""
    if "/" in image_id or "\\" in image_id or image_id.startswith(".."):
        path = resolve_inside(root, image_id, f"{csv_path} row {line}")
        if not path.is_file():
            raise DataError(f"{csv_path} row {line}: image file {image_id!r} not found under {root}")
        return path.stem, path
    if image_id not in files:
        raise DataError(f"{csv_path} row {line}: no image file for {image_id!r} under {root}")
    return image_id, files[image_id]


def _load_isic_like(spec: DatasetSpec, *, prefer: str, skip_bad: bool, progress: bool) -> ImageDataset:
    if not spec.args or len(spec.args) > 2:
        raise ConfigError(f"dataset spec {spec.raw!r} must be {spec.name}:PATH[:MASKS]")
    root = existing_path(spec.args[0], "dataset folder", spec)
    if not root.is_dir():
        raise DataError(f"dataset folder {str(root)!r} (from dataset spec {spec.raw!r}) is not a folder")
    truths = [root / name for name in GROUND_TRUTH_CSVS if (root / name).is_file()]
    ground_truth = truths[0] if truths else None
    if len(truths) > 1:
        others = ", ".join(str(path) for path in truths[1:])
        warnings.warn(f"labels are read from {ground_truth} only; also found {others}", stacklevel=3)
    metadata = root / METADATA_CSV if (root / METADATA_CSV).is_file() else None
    grouping = next((root / name for name in LESION_GROUPING_CSVS if (root / name).is_file()), None)
    if ground_truth is None and metadata is None:
        names = ", ".join([*GROUND_TRUTH_CSVS, METADATA_CSV])
        raise DataError(f"no labels CSV in {root} (looked for {names})")

    lesions: dict[str, str] = {}
    meta_labels: dict[str, tuple[int, int]] = {}
    if metadata is not None:
        meta_labels, lesions = read_metadata(metadata)
    elif grouping is not None:
        lesions = read_lesion_groupings(grouping)
    readers: dict[str, Callable[[], tuple[Path, dict[str, tuple[int, int]]]]] = {
        "ground_truth": lambda: (ground_truth, read_ground_truth(ground_truth)),
        "metadata": lambda: (metadata, meta_labels),
    }
    order = ["ground_truth", "metadata"] if prefer == "ground_truth" else ["metadata", "ground_truth"]
    available = {"ground_truth": ground_truth, "metadata": metadata}
    labels_csv, labels = readers[next(source for source in order if available[source] is not None)]()

    files = _image_files(root)
    mask_folder = _find_masks(root, spec)
    masks = _mask_files(mask_folder)
    entries = []
    for image_id, (label, line) in labels.items():
        stem, path = _resolve_image(root, files, image_id, labels_csv, line)
        mask = masks.get(stem) if mask_folder is not None else None
        entries.append(Entry(stem, path, mask, label, lesions.get(image_id) or lesions.get(stem)))
    labelled = {entry.image_path for entry in entries}
    unlabelled = [path for path in files.values() if path not in labelled]
    notes: dict = {"labels_csv": str(labels_csv)}
    grouped = sum(entry.group is not None for entry in entries)
    if grouped < len(entries):
        # Without lesion ids a train/test split is per image, and HAM10000 has several images of one
        # lesion (10,015 images of 7,470 lesions): the same lesion could land on both sides.
        # Counted in the notes (`factorlens data info` prints them) rather than warned about: test
        # folders and users' own ISIC subsets routinely come without lesion ids.
        notes["images_without_lesion_id"] = len(entries) - grouped
    if unlabelled:
        notes["unlabelled_images"] = len(unlabelled)
        warnings.warn(f"{len(unlabelled)} image files in {root} have no row in {labels_csv}", stacklevel=3)

    csvs = [path for path in (ground_truth, metadata, grouping) if path is not None]
    params = {
        "source": spec.name,
        "prefer": prefer,
        "skip_bad": skip_bad,
        "root": str(root),
        "masks": None if mask_folder is None else str(mask_folder),
        "csvs": file_fingerprint(csvs),
        "csv_contents": content_fingerprint(csvs),
        "images": file_fingerprint(entry.image_path for entry in entries),
        "mask_files": file_fingerprint(entry.mask_path for entry in entries if entry.mask_path is not None),
        "notes": notes,
    }
    return cached_build(
        spec.name,
        params,
        spec.raw,
        lambda: build_dataset(
            entries,
            name=spec.name,
            spec=spec.raw,
            class_names=list(ISIC_CLASS_NAMES),
            with_masks=mask_folder is not None,
            skip_bad=skip_bad,
            progress=progress,
            notes=notes,
        ),
    )


@DATASETS.register("isic2018")
def load_isic2018(spec: DatasetSpec, *, skip_bad: bool, progress: bool) -> ImageDataset:
    """``isic2018:PATH[:MASKS]``: labels from the one-hot ground-truth CSV (metadata CSV as fallback)."""
    return _load_isic_like(spec, prefer="ground_truth", skip_bad=skip_bad, progress=progress)


@DATASETS.register("ham10000")
def load_ham10000(spec: DatasetSpec, *, skip_bad: bool, progress: bool) -> ImageDataset:
    """``ham10000:PATH[:MASKS]``: labels from ``HAM10000_metadata.csv`` (ground-truth CSV as fallback)."""
    return _load_isic_like(spec, prefer="metadata", skip_bad=skip_bad, progress=progress)
