"""On-disk cache of decoded datasets.

A dataset is stored as one uncompressed ``.npz`` in ``$FACTORLENS_CACHE`` (default
``~/.cache/factorlens``), named ``<source>-<key>.npz`` where the key hashes everything the arrays depend
on: the loader's parameters, the source files' paths, sizes and mtimes, and :data:`PREPROCESS_VERSION`.
Files are written through :func:`factorlens.io.atomic_open`, so a reader never sees half a cache file;
a file that is damaged anyway (disk full, killed copy) is reported with a warning and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from factorlens.data.base import ImageDataset
from factorlens.io import atomic_open

# Bump whenever decoding, cropping, resizing, thresholding or generation changes the arrays.
PREPROCESS_VERSION = 3  # 3: handcrafted orientation in regionprops' convention

_ARRAY_FIELDS = ("images", "labels", "factors", "handcrafted", "masks", "groups")


def cache_dir() -> Path:
    """The cache folder: ``$FACTORLENS_CACHE`` or ``~/.cache/factorlens``."""
    return Path(os.environ.get("FACTORLENS_CACHE") or Path.home() / ".cache" / "factorlens")


def file_fingerprint(paths: Iterable[Path]) -> list[tuple[str, int, int]]:
    """``(path, size in bytes, mtime in ns)`` for each file: changes whenever a file is edited or replaced."""
    fingerprint = []
    for path in paths:
        stat = path.stat()
        fingerprint.append((str(path), stat.st_size, stat.st_mtime_ns))
    return fingerprint


def content_fingerprint(paths: Iterable[Path]) -> list[tuple[str, str]]:
    """``(path, SHA-256 of the bytes)`` for small files such as label CSVs: a CSV replaced by one of the
    same size with its modification time preserved (``cp -p``, ``rsync -a``) still changes the key."""
    return [(str(path), hashlib.sha256(Path(path).read_bytes()).hexdigest()) for path in paths]


def _library_versions() -> dict[str, str]:
    """Versions of the libraries that decode, resize and measure: a new Pillow or scikit-image may
    change a pixel or a regionprops value, so it gets a new cache entry."""
    import PIL
    import skimage

    return {"numpy": np.__version__, "pillow": PIL.__version__, "scikit-image": skimage.__version__}


def cache_key(params: dict) -> str:
    """A 20-hex-digit key for a JSON-serialisable description of a dataset build (plus the preprocessing
    version and the decoding libraries' versions)."""
    described = {"version": PREPROCESS_VERSION, "libraries": _library_versions(), **params}
    payload = json.dumps(described, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:20]


def cache_path(source: str, params: dict) -> Path:
    return cache_dir() / f"{source}-{cache_key(params)}.npz"


def save_dataset(
    path: Path,
    dataset: ImageDataset,
    *,
    encoded_images: dict[str, np.ndarray] | None = None,
    compress: bool = False,
) -> None:
    """Write every array field, ids, names and notes (the sampler is re-attached by the loader).

    ``encoded_images``: arrays stored *instead of* the raw ``images`` (the export's WebP-coded form,
    see :mod:`factorlens.data.exported`). ``compress``: zlib (``np.savez_compressed``) instead of an
    uncompressed file; the cache stays uncompressed because it is read far more often than written.
    """
    arrays: dict[str, np.ndarray] = {
        name: getattr(dataset, name) for name in _ARRAY_FIELDS if getattr(dataset, name) is not None
    }
    if encoded_images is not None:
        del arrays["images"]
        arrays.update(encoded_images)
    arrays["ids"] = np.asarray(dataset.ids, dtype=np.str_)
    arrays["meta"] = np.asarray(
        json.dumps(
            {
                "name": dataset.name,
                "class_names": dataset.class_names,
                "factor_names": list(dataset.factor_names),
                "factor_sizes": [int(size) for size in dataset.factor_sizes],
                "exact_mig_factors": dataset.exact_mig_factors,
                "notes": dataset.notes,
            }
        )
    )
    with atomic_open(path, "wb") as handle:
        (np.savez_compressed if compress else np.savez)(handle, **arrays)


def load_cached(path: Path, spec: str) -> ImageDataset | None:
    """The dataset stored at ``path``, or None when there is none or it cannot be read (then rebuilt)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files}
        meta = json.loads(str(arrays.pop("meta")))
        ids = [str(item) for item in arrays.pop("ids")]
        images = arrays.pop("images")
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, json.JSONDecodeError) as error:
        warnings.warn(f"cache file {path} is unreadable ({error}); rebuilding it", stacklevel=3)
        return None
    return ImageDataset(
        name=meta["name"],
        spec=spec,
        images=images,
        ids=ids,
        class_names=meta["class_names"],
        factor_names=meta["factor_names"],
        factor_sizes=meta["factor_sizes"],
        exact_mig_factors=meta.get("exact_mig_factors"),
        notes=meta["notes"],
        **{name: arrays.get(name) for name in _ARRAY_FIELDS if name != "images"},
    )


def cached_build(source: str, params: dict, spec: str, build: Callable[[], ImageDataset]) -> ImageDataset:
    """Load the cached dataset for ``params`` or build it with ``build()`` and cache it."""
    path = cache_path(source, params)
    dataset = load_cached(path, spec)
    if dataset is None:
        dataset = build()
        save_dataset(path, dataset)
    dataset.spec = spec
    return dataset
