"""3-D medical volumes as 2-D slice datasets: what ``nifti:`` and ``dicom:`` share.

A loader reads each volume into a :class:`Volume` (intensities as stored in the file after the modality
rescale — Hounsfield units for CT —, an affine mapping voxel indices to RAS+ millimetres, an optional label
volume) and :func:`slice_volumes` turns the volumes into an :class:`ImageDataset`:

1. **Orientation.** The voxel axes are permuted and flipped to the closest RAS+ orientation
   (:func:`to_canonical`, the rule of ``nibabel.as_closest_canonical``), then each slice is shown in the
   radiological convention: axial (``axis=2``) and coronal (``axis=1``) slices have the patient's right on
   the image's left; anterior (axial) or superior (coronal, sagittal) at the top; sagittal (``axis=0``)
   slices have anterior on the left.
2. **Slices.** Every ``every``-th slice along ``axis``; with ``skip_empty`` a slice is dropped when fewer than
   ``min_fraction`` of its pixels are foreground: intensity above the threshold (``skip_empty=-500``) or
   label > 0 (``skip_empty=mask``).
3. **Intensity.** ``window=lo,hi`` maps [lo, hi] (raw units, HU for CT) linearly onto [0, 255] and clips;
   without a window each volume is clipped to its own ``percentiles`` (MRI's convention).
4. **Geometry.** The slice is resampled to square pixels using the voxel spacing by area-weighted (box)
   averaging onto a ``size x size`` grid that covers the slice's longer physical side; the shorter side is
   centred and padded with 0 (black), never cropped. Greyscale stays one channel.
5. **Factors.** ``position``: the slice's relative position ``(k + 0.5) / n`` along the axis of its volume,
   in ``position_bins`` equal bins; ``groups``: the volume's group key (patient), so no patient is on both
   sides of a split. With a label volume: ``masks`` (label > 0, resampled like the image, >= 0.5) and the
   handcrafted factors of the mask measured at the slice's own in-plane resolution (square pixels).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from factorlens.data.base import ImageDataset, image_size_option, integer_choice
from factorlens.data.cache import cached_build, file_fingerprint
from factorlens.data.handcrafted import handcrafted_factors
from factorlens.data.loading import DatasetSpec, existing_path, parse_options
from factorlens.errors import ConfigError, DataError
from factorlens.schema import as_dict, choice, integer, number, option

MEDICAL_EXTRA = "medical"
# The format of the slice arrays: bump when slicing, orientation, intensity or resampling changes.
SLICING_VERSION = 1


def require(module: str, dataset: str) -> Any:
    """Import ``module`` (nibabel, pydicom), or a one-line error naming the ``medical`` extra."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            f"dataset {dataset!r} needs the Python package {module!r}, which is not installed; "
            f"install the extra: pip install 'factorlens[{MEDICAL_EXTRA}]'"
        ) from None


# --- options ---------------------------------------------------------------------------------------------


def _window(value: Any, where: str) -> list[float] | None:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ConfigError(f"{where} must be two numbers low,high (e.g. window=-1000,400), got {value!r}")
    low, high = (number()(v, where) for v in value)
    if low >= high:
        raise ConfigError(f"{where} must have low < high, got {low:g},{high:g}")
    return [low, high]


def _percentiles(value: Any, where: str) -> list[float]:
    pair = _window(value, where)
    if pair is None or pair[0] < 0 or pair[1] > 100:
        raise ConfigError(f"{where} must be two percentiles 0 <= low < high <= 100, got {value!r}")
    return pair


def _skip_empty(value: Any, where: str) -> float | str | None:
    if value is None or value == "mask":
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{where} must be an intensity threshold (a number) or 'mask', got {value!r}")
    return float(value)


def _frame(value: Any, where: str) -> int | None:
    return None if value is None else integer(0)(value, where)


def _optional_path(value: Any, where: str) -> str | None:
    if value is None or (isinstance(value, str) and value.strip()):
        return value
    raise ConfigError(f"{where} must be a path, got {value!r}")


@dataclass(frozen=True)
class VolumeOptions:
    """Slicing options shared by ``nifti:`` and ``dicom:`` (``nifti:brain.nii.gz:axis=2,every=2``)."""

    axis: int = option(2, integer_choice(0, 1, 2),
                       "voxel axis to slice along after RAS reorientation (0 sagittal, 1 coronal, 2 axial)")
    every: int = option(1, integer(1), "keep every k-th slice")
    size: int = option(64, image_size_option, "output image side in pixels: 32, 64 or 128")
    window: list | None = option(None, _window, "intensity window low,high in raw units (HU for CT), "
                                                "e.g. -1000,400; default: per-volume percentiles")
    percentiles: list = option([0.5, 99.5], _percentiles, "percentile clipping when no window is given")
    skip_empty: float | str | None = option(None, _skip_empty, "drop slices with too little foreground: "
                                                               "an intensity threshold or 'mask'")
    min_fraction: float = option(0.01, number(lo=0, hi=1), "foreground fraction a slice needs with "
                                                          "skip_empty")
    position_bins: int = option(10, integer(2), "bins of the relative slice position factor")
    frame: int | None = option(None, _frame, "the frame of a 4-D volume (4-D volumes are refused without)")
    group: str = option("volume", choice("volume", "slice"), "split group: the volume (patient; default) or "
                                                             "each slice (one volume only; neighbours leak)")
    labels: str | None = option(None, _optional_path, "label volume (file) or folder of label volumes "
                                                      "matched by stem")

    def validate(self) -> None:
        if self.skip_empty == "mask" and self.labels is None:
            raise ConfigError("skip_empty=mask needs labels=PATH (label volumes)")


# --- volumes ---------------------------------------------------------------------------------------------


@dataclass
class Volume:
    """One volume: ``data [X, Y, Z]`` in file units, ``affine`` (4x4, voxel -> RAS+ mm), its id and group key,
    the file it came from, and an optional ``label`` volume of the same shape."""

    data: np.ndarray
    affine: np.ndarray
    volume_id: str
    group: str
    source: str
    label: np.ndarray | None = None
    label_source: str | None = None
    notes: dict = field(default_factory=dict)


def to_canonical(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``data`` with axes permuted and flipped so that they increase toward R, A, S (the closest orientation,
    as ``nibabel.as_closest_canonical``), and the voxel spacing ``[3]`` in mm along the new axes."""
    linear = np.asarray(affine, dtype=np.float64)[:3, :3]
    spacing = np.sqrt((linear**2).sum(axis=0))
    if not np.all(spacing > 0) or not np.all(np.isfinite(linear)):
        raise ValueError(f"degenerate affine (voxel sizes {spacing.tolist()})")
    directions = linear / spacing
    world_axis = np.full(3, -1)
    # Greedy assignment by the largest remaining |cosine|, the closest permutation for any real scan.
    cosines = np.abs(directions).copy()
    for _ in range(3):
        world, voxel = np.unravel_index(np.argmax(cosines), cosines.shape)
        world_axis[voxel] = world
        cosines[world, :] = -1
        cosines[:, voxel] = -1
    order = np.argsort(world_axis)  # voxel axis shown as world axis 0, 1, 2
    out = np.transpose(data, tuple(order) + tuple(range(3, data.ndim)))
    for new_axis, voxel in enumerate(order):
        if directions[world_axis[voxel], voxel] < 0:
            out = np.flip(out, axis=new_axis)
    return np.ascontiguousarray(out), spacing[order]


def view_slice(volume: np.ndarray, axis: int, index: int) -> np.ndarray:
    """Slice ``index`` along ``axis`` of a RAS+ ``volume`` as ``[rows, cols]`` in the radiological view."""
    if axis == 2:  # axial: rows anterior -> posterior, cols right -> left
        return volume[::-1, ::-1, index].T
    if axis == 1:  # coronal: rows superior -> inferior, cols right -> left
        return volume[::-1, index, ::-1].T
    return volume[index, ::-1, ::-1].T  # sagittal: rows superior -> inferior, cols anterior -> posterior


def view_spacing(spacing: np.ndarray, axis: int) -> tuple[float, float]:
    """(row, column) pixel spacing in mm of :func:`view_slice`."""
    rows, cols = {2: (1, 0), 1: (2, 0), 0: (2, 1)}[axis]
    return float(spacing[rows]), float(spacing[cols])


def box_weights(count: int, spacing: float, extent: float, size: int) -> np.ndarray:
    """``[size, count]`` area weights: output pixel ``t`` (width ``extent / size``, the grid centred on the
    ``count * spacing`` mm of input) averages the input pixels it overlaps, weighted by the overlap; the part
    outside the input contributes nothing (padding with 0)."""
    offset = (extent - count * spacing) / 2
    edges_in = offset + spacing * np.arange(count + 1)
    edges_out = extent / size * np.arange(size + 1)
    low = np.maximum(edges_out[:-1, None], edges_in[None, :-1])
    high = np.minimum(edges_out[1:, None], edges_in[None, 1:])
    return np.clip(high - low, 0, None) / (extent / size)


def resample_square(image: np.ndarray, spacing: tuple[float, float], size: int) -> np.ndarray:
    """``float64 [size, size]``: ``image [rows, cols]`` with ``(row, col)`` pixel spacing in mm on a square
    grid over its longer physical side (the shorter side centred and padded with 0)."""
    rows, cols = image.shape
    extent = max(rows * spacing[0], cols * spacing[1])
    return box_weights(rows, spacing[0], extent, size) @ image @ box_weights(cols, spacing[1], extent, size).T


def intensity_scale(data: np.ndarray, options: VolumeOptions) -> tuple[float, float]:
    """(low, high) mapped to 0 and 1: the window, or the volume's percentiles."""
    if options.window is not None:
        return options.window[0], options.window[1]
    low, high = np.percentile(data, options.percentiles)
    return float(low), float(high)


def scale_intensity(data: np.ndarray, low: float, high: float) -> np.ndarray:
    """``(data - low) / (high - low)`` clipped to [0, 1] (all 0 when high == low)."""
    if high <= low:
        return np.zeros(data.shape, dtype=np.float64)
    return np.clip((np.asarray(data, dtype=np.float64) - low) / (high - low), 0.0, 1.0)


def to_uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8)


def select_frame(data: np.ndarray, frame: int | None, source: str) -> np.ndarray:
    """3-D data as is; a 4-D volume's ``frame`` (refused without one); trailing singleton axes dropped."""
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim == 2:
        data = data[:, :, None]
    if data.ndim == 4:
        if frame is None:
            raise DataError(f"{source} is a 4-D volume {'x'.join(map(str, data.shape))}; choose a frame with "
                            f"frame=K (0..{data.shape[3] - 1})")
        if frame >= data.shape[3]:
            raise DataError(f"{source}: frame={frame} but the volume has {data.shape[3]} frames")
        data = data[..., frame]
    elif frame is not None and frame != 0:
        raise DataError(f"{source}: frame={frame} but the volume is 3-D")
    if data.ndim != 3:
        raise DataError(f"{source}: expected a 3-D volume, got shape {data.shape}")
    return data


@dataclass
class _Slices:
    images: list = field(default_factory=list)
    masks: list = field(default_factory=list)
    handcrafted: list = field(default_factory=list)
    positions: list = field(default_factory=list)
    ids: list = field(default_factory=list)
    groups: list = field(default_factory=list)


def _foreground_fraction(raw: np.ndarray, label: np.ndarray | None, options: VolumeOptions) -> float:
    if options.skip_empty == "mask":
        return float((label > 0).mean())
    return float((raw > options.skip_empty).mean())


def _slice_one(volume: Volume, options: VolumeOptions, out: _Slices) -> dict:
    data, spacing = to_canonical(volume.data, volume.affine)
    label = None if volume.label is None else to_canonical(volume.label, volume.affine)[0]
    low, high = intensity_scale(data, options)
    count = data.shape[options.axis]
    row_mm, col_mm = view_spacing(spacing, options.axis)
    kept = 0
    for index in range(0, count, options.every):
        raw = view_slice(data, options.axis, index)
        label_slice = None if label is None else view_slice(label, options.axis, index)
        if options.skip_empty is not None and _foreground_fraction(raw, label_slice, options) < max(
            options.min_fraction, 1e-12
        ):
            continue
        kept += 1
        out.images.append(to_uint8(resample_square(scale_intensity(raw, low, high), (row_mm, col_mm),
                                                   options.size)))
        if label_slice is not None:
            binary = (label_slice > 0).astype(np.float64)
            small = resample_square(binary, (row_mm, col_mm), options.size)
            out.masks.append((small >= 0.5).astype(np.uint8))
            # handcrafted factors at the slice's own resolution, on square pixels (finest spacing)
            native = math.ceil(max(binary.shape[0] * row_mm, binary.shape[1] * col_mm) / min(row_mm, col_mm))
            fine = resample_square(binary, (row_mm, col_mm), native) >= 0.5
            out.handcrafted.append(handcrafted_factors(fine))
        out.positions.append((index + 0.5) / count)
        out.ids.append(f"{volume.volume_id}/{'xyz'[options.axis]}{index:04d}")
        out.groups.append(volume.group if options.group == "volume" else out.ids[-1])
    return {
        "id": volume.volume_id,
        "file": volume.source,
        "shape": [int(n) for n in data.shape],
        "spacing_mm": [round(float(s), 4) for s in spacing],
        "slices": int(count),
        "kept": kept,
        "intensity_range": [round(low, 4), round(high, 4)],
    }


def slice_volumes(volumes: list[Volume], options: VolumeOptions, *, name: str, spec: str,
                  notes: dict | None = None) -> ImageDataset:
    """The slice dataset of ``volumes`` (see the module docstring)."""
    out = _Slices()
    described = [_slice_one(volume, options, out) for volume in volumes]
    if not out.images:
        raise DataError(f"dataset {spec!r}: no slice left (all {sum(v['slices'] for v in described)} slices "
                        f"are empty under skip_empty={options.skip_empty})")
    spacings = {"x".join(f"{s:g}" for s in v["spacing_mm"]) for v in described}
    notes = dict(notes or {})
    notes.update(
        volumes=len(volumes),
        slices_in_volumes=sum(v["slices"] for v in described),
        slices_kept=len(out.images),
        axis=options.axis,
        spacing_mm=spacings.pop() if len(spacings) == 1 else f"{len(spacings)} different",
    )
    with_labels = any(volume.label is not None for volume in volumes)
    positions = np.asarray(out.positions)
    handcrafted = masks = None
    if with_labels:
        masks = np.stack(out.masks)
        handcrafted = np.stack(out.handcrafted)
        notes["empty_masks"] = int(np.isnan(handcrafted[:, 0]).sum())
    _, groups = np.unique(np.asarray(out.groups), return_inverse=True)
    dataset = ImageDataset(
        name=name,
        spec=spec,
        images=np.stack(out.images)[:, None],
        ids=out.ids,
        factors=np.minimum((positions * options.position_bins).astype(np.int64),
                           options.position_bins - 1)[:, None],
        factor_names=["position"],
        factor_sizes=[options.position_bins],
        handcrafted=handcrafted,
        masks=masks,
        groups=groups.astype(np.int64),
        notes=notes,
    )
    return dataset


def path_and_options(spec: DatasetSpec, what: str) -> tuple[Path, VolumeOptions]:
    """``NAME:PATH[:key=value,...]`` -> (the existing PATH, the parsed options)."""
    if not spec.args or len(spec.args) > 2:
        raise ConfigError(f"dataset spec {spec.raw!r} must be {spec.name}:PATH[:key=value,...]")
    options = parse_options(DatasetSpec(spec.raw, spec.name, spec.args[1:]), VolumeOptions)
    return existing_path(spec.args[0], what, spec), options


def cached_slices(spec: DatasetSpec, options: VolumeOptions, sources: list[Path], read: Callable[[], tuple],
                  *, library: str) -> ImageDataset:
    """Slice the volumes ``read()`` returns (``(volumes, notes)``), cached under a key of the options, the
    source files (path, size, mtime), the slicing version and the reading library's version."""
    params = {
        "source": spec.name,
        "options": as_dict(options),
        "files": file_fingerprint(sources),
        "slicing_version": SLICING_VERSION,
        "reader": f"{library} {importlib.import_module(library).__version__}",
    }

    def build() -> ImageDataset:
        volumes, notes = read()
        return slice_volumes(volumes, options, name=spec.name, spec=spec.raw, notes=notes)

    return cached_build(spec.name, params, spec.raw, build)
