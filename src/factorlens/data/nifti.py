"""``nifti:PATH[:key=value,...]``: a NIfTI volume (``.nii``/``.nii.gz``) or a folder of them, as 2-D slices.

Read with nibabel (the ``medical`` extra); the slicing options and conventions are those of
:mod:`factorlens.data.volumes`. Each file is one volume and one group (patient); its id is the path relative
to the folder without ``.nii``/``.nii.gz``. ``labels=PATH`` gives label volumes: a file (for a single volume)
or a folder whose files match the volumes by stem, optionally with a suffix (``case01_seg.nii.gz``).
"""

from __future__ import annotations

import warnings
import zlib
from pathlib import Path

import numpy as np

from factorlens.data.base import ImageDataset
from factorlens.data.collection import find_by_stem
from factorlens.data.loading import DATASETS, DatasetSpec
from factorlens.data.volumes import (
    Volume,
    VolumeOptions,
    cached_slices,
    path_and_options,
    require,
    select_frame,
)
from factorlens.errors import DataError

NIFTI_SUFFIXES = (".nii.gz", ".nii")


def nifti_stem(path: Path) -> str:
    """``case01`` for ``case01.nii.gz`` and ``case01.nii``."""
    name = path.name
    for suffix in NIFTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def list_nifti(folder: Path, *, exclude: Path | None = None) -> list[Path]:
    """``.nii``/``.nii.gz`` files under ``folder`` (recursive, sorted), none under ``exclude``."""
    return sorted(
        path for path in folder.rglob("*")
        if path.is_file() and path.name.lower().endswith(NIFTI_SUFFIXES)
        and (exclude is None or not path.is_relative_to(exclude))
    )


def read_nifti(path: Path, frame: int | None) -> tuple[np.ndarray, np.ndarray]:
    """``(float32 data [X, Y, Z], affine)`` of one file (scaled by the header's slope and intercept)."""
    nib = require("nibabel", "nifti")
    try:
        image = nib.load(str(path))
        if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
            raise ValueError(f"a {type(image).__name__}, not NIfTI")
        data = np.asarray(image.get_fdata(dtype=np.float32))
        affine = np.asarray(image.affine, dtype=np.float64)
    except (nib.filebasedimages.ImageFileError, OSError, EOFError, ValueError, zlib.error) as error:
        raise DataError(f"cannot read NIfTI file {path}: {type(error).__name__}: {error}") from None
    return select_frame(data, frame, str(path)), affine


def _label_files(options: VolumeOptions, files: list[Path], spec: DatasetSpec) -> dict[Path, Path | None]:
    if options.labels is None:
        return dict.fromkeys(files)
    labels = Path(options.labels).expanduser()
    if not labels.exists():
        raise DataError(f"labels {str(labels)!r} (from dataset spec {spec.raw!r}) does not exist")
    if labels.is_file():
        if len(files) != 1:
            raise DataError(f"labels={labels} is one file but {spec.raw!r} has {len(files)} volumes; "
                            "give a folder of label volumes")
        return {files[0]: labels.resolve()}
    candidates = {nifti_stem(path): path for path in list_nifti(labels.resolve())}
    return {path: find_by_stem(nifti_stem(path), candidates) for path in files}


def _volume(path: Path, root: Path, label_path: Path | None, options: VolumeOptions) -> Volume:
    data, affine = read_nifti(path, options.frame)
    parent = path.parent.relative_to(root)
    volume_id = nifti_stem(path) if parent == Path(".") else f"{parent.as_posix()}/{nifti_stem(path)}"
    volume = Volume(data=data, affine=affine, volume_id=volume_id, group=volume_id, source=str(path))
    if label_path is not None:
        label, label_affine = read_nifti(label_path, None)
        if label.shape != data.shape:
            raise DataError(f"label volume {label_path} has shape {'x'.join(map(str, label.shape))} but its "
                            f"volume {path} has {'x'.join(map(str, data.shape))}")
        if not np.allclose(label_affine, affine, atol=1e-2):
            raise DataError(f"label volume {label_path} is not on the voxel grid of {path} (another affine)")
        volume.label, volume.label_source = label, str(label_path)
    return volume


@DATASETS.register("nifti")
def load_nifti(spec: DatasetSpec, *, skip_bad: bool, progress: bool) -> ImageDataset:
    """``nifti:PATH[:axis=2,every=1,size=64,window=lo,hi,skip_empty=...,labels=...]``."""
    path, options = path_and_options(spec, "NIfTI path")
    require("nibabel", "nifti")
    if path.is_dir():
        labels_dir = Path(options.labels).expanduser().resolve() if options.labels else None
        files = list_nifti(path, exclude=labels_dir)
        if not files:
            raise DataError(f"no NIfTI files (.nii, .nii.gz) under {path}")
        root = path
    else:
        if not path.name.lower().endswith(NIFTI_SUFFIXES):
            raise DataError(f"{path} is not a NIfTI file (.nii or .nii.gz)")
        files, root = [path], path.parent
    label_files = _label_files(options, files, spec)
    sources = files + [p for p in label_files.values() if p is not None]

    def read() -> tuple[list[Volume], dict]:
        volumes, notes = [], {}
        for file in files:
            try:
                volumes.append(_volume(file, root, label_files[file], options))
            except DataError:
                if not skip_bad:
                    raise
                notes["skipped_bad_volumes"] = notes.get("skipped_bad_volumes", 0) + 1
                warnings.warn(f"skipped unreadable volume {file}", stacklevel=2)
        if options.labels is not None:
            notes["missing_label_volumes"] = sum(p is None for p in label_files.values())
        if not volumes:
            raise DataError(f"dataset {spec.raw!r} has no readable volumes")
        return volumes, notes

    return cached_slices(spec, options, sources, read, library="nibabel")
