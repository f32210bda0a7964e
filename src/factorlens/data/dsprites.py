"""``dsprites`` (procedural) and ``dsprites:PATH.npz`` (the real file).

The procedural grid follows the canonical dSprites factors and order: shape (square, ellipse, heart) x
scale (6 values in [0.5, 1]) x orientation (40 values in [0, 2 pi], both ends included as in the
original) x posX (32) x posY (32) = 737,280 binary 64x64 images, 1 channel, values 0/255; image ``i``
has factors ``np.unravel_index(i, FACTOR_SIZES)``. Geometry (pixel centres at ``j + 0.5``): the sprite's
reference size is 10 px (square half-side, ellipse semi-major axis; the ellipse is 2:1), multiplied by
the scale; its centre is ``16 + 32 * pos`` px from the left / top edge; orientation turns it
counter-clockwise on screen. A pixel is on when its centre lies inside the rotated shape.

The full grid is rendered once (about 2 minutes on one core) into a bit-packed cache,
``$FACTORLENS_CACHE/dsprites-<key>.npy`` (``uint8 [737280, 512]``, 377 MB), and unpacked on load into
``uint8 [737280, 1, 64, 64]`` -- **3.0 GB of RAM**. The real ``.npz`` also takes 3.0 GB once loaded.
"""

from __future__ import annotations

import warnings

import numpy as np
from tqdm import tqdm

from factorlens.data._progress import progress_enabled
from factorlens.data.base import IMAGE_SIZE, ImageDataset
from factorlens.data.cache import cache_dir, cache_key
from factorlens.data.loading import DATASETS, DatasetSpec, existing_path
from factorlens.errors import ConfigError, DataError
from factorlens.io import atomic_open

FACTOR_NAMES = ["shape", "scale", "orientation", "posX", "posY"]
FACTOR_SIZES = [3, 6, 40, 32, 32]
SHAPE_NAMES = ["square", "ellipse", "heart"]
SCALES = np.linspace(0.5, 1.0, 6)
ORIENTATIONS_RAD = np.linspace(0.0, 2 * np.pi, 40)
POSITIONS = np.linspace(0.0, 1.0, 32)
REFERENCE_SIZE_PX = 10.0
POSITION_OFFSET_PX, POSITION_RANGE_PX = 16.0, 32.0
ELLIPSE_MINOR_RATIO = 0.5
HEART_SCALE = 0.85  # the heart curve spans ~2.3 units; this keeps its area between ellipse and square
NUM_IMAGES = int(np.prod(FACTOR_SIZES))
# Chen et al. (2018) score every factor but shape (3 values, poorly captured by any single latent) with
# their exact MIG; so does Table 1 on dSprites, so that the figure is comparable with theirs.
EXACT_MIG_FACTORS = ["scale", "orientation", "posX", "posY"]
_CHUNK = 4096


def _inside(shape: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Whether sprite-local points ``(u, v)`` (units of the scaled reference size, v up) are inside."""
    square = np.maximum(np.abs(u), np.abs(v)) <= 1.0
    ellipse = u**2 + (v / ELLIPSE_MINOR_RATIO) ** 2 <= 1.0
    hu, hv = u / HEART_SCALE, v / HEART_SCALE
    heart = (hu**2 + hv**2 - 1.0) ** 3 - hu**2 * hv**3 <= 0.0
    shape = shape[:, None, None]
    return np.where(shape == 0, square, np.where(shape == 1, ellipse, heart))


def exact_mig_factors(factor_names) -> list[str] | None:
    """:data:`EXACT_MIG_FACTORS` for a dataset with dSprites' factors in their canonical order, else None
    (every factor is scored)."""
    return list(EXACT_MIG_FACTORS) if list(factor_names) == FACTOR_NAMES else None


def factors_to_index(factors: np.ndarray) -> np.ndarray:
    """``int64 [n]`` grid index of ``int64 [n, 5]`` factor indices (canonical order)."""
    return np.ravel_multi_index(np.asarray(factors, dtype=np.int64).T, FACTOR_SIZES).astype(np.int64)


def index_to_factors(indices: np.ndarray) -> np.ndarray:
    """``int64 [n, 5]`` factor indices of grid indices ``[n]``."""
    return np.stack(np.unravel_index(np.asarray(indices, dtype=np.int64), FACTOR_SIZES), axis=1).astype(
        np.int64
    )


class DSpritesSampler:
    """Renders dSprites images for any factor combination (implements ``FactorSampler``)."""

    factor_names: list[str] = list(FACTOR_NAMES)
    factor_sizes: list[int] = list(FACTOR_SIZES)

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``int64 [n, 5]`` factors, uniform over the grid (as in dSprites)."""
        return np.stack([rng.integers(0, size, n) for size in FACTOR_SIZES], axis=1).astype(np.int64)

    def render(self, factors: np.ndarray) -> np.ndarray:
        """``uint8 [n, 1, 64, 64]`` with values 0 / 255."""
        factors = np.asarray(factors, dtype=np.int64)
        if factors.ndim != 2 or factors.shape[1] != 5:
            raise ConfigError(f"dSprites factors must be [n, 5], got shape {factors.shape}")
        if (factors < 0).any() or (factors >= np.array(FACTOR_SIZES)).any():
            raise ConfigError(f"dSprites factor index out of range; sizes are {FACTOR_SIZES}")
        out = np.empty((len(factors), 1, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
        for start in range(0, len(factors), _CHUNK):
            chunk = factors[start : start + _CHUNK]
            out[start : start + _CHUNK, 0] = self.render_binary(chunk).astype(np.uint8) * 255
        return out

    @staticmethod
    def render_binary(factors: np.ndarray) -> np.ndarray:
        """``bool [n, 64, 64]`` sprites for ``[n, 5]`` factor indices (no range checks)."""
        shape, scale, orientation, pos_x, pos_y = factors.T
        size = (REFERENCE_SIZE_PX * SCALES[scale]).astype(np.float32)[:, None, None]
        centre_x = (POSITION_OFFSET_PX + POSITION_RANGE_PX * POSITIONS[pos_x]).astype(np.float32)[
            :, None, None
        ]
        centre_y = (POSITION_OFFSET_PX + POSITION_RANGE_PX * POSITIONS[pos_y]).astype(np.float32)[
            :, None, None
        ]
        angle = ORIENTATIONS_RAD[orientation]
        cos_a = np.cos(angle).astype(np.float32)[:, None, None]
        sin_a = np.sin(angle).astype(np.float32)[:, None, None]
        coords = np.arange(IMAGE_SIZE, dtype=np.float32) + 0.5
        dx = coords[None, None, :] - centre_x
        dy = centre_y - coords[None, :, None]  # y up, so positive angles turn counter-clockwise
        u = (dx * cos_a + dy * sin_a) / size
        v = (-dx * sin_a + dy * cos_a) / size
        return _inside(shape, u, v)


class DSpritesLookupSampler(DSpritesSampler):
    """``render`` by looking images up in a loaded full grid (used for the real ``.npz``)."""

    def __init__(self, images: np.ndarray, position_of_index: np.ndarray) -> None:
        self._images = images
        self._position = position_of_index

    def render(self, factors: np.ndarray) -> np.ndarray:
        return self._images[self._position[factors_to_index(factors)]]


def render_packed_grid(*, progress: bool) -> np.ndarray:
    """``uint8 [737280, 512]``: every grid image, bit-packed row-major (``np.packbits`` of 4096 pixels)."""
    sampler = DSpritesSampler()
    packed = np.empty((NUM_IMAGES, IMAGE_SIZE * IMAGE_SIZE // 8), dtype=np.uint8)
    bar = tqdm(total=NUM_IMAGES, desc="dsprites", unit="img", disable=not progress_enabled(progress))
    with bar:
        for start in range(0, NUM_IMAGES, _CHUNK):
            indices = np.arange(start, min(start + _CHUNK, NUM_IMAGES))
            binary = sampler.render_binary(index_to_factors(indices))
            packed[indices] = np.packbits(binary.reshape(len(indices), -1), axis=1)
            bar.update(len(indices))
    return packed


def unpack_images(packed: np.ndarray) -> np.ndarray:
    """``uint8 [n, 1, 64, 64]`` (0/255) from bit-packed rows, unpacked chunk by chunk."""
    images = np.empty((len(packed), 1, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    for start in range(0, len(packed), _CHUNK * 4):
        rows = np.unpackbits(np.asarray(packed[start : start + _CHUNK * 4]), axis=1)
        images[start : start + len(rows), 0] = rows.reshape(-1, IMAGE_SIZE, IMAGE_SIZE) * np.uint8(255)
    return images


def _load_packed_grid(progress: bool) -> np.ndarray:
    path = cache_dir() / f"dsprites-{cache_key({'source': 'dsprites'})}.npy"
    expected = (NUM_IMAGES, IMAGE_SIZE * IMAGE_SIZE // 8)
    if path.is_file():
        try:
            packed = np.load(path, mmap_mode="r", allow_pickle=False)
            if packed.shape == expected and packed.dtype == np.uint8:
                return packed
            warnings.warn(f"cache file {path} has shape {packed.shape}; rebuilding it", stacklevel=3)
        except (OSError, ValueError) as error:
            warnings.warn(f"cache file {path} is unreadable ({error}); rebuilding it", stacklevel=3)
    packed = render_packed_grid(progress=progress)
    with atomic_open(path, "wb") as handle:
        np.save(handle, packed)
    return packed


def _load_npz(spec: DatasetSpec) -> ImageDataset:
    path = existing_path(spec.args[0], "dSprites file", spec)
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in ("imgs", "latents_classes") if key not in archive.files]
            if missing:
                raise DataError(
                    f"{path}: missing array(s) {', '.join(missing)} (has {', '.join(archive.files)})"
                )
            imgs, latents = archive["imgs"], archive["latents_classes"]
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: not a readable .npz file ({error})") from None
    if imgs.ndim != 3 or imgs.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE) or latents.shape != (len(imgs), 6):
        raise DataError(
            f"{path}: expected imgs [N, 64, 64] and latents_classes [N, 6], got {imgs.shape}, {latents.shape}"
        )
    images = imgs.astype(np.uint8, copy=False)[:, None]
    np.multiply(images, 255, out=images)  # 0/1 -> 0/255 in place: a copy would double the 3 GB
    factors = latents[:, 1:].astype(np.int64)  # column 0 is the constant colour
    sizes = [int(factors[:, k].max()) + 1 for k in range(5)]
    sampler = None
    if sizes == FACTOR_SIZES and len(factors) == NUM_IMAGES:
        position = np.full(NUM_IMAGES, -1, dtype=np.int64)
        position[factors_to_index(factors)] = np.arange(len(factors))
        if (position >= 0).all():
            sampler = DSpritesLookupSampler(images, position)
    return ImageDataset(
        name="dsprites",
        spec=spec.raw,
        images=images,
        ids=[str(i) for i in range(len(images))],
        factors=factors,
        factor_names=list(FACTOR_NAMES),
        factor_sizes=sizes,
        exact_mig_factors=list(EXACT_MIG_FACTORS),
        sampler=sampler,
        notes={"source_file": str(path)},
    )


@DATASETS.register("dsprites")
def load_dsprites(spec: DatasetSpec, *, skip_bad: bool, progress: bool) -> ImageDataset:
    """``dsprites`` (procedural full grid, cached bit-packed) or ``dsprites:PATH.npz`` (the real file)."""
    if len(spec.args) > 1:
        raise ConfigError(f"dataset spec {spec.raw!r} must be dsprites or dsprites:PATH.npz")
    if spec.args:
        if not spec.args[0].endswith(".npz"):
            raise ConfigError(f"dsprites takes a .npz file, got {spec.args[0]!r} in {spec.raw!r}")
        return _load_npz(spec)
    images = unpack_images(_load_packed_grid(progress))
    return ImageDataset(
        name="dsprites",
        spec=spec.raw,
        images=images,
        ids=[str(i) for i in range(NUM_IMAGES)],
        factors=index_to_factors(np.arange(NUM_IMAGES)),
        factor_names=list(FACTOR_NAMES),
        factor_sizes=list(FACTOR_SIZES),
        exact_mig_factors=list(EXACT_MIG_FACTORS),
        sampler=DSpritesSampler(),
        notes={"memory_bytes": int(images.nbytes)},
    )
