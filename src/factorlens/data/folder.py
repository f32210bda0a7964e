"""``folder:PATH[:CSV][:key=value,...]``: any folder of images (searched recursively), optionally labelled
by a CSV and with lesion masks.

Image ids are paths relative to ``PATH`` without the extension (``benign/img_001``). The optional CSV has
columns ``image,label`` (other names with ``image=Name,label=Clinical Diagnosis``); ``image`` is a relative
path (with or without extension) or a file stem that is unique in the folder. Class names are the sorted
distinct labels. Images with no CSV row are left out and counted in ``notes["unlabelled_images"]``; rows
with an empty image cell (a spreadsheet's legend under the table) are skipped and counted in
``notes["rows_without_image"]`` (a row with no label whose image cell names no file, such as
``Legend:``, counts as one). ``masks=DIR`` pairs each image with the mask file in ``DIR`` (recursive)
whose stem is the image's stem, optionally followed by ``_segmentation``, ``_seg``, ``_lesion``, ``_mask``,
``_label`` or ``_labels``; masks give ``masks`` and the handcrafted factors as for ISIC (``imaging.py``).
"""

from __future__ import annotations

import csv
import warnings
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from factorlens.data.base import IMAGE_SIZE, ImageDataset, image_size_option, integer_choice
from factorlens.data.cache import cached_build, content_fingerprint, file_fingerprint
from factorlens.data.collection import (
    MASK_SUFFIXES,
    Entry,
    build_dataset,
    find_by_stem,
    list_images,
    resolve_inside,
)
from factorlens.data.loading import DATASETS, DatasetSpec, existing_path, parse_options
from factorlens.errors import ConfigError, DataError
from factorlens.schema import as_dict, nonempty_text, option


def _optional_folder(value, where: str) -> str | None:
    return None if value is None else nonempty_text(value, where)


@dataclass(frozen=True)
class FolderOptions:
    """Options of ``folder:PATH[:CSV]:key=value,...`` (``masks=DIR,image=Name,label=Clinical Diagnosis``)."""

    masks: str | None = option(None, _optional_folder, "folder of mask files matched to images by stem")
    image: str = option("image", nonempty_text, "CSV column holding the image (relative path or stem)")
    label: str = option("label", nonempty_text, "CSV column holding the class label")
    size: int = option(IMAGE_SIZE, image_size_option, "image side: 32, 64 or 128")
    channels: int = option(3, integer_choice(1, 3), "3: RGB; 1: greyscale (the luminance) for greyscale data")


def _image_id(root: Path, path: Path) -> str:
    return str(PurePosixPath(path.relative_to(root).as_posix()).with_suffix(""))


def _read_labels(
    csv_path: Path, root: Path, files: list[Path], options: FolderOptions, notes: dict
) -> dict[Path, str]:
    """``{image path: label}`` from the CSV's image and label columns; bad rows are DataErrors naming the
    row; rows without an image are counted in ``notes["rows_without_image"]``."""
    by_relative = {path.relative_to(root).as_posix(): path for path in files}
    by_relative.update({_image_id(root, path): path for path in files})
    stems: dict[str, list[Path]] = {}
    for path in files:
        stems.setdefault(path.stem, []).append(path)
    try:
        return _read_label_rows(csv_path, root, by_relative, stems, options, notes)
    except UnicodeDecodeError as error:
        raise DataError(f"{csv_path}: not a UTF-8 CSV file ({error.reason})") from None
    except csv.Error as error:
        raise DataError(f"{csv_path}: malformed CSV ({error})") from None


def _read_label_rows(
    csv_path: Path,
    root: Path,
    by_relative: dict[str, Path],
    stems: dict[str, list[Path]],
    options: FolderOptions,
    notes: dict,
) -> dict[Path, str]:
    labels: dict[Path, str] = {}
    seen: dict[Path, int] = {}
    with open(csv_path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = [name.strip() for name in (reader.fieldnames or [])]
        missing = [name for name in (options.image, options.label) if name not in header]
        if missing:
            raise DataError(
                f"{csv_path}: missing column(s) {', '.join(missing)} (header: {','.join(header)})"
            )
        reader.fieldnames = header
        for row in reader:
            line = reader.line_num
            image = (row[options.image] or "").strip()
            label = (row[options.label] or "").strip()
            names_a_file = image in by_relative or image in stems
            if not image or (not label and not names_a_file):
                # a legend or note under the table ('Legend:', no label): reported, not fatal
                if any((value or "").strip() for value in row.values() if isinstance(value, str)):
                    notes["rows_without_image"] = notes.get("rows_without_image", 0) + 1
                    warnings.warn(f"{csv_path} row {line}: no image; row skipped", stacklevel=4)
                continue
            if not label:
                raise DataError(f"{csv_path} row {line}: empty label for {image!r}")
            where = f"{csv_path} row {line}"
            resolve_inside(root, image, where)  # refuses ../../etc/passwd before any lookup
            if image in by_relative:
                path = by_relative[image]
            elif len(stems.get(image, [])) == 1:
                path = stems[image][0]
            elif image in stems:
                raise DataError(
                    f"{where}: stem {image!r} matches {len(stems[image])} files; use the relative path"
                )
            else:
                raise DataError(f"{where}: no image file for {image!r} under {root}")
            if path in seen:
                raise DataError(f"{where}: duplicate image {image!r} (first on row {seen[path]})")
            seen[path] = line
            labels[path] = label
    if not labels:
        raise DataError(f"{csv_path}: CSV has no rows")
    return labels


def _split_args(spec: DatasetSpec) -> tuple[str | None, FolderOptions]:
    """(CSV argument or None, options) from ``folder:PATH[:CSV][:key=value,...]``."""
    rest = list(spec.args[1:])
    options_arg = rest.pop() if rest and "=" in rest[-1] else None
    if len(rest) > 1 or not spec.args:
        raise ConfigError(f"dataset spec {spec.raw!r} must be folder:PATH[:CSV][:key=value,...]")
    options_spec = DatasetSpec(spec.raw, spec.name, () if options_arg is None else (options_arg,))
    return (rest[0] if rest else None), parse_options(options_spec, FolderOptions)


def _mask_files(options: FolderOptions, root: Path, spec: DatasetSpec) -> tuple[Path | None, dict[str, Path]]:
    """The masks folder and its files by stem (``{}`` without ``masks=``)."""
    if options.masks is None:
        return None, {}
    given = Path(options.masks).expanduser()
    folder = next((path.resolve() for path in (given, root / given) if path.is_dir()), None)
    if folder is None:
        raise DataError(f"masks folder {options.masks!r} (from dataset spec {spec.raw!r}) does not exist")
    by_stem: dict[str, Path] = {}
    for path in list_images(folder, recursive=True, include_masks=True):
        if path.stem in by_stem:
            raise DataError(f"masks folder {folder}: two mask files with stem {path.stem!r} "
                            f"({by_stem[path.stem].name}, {path.name})")
        by_stem[path.stem] = path
    return folder, by_stem


@DATASETS.register("folder")
def load_folder(spec: DatasetSpec, *, skip_bad: bool, progress: bool) -> ImageDataset:
    """``folder:PATH[:CSV][:masks=DIR,image=COLUMN,label=COLUMN]`` (CSV and masks relative paths are tried
    from the working directory, then in PATH)."""
    csv_arg, options = _split_args(spec)
    root = existing_path(spec.args[0], "image folder", spec)
    if not root.is_dir():
        raise DataError(f"image folder {str(root)!r} (from dataset spec {spec.raw!r}) is not a folder")
    masks_dir, masks = _mask_files(options, root, spec)
    files = [
        path for path in list_images(root, recursive=True)
        if masks_dir is None or masks_dir == root or not path.is_relative_to(masks_dir)
    ]
    if masks_dir is not None:  # masks kept next to their images (PH2's IMD002_lesion.bmp) are not images
        files = [path for path in files if not path.stem.endswith(MASK_SUFFIXES)]
    if not files:
        raise DataError(f"no image files (jpg, jpeg, png, bmp, tif) under {root}")
    notes: dict = {}
    csv_path = None
    mask_of = {path: find_by_stem(path.stem, masks) for path in files} if masks_dir else dict.fromkeys(files)
    if csv_arg is not None:
        given = Path(csv_arg).expanduser()
        csv_path = next((path.resolve() for path in (given, root / given) if path.is_file()), None)
        if csv_path is None:
            raise DataError(f"labels CSV {csv_arg!r} (from dataset spec {spec.raw!r}) does not exist")
        labels = _read_labels(csv_path, root, files, options, notes)
        class_names = sorted(set(labels.values()))
        index = {name: i for i, name in enumerate(class_names)}
        entries = [
            Entry(_image_id(root, p), p, mask_of[p], label=index[labels[p]]) for p in files if p in labels
        ]
        if len(entries) < len(files):
            notes["unlabelled_images"] = len(files) - len(entries)
            warnings.warn(
                f"{len(files) - len(entries)} images under {root} have no row in {csv_path}", stacklevel=2
            )
    else:
        class_names = None
        entries = [Entry(_image_id(root, path), path, mask_of[path]) for path in files]
    params = {
        "source": "folder",
        "skip_bad": skip_bad,
        "root": str(root),
        "csv": None if csv_path is None else file_fingerprint([csv_path]),
        "csv_contents": None if csv_path is None else content_fingerprint([csv_path]),
        "images": file_fingerprint(entry.image_path for entry in entries),
        "notes": notes,
    }
    if masks_dir is not None:  # keys of mask-less folders stay as they were (their caches stay valid)
        params["options"] = as_dict(options)
        params["masks"] = file_fingerprint(e.mask_path for e in entries if e.mask_path is not None)
    elif as_dict(options) != as_dict(FolderOptions()):
        params["options"] = as_dict(options)
    return cached_build(
        "folder",
        params,
        spec.raw,
        lambda: build_dataset(
            entries,
            name="folder",
            spec=spec.raw,
            class_names=class_names,
            with_masks=masks_dir is not None,
            skip_bad=skip_bad,
            progress=progress,
            notes=notes,
            size=options.size,
            channels=options.channels,
        ),
    )
