"""``npz:FILE.npz``: a dataset exported by ``factorlens data export`` (decoded 64x64 arrays, one file).

What to carry to another machine (a GPU node, a cluster) instead of thousands of JPEGs: the export holds
the uint8 images, ids, labels and class names, factors, handcrafted mask factors, masks, lesion groups
and loading notes, in the dataset's order, so a run trained on the export has the same split as one
trained on the source, and ``evaluate`` gives the same Table 1 on either. Plain ``.npz`` read with
``allow_pickle=False``: nothing in it is executed.

``compress=True`` (``data export --compress``) makes the file small enough to carry where transfers
are capped: RGB images are stored as lossless WebP (one byte stream plus offsets; 0.41 of the raw size
on HAM10000, where general-purpose zlib gets 0.81) and the rest with zlib. Lossless is checked, not
assumed: the export decodes every image again and refuses to write a file that would not load back
bit-identical.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
from tqdm import tqdm

from factorlens.data.base import IMAGE_SIZE, IMAGE_SIZES, ImageDataset
from factorlens.data.cache import save_dataset
from factorlens.data.dsprites import exact_mig_factors
from factorlens.data.loading import DATASETS, DatasetSpec
from factorlens.errors import ConfigError, DataError

_OPTIONAL = ("labels", "factors", "handcrafted", "masks", "groups")


# WebP's lossless mode at effort 2: 0.411 of the raw bytes on HAM10000 at 0.55 ms per image to encode;
# effort 4-6 saves under 1 % more at 4-10x the time (measured on 1,000 HAM10000 images, 2026-12-01).
_WEBP_OPTIONS = {"format": "WEBP", "lossless": True, "quality": 0, "method": 2}
_WEBP_FIELDS = ("images_webp", "images_webp_offsets")


def encode_images_webp(images: np.ndarray, *, progress: bool = False) -> dict[str, np.ndarray]:
    """Lossless WebP of uint8 RGB images ``[N, 3, H, W]``: ``images_webp`` (all files' bytes, uint8) and
    ``images_webp_offsets`` (int64 ``[N + 1]``, image ``i`` is ``bytes[offsets[i]:offsets[i + 1]]``)."""
    from PIL import Image, features

    if not features.check("webp"):
        raise ConfigError("--compress needs Pillow built with WebP support, which this Pillow lacks")
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ConfigError(
            f"WebP coding takes uint8 RGB images [N, 3, H, W], got {images.dtype} {list(images.shape)}"
        )
    chunks, offsets = [], [0]
    for image in tqdm(images, desc="webp", unit="img", disable=not progress):
        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(image.transpose(1, 2, 0))).save(buffer, **_WEBP_OPTIONS)
        chunks.append(buffer.getvalue())
        offsets.append(offsets[-1] + len(chunks[-1]))
    stream = np.frombuffer(b"".join(chunks), dtype=np.uint8)
    return {"images_webp": stream, "images_webp_offsets": np.asarray(offsets, dtype=np.int64)}


def decode_images_webp(stream: np.ndarray, offsets: np.ndarray, *, source: str) -> np.ndarray:
    """Inverse of :func:`encode_images_webp`: uint8 ``[N, 3, 64, 64]``; a damaged stream, a file that is
    not a 64x64 RGB WebP or a Pillow without WebP is a one-line ``DataError`` naming ``source``."""
    from PIL import Image, UnidentifiedImageError, features

    if not features.check("webp"):
        raise DataError(f"{source}: its images are WebP-coded and this Pillow has no WebP support")
    integer_offsets = offsets.ndim == 1 and offsets.size >= 1 and np.issubdtype(offsets.dtype, np.integer)
    well_cut = integer_offsets and offsets[0] == 0 and offsets[-1] == stream.size
    if not well_cut or (np.diff(offsets) <= 0).any():
        raise DataError(f"{source}: images_webp_offsets (int64 [N + 1], from 0 to the stream's length, "
                        "increasing) do not cut images_webp into images")
    data = stream.tobytes()
    decoded = np.empty((offsets.size - 1, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    for index in range(offsets.size - 1):
        try:
            with Image.open(io.BytesIO(data[offsets[index] : offsets[index + 1]]), formats=["WEBP"]) as image:
                # checked from the header, before decoding: a forged size cannot make it allocate
                if image.mode != "RGB" or image.size != (IMAGE_SIZE, IMAGE_SIZE):
                    raise ValueError(f"{image.mode} {image.size[0]}x{image.size[1]}, "
                                     f"not RGB {IMAGE_SIZE}x{IMAGE_SIZE}")
                decoded[index] = np.asarray(image).transpose(2, 0, 1)
        except (OSError, ValueError, Image.DecompressionBombError) as error:
            # Pillow's "cannot identify image file <_io.BytesIO object at 0x...>" names no file: say what
            reason = " ".join(str(error).split()) or type(error).__name__
            if isinstance(error, UnidentifiedImageError):
                reason = "not a WebP file"
            raise DataError(f"{source}: image {index} of images_webp cannot be decoded ({reason})") from None
    return decoded


def export_dataset(dataset: ImageDataset, path: str | Path, *, compress: bool = False,
                   progress: bool = False) -> Path:
    """Write ``dataset`` to ``path`` (atomically); returns the path. Load it back with ``npz:PATH``.

    ``compress``: RGB images as lossless WebP, everything else with zlib (see the module docstring);
    other channel counts are zlib-compressed as they are.
    """
    path = Path(path)
    if path.suffix != ".npz":
        raise ConfigError(f"--out {path}: the export is an .npz file; name it *.npz")
    encoded = None
    if compress and dataset.images.shape[1] == 3:
        encoded = encode_images_webp(dataset.images, progress=progress)
        back = decode_images_webp(*(encoded[name] for name in _WEBP_FIELDS), source=str(path))
        if not np.array_equal(back, dataset.images):
            differing = int(np.flatnonzero((back != dataset.images).reshape(len(back), -1).any(1))[0])
            raise DataError(f"--out {path}: WebP did not give image {differing} back bit-identical; "
                            "export without --compress")
    save_dataset(path, dataset, encoded_images=encoded, compress=compress)
    return path


@DATASETS.register("npz")
def load_exported(spec: DatasetSpec, *, skip_bad: bool, progress: bool) -> ImageDataset:  # noqa: ARG001
    """``npz:PATH`` written by :func:`export_dataset`; malformed files are a one-line ``DataError``."""
    if len(spec.args) != 1:
        raise ConfigError(f"dataset spec {spec.raw!r} must be npz:PATH")
    path = Path(spec.args[0]).expanduser()
    if not path.is_file():
        raise DataError(f"dataset export {str(path)!r} (from dataset spec {spec.raw!r}) does not exist")
    if not zipfile.is_zipfile(path):
        # np.load would try it as a pickle and say so, which is no help for a truncated or foreign file
        raise DataError(f"{path} is not a factorlens dataset export (not an .npz archive)")
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files}
        meta = json.loads(str(arrays.pop("meta")))
        ids = [str(item) for item in arrays.pop("ids")]
        if "images" in arrays or not all(field in arrays for field in _WEBP_FIELDS):
            images = arrays.pop("images")
        else:
            images = decode_images_webp(*(arrays.pop(field) for field in _WEBP_FIELDS), source=str(path))
        name = meta["name"]
        class_names, factor_names = meta["class_names"], meta["factor_names"]
        factor_sizes, notes = meta["factor_sizes"], meta["notes"]
        # exports written before datasets carried it: dSprites' factors get Chen et al.'s choice
        exact = meta["exact_mig_factors"] if "exact_mig_factors" in meta else exact_mig_factors(factor_names)
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        if isinstance(error, KeyError):  # str(KeyError('meta')) is just "'meta'"
            reason = f"no {error.args[0]!r} entry"
        raise DataError(f"{path} is not a factorlens dataset export ({reason})") from None
    n = len(ids)
    square = images.ndim == 4 and images.shape[2] == images.shape[3] and images.shape[2] in IMAGE_SIZES
    if images.dtype != np.uint8 or not square or images.shape[0] != n:
        raise DataError(
            f"{path}: images must be uint8 [N, C, S, S] (S = 32, 64 or 128) with one id each, "
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
        exact_mig_factors=exact,
        notes={**notes, "exported_from": name},
        **{field_name: arrays.get(field_name) for field_name in _OPTIONAL},
    )
