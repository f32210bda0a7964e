"""``npz:FILE.npz``: a dataset exported by ``factorlens data export`` (decoded 64x64 arrays, one file).

What to carry to another machine (a GPU node, a cluster) instead of thousands of JPEGs: the export holds
the uint8 images, ids, labels and class names, factors, handcrafted mask factors, masks, lesion groups
and loading notes, in the dataset's order, so a run trained on the export has the same split as one
trained on the source, and ``evaluate`` gives the same Table 1 on either. Plain ``.npz`` read with
``allow_pickle=False``: nothing in it is executed.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from factorlens.data.base import IMAGE_SIZE, ImageDataset
from factorlens.data.cache import save_dataset
from factorlens.data.loading import DATASETS, DatasetSpec
from factorlens.errors import ConfigError, DataError

_OPTIONAL = ("labels", "factors", "handcrafted", "masks", "groups")


def export_dataset(dataset: ImageDataset, path: str | Path) -> Path:
    """Write ``dataset`` to ``path`` (atomically); returns the path. Load it back with ``npz:PATH``."""
    path = Path(path)
    if path.suffix != ".npz":
        raise ConfigError(f"--out {path}: the export is an .npz file; name it *.npz")
    save_dataset(path, dataset)
    return path


@DATASETS.register("npz")
def load_exported(spec: DatasetSpec, *, skip_bad: bool, progress: bool) -> ImageDataset:  # noqa: ARG001
    """``npz:PATH`` written by :func:`export_dataset`; malformed files are a one-line ``DataError``."""
    if len(spec.args) != 1:
        raise ConfigError(f"dataset spec {spec.raw!r} must be npz:PATH")
    path = Path(spec.args[0]).expanduser()
    if not path.is_file():
        raise DataError(f"dataset export {str(path)!r} (from dataset spec {spec.raw!r}) does not exist")
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files}
        meta = json.loads(str(arrays.pop("meta")))
        ids = [str(item) for item in arrays.pop("ids")]
        images = arrays.pop("images")
        name = meta["name"]
        class_names, factor_names = meta["class_names"], meta["factor_names"]
        factor_sizes, notes = meta["factor_sizes"], meta["notes"]
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        raise DataError(f"{path} is not a factorlens dataset export ({reason})") from None
    n = len(ids)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[0] != n or images.shape[2:] != (
        IMAGE_SIZE,
        IMAGE_SIZE,
    ):
        raise DataError(
            f"{path}: images must be uint8 [N, C, {IMAGE_SIZE}, {IMAGE_SIZE}] with one id each, "
            f"got {images.dtype} {list(images.shape)} for {n} ids"
        )
    for field_name in _OPTIONAL:
        value = arrays.get(field_name)
        if value is not None and value.shape[0] != n:
            raise DataError(f"{path}: {field_name} has {value.shape[0]} rows for {n} images")
    return ImageDataset(
        name=name,
        spec=spec.raw,
        images=images,
        ids=ids,
        class_names=class_names,
        factor_names=factor_names,
        factor_sizes=factor_sizes,
        notes={**notes, "exported_from": name},
        **{field_name: arrays.get(field_name) for field_name in _OPTIONAL},
    )
