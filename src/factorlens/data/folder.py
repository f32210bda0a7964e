"""``folder:PATH[:CSV]``: any folder of images (searched recursively), optionally labelled by a CSV.

Image ids are paths relative to ``PATH`` without the extension (``benign/img_001``). The optional CSV has
columns ``image,label``; ``image`` is a relative path (with or without extension) or a file stem that
is unique in the folder. Class names are the sorted distinct labels. Images with no CSV row are left
out and counted in ``notes["unlabelled_images"]``.
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path, PurePosixPath

from factorlens.data.base import ImageDataset
from factorlens.data.cache import cached_build, content_fingerprint, file_fingerprint
from factorlens.data.collection import Entry, build_dataset, list_images, resolve_inside
from factorlens.data.loading import DATASETS, DatasetSpec, existing_path
from factorlens.errors import ConfigError, DataError


def _image_id(root: Path, path: Path) -> str:
    return str(PurePosixPath(path.relative_to(root).as_posix()).with_suffix(""))


def _read_labels(csv_path: Path, root: Path, files: list[Path]) -> dict[Path, str]:
    """``{image path: label}`` from an ``image,label`` CSV; bad rows are DataErrors naming the row."""
    by_relative = {path.relative_to(root).as_posix(): path for path in files}
    by_relative.update({_image_id(root, path): path for path in files})
    stems: dict[str, list[Path]] = {}
    for path in files:
        stems.setdefault(path.stem, []).append(path)
    try:
        return _read_label_rows(csv_path, root, by_relative, stems)
    except UnicodeDecodeError as error:
        raise DataError(f"{csv_path}: not a UTF-8 CSV file ({error.reason})") from None
    except csv.Error as error:
        raise DataError(f"{csv_path}: malformed CSV ({error})") from None


def _read_label_rows(
    csv_path: Path, root: Path, by_relative: dict[str, Path], stems: dict[str, list[Path]]
) -> dict[Path, str]:
    labels: dict[Path, str] = {}
    seen: dict[Path, int] = {}
    with open(csv_path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = [name.strip() for name in (reader.fieldnames or [])]
        missing = [name for name in ("image", "label") if name not in header]
        if missing:
            raise DataError(
                f"{csv_path}: missing column(s) {', '.join(missing)} (header: {','.join(header)})"
            )
        reader.fieldnames = header
        for row in reader:
            line, image, label = reader.line_num, (row["image"] or "").strip(), (row["label"] or "").strip()
            if not image or not label:
                raise DataError(f"{csv_path} row {line}: empty image or label")
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


@DATASETS.register("folder")
def load_folder(spec: DatasetSpec, *, skip_bad: bool, progress: bool) -> ImageDataset:
    """``folder:PATH[:CSV]`` (CSV relative paths are tried from the working directory, then in PATH)."""
    if not spec.args or len(spec.args) > 2:
        raise ConfigError(f"dataset spec {spec.raw!r} must be folder:PATH[:CSV]")
    root = existing_path(spec.args[0], "image folder", spec)
    if not root.is_dir():
        raise DataError(f"image folder {str(root)!r} (from dataset spec {spec.raw!r}) is not a folder")
    files = list_images(root, recursive=True)
    if not files:
        raise DataError(f"no image files (jpg, jpeg, png, bmp, tif) under {root}")
    notes: dict = {}
    csv_path = None
    if len(spec.args) == 2:
        given = Path(spec.args[1]).expanduser()
        csv_path = next((path.resolve() for path in (given, root / given) if path.is_file()), None)
        if csv_path is None:
            raise DataError(f"labels CSV {spec.args[1]!r} (from dataset spec {spec.raw!r}) does not exist")
        labels = _read_labels(csv_path, root, files)
        class_names = sorted(set(labels.values()))
        index = {name: i for i, name in enumerate(class_names)}
        entries = [Entry(_image_id(root, p), p, label=index[labels[p]]) for p in files if p in labels]
        if len(entries) < len(files):
            notes["unlabelled_images"] = len(files) - len(entries)
            warnings.warn(
                f"{len(files) - len(entries)} images under {root} have no row in {csv_path}", stacklevel=2
            )
    else:
        class_names = None
        entries = [Entry(_image_id(root, path), path) for path in files]
    params = {
        "source": "folder",
        "skip_bad": skip_bad,
        "root": str(root),
        "csv": None if csv_path is None else file_fingerprint([csv_path]),
        "csv_contents": None if csv_path is None else content_fingerprint([csv_path]),
        "images": file_fingerprint(entry.image_path for entry in entries),
        "notes": notes,
    }
    return cached_build(
        "folder",
        params,
        spec.raw,
        lambda: build_dataset(
            entries,
            name="folder",
            spec=spec.raw,
            class_names=class_names,
            with_masks=False,
            skip_bad=skip_bad,
            progress=progress,
            notes=notes,
        ),
    )
