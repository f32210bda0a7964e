"""``dicom:PATH[:key=value,...]``: a folder of DICOM series (one file per slice) as 2-D slices.

Read with pydicom (the ``medical`` extra). Every file under ``PATH`` (recursively) is read; files that are not
DICOM (a README, a ``DICOMDIR`` without pixels) are skipped and counted. Files are grouped into volumes by
``SeriesInstanceUID``; a volume's slices are ordered by their position along the slice normal
(``ImagePositionPatient`` projected on the cross product of the ``ImageOrientationPatient`` cosines), else
by ``InstanceNumber``, else by file name. Intensities are ``pixel * RescaleSlope + RescaleIntercept`` (HU for
CT).
The voxel-to-patient affine (LPS, converted to RAS+) comes from the orientation cosines, ``PixelSpacing`` and
the spacing of the positions (else ``SpacingBetweenSlices``, else ``SliceThickness``). The group (patient) is
``PatientID`` when present, else the series. A series whose slices differ in size or orientation, or a
multi-frame file, is refused with the file named. Slicing options: :mod:`factorlens.data.volumes`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from factorlens.data.base import ImageDataset
from factorlens.data.loading import DATASETS, DatasetSpec
from factorlens.data.volumes import Volume, cached_slices, path_and_options, require
from factorlens.errors import ConfigError, DataError

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass
class _Slice:
    path: Path
    dataset: object  # pydicom Dataset

    def get(self, name: str, default=None):
        value = getattr(self.dataset, name, None)
        return default if value in (None, "") else value


def _read_files(root: Path) -> tuple[list[_Slice], dict]:
    pydicom = require("pydicom", "dicom")
    slices, notes = [], {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        try:
            dataset = pydicom.dcmread(str(path))
        except (pydicom.errors.InvalidDicomError, OSError, EOFError, ValueError, KeyError):
            notes["not_dicom_files"] = notes.get("not_dicom_files", 0) + 1
            continue
        if "PixelData" not in dataset:
            notes["dicom_without_pixels"] = notes.get("dicom_without_pixels", 0) + 1
            continue
        slices.append(_Slice(path, dataset))
    if not slices:
        raise DataError(f"no DICOM image files under {root}")
    return slices, notes


def _orientation(item: _Slice) -> np.ndarray:
    cosines = item.get("ImageOrientationPatient")
    if cosines is None:
        return np.array([1.0, 0, 0, 0, 1.0, 0])  # no orientation: read as axial
    values = np.asarray([float(v) for v in cosines], dtype=np.float64)
    if values.shape != (6,):
        raise DataError(f"{item.path}: ImageOrientationPatient must have 6 values, got {len(values)}")
    return values


def order_series(items: list[_Slice]) -> tuple[list[_Slice], str, float | None]:
    """The slices in order along the normal, how they were ordered, and the spacing of their positions."""
    first = items[0]
    for item in items[1:]:
        if (item.get("Rows"), item.get("Columns")) != (first.get("Rows"), first.get("Columns")):
            raise DataError(f"DICOM series {first.get('SeriesInstanceUID', '?')}: {item.path} is "
                            f"{item.get('Rows')}x{item.get('Columns')} but {first.path} is "
                            f"{first.get('Rows')}x{first.get('Columns')} (mixed sizes in one series)")
        if not np.allclose(_orientation(item), _orientation(first), atol=1e-4):
            raise DataError(f"DICOM series {first.get('SeriesInstanceUID', '?')}: {item.path} and "
                            f"{first.path} have different ImageOrientationPatient "
                            "(two orientations in one series)")
    cosines = _orientation(first)
    normal = np.cross(cosines[:3], cosines[3:])
    if all(item.get("ImagePositionPatient") is not None for item in items):
        position = {id(item): float(np.dot([float(v) for v in item.get("ImagePositionPatient")], normal))
                    for item in items}
        ordered = sorted(items, key=lambda item: (position[id(item)], str(item.path)))
        steps = np.diff([position[id(item)] for item in ordered])
        if len(steps) and np.min(steps) < 1e-3:
            raise DataError(f"DICOM series {first.get('SeriesInstanceUID', '?')}: two slices at the same "
                            f"position ({ordered[int(np.argmin(steps)) + 1].path})")
        return ordered, "ImagePositionPatient", float(np.median(steps)) if len(steps) else None
    if all(item.get("InstanceNumber") is not None for item in items):
        return sorted(items, key=lambda item: (int(item.get("InstanceNumber")), str(item.path))), \
            "InstanceNumber", None
    return sorted(items, key=lambda item: str(item.path)), "file name", None


def series_volume(items: list[_Slice]) -> tuple[np.ndarray, np.ndarray, str]:
    """``(float32 data [cols, rows, slices], RAS affine, ordering)`` of one series."""
    ordered, how, step = order_series(items)
    arrays = []
    for item in ordered:
        if int(item.get("NumberOfFrames", 1)) > 1:
            raise DataError(f"{item.path}: multi-frame DICOM files are not supported (one slice per file)")
        if int(item.get("SamplesPerPixel", 1)) != 1:
            raise DataError(f"{item.path}: colour DICOM (SamplesPerPixel > 1) is not a greyscale volume")
        try:
            pixels = np.asarray(item.dataset.pixel_array, dtype=np.float32)
        except Exception as error:  # pydicom raises many types for unsupported transfer syntaxes
            raise DataError(f"cannot decode DICOM pixels of {item.path}: {type(error).__name__}: "
                            f"{str(error).splitlines()[0] if str(error) else ''}") from None
        pixels = pixels * float(item.get("RescaleSlope", 1.0)) + float(item.get("RescaleIntercept", 0.0))
        if item.get("PhotometricInterpretation") == "MONOCHROME1":  # low values are bright
            pixels = pixels.max() + pixels.min() - pixels
        arrays.append(pixels.T)
    first = ordered[0]
    cosines = _orientation(first)
    row_mm, col_mm = (float(v) for v in first.get("PixelSpacing", [1.0, 1.0]))
    slice_mm = step or float(first.get("SpacingBetweenSlices", 0) or first.get("SliceThickness", 0) or 1.0)
    lps = np.eye(4)
    lps[:3, 0] = cosines[:3] * col_mm  # voxel axis 0 runs along a row (increasing column index)
    lps[:3, 1] = cosines[3:] * row_mm  # voxel axis 1 runs down a column (increasing row index)
    lps[:3, 2] = np.cross(cosines[:3], cosines[3:]) * slice_mm
    origin = first.get("ImagePositionPatient")
    if origin is not None:
        lps[:3, 3] = [float(v) for v in origin]
    return np.stack(arrays, axis=2), LPS_TO_RAS @ lps, how


@DATASETS.register("dicom")
def load_dicom(spec: DatasetSpec, *, skip_bad: bool, progress: bool) -> ImageDataset:
    """``dicom:FOLDER[:axis=2,every=1,size=64,window=-1000,400,skip_empty=...]``."""
    root, options = path_and_options(spec, "DICOM folder")
    require("pydicom", "dicom")
    if options.labels is not None:
        raise ConfigError(f"dicom.labels in dataset spec {spec.raw!r}: label volumes are read for nifti: "
                          "only (convert the segmentation to NIfTI)")
    if not root.is_dir():
        raise DataError(f"DICOM path {str(root)!r} (from dataset spec {spec.raw!r}) is not a folder")
    files = sorted(p for p in root.rglob("*") if p.is_file())

    def read() -> tuple[list[Volume], dict]:
        items, notes = _read_files(root)
        series: dict[str, list[_Slice]] = {}
        for item in items:
            series.setdefault(str(item.get("SeriesInstanceUID", item.path.parent)), []).append(item)
        volumes, orderings, names = [], {}, set()
        for uid, members in series.items():
            try:
                data, affine, how = series_volume(members)
            except DataError:
                if not skip_bad:
                    raise
                notes["skipped_bad_series"] = notes.get("skipped_bad_series", 0) + 1
                warnings.warn(f"skipped unusable DICOM series {uid}", stacklevel=2)
                continue
            orderings[how] = orderings.get(how, 0) + 1
            first = members[0]
            patient = str(first.get("PatientID", "")).strip()
            name = f"{patient or 'series'}-{first.get('SeriesNumber', len(volumes))}"
            name = name if name not in names else f"{name}-{uid[-8:]}"
            names.add(name)
            volumes.append(Volume(data=data, affine=affine, volume_id=name, group=patient or uid,
                                  source=str(first.path.parent)))
        if not volumes:
            raise DataError(f"dataset {spec.raw!r} has no usable DICOM series")
        notes["series_ordered_by"] = ", ".join(f"{k} {v}" for k, v in sorted(orderings.items()))
        return volumes, notes

    return cached_slices(spec, options, files, read, library="pydicom")
