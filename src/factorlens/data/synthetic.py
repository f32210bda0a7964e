"""``synthetic-lesions``: dermoscopy-like 64x64 RGB images with known discrete factors and pathologies.

Each image is skin of one of 5 tones with mild smooth texture and a dermoscope vignette, plus one
elliptical lesion whose size, elongation, orientation, position, pigment colour and border irregularity
are discrete factors. Seven ISIC diagnosis classes (HAM10000 frequencies) shift the factor distributions,
so a class is a coarse pathology factor. The generative process, levels and class shifts are documented
in ``docs/data.md``. Everything is vectorised numpy; the random texture is counter-based (a hash of a
per-image noise seed and the pixel index), so any image can be re-rendered bit-exactly from its factors
and its noise seed.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter
from tqdm import tqdm

from factorlens.data._progress import progress_enabled
from factorlens.data.base import IMAGE_SIZE, ImageDataset, image_size_option
from factorlens.data.cache import cached_build
from factorlens.data.handcrafted import handcrafted_factors
from factorlens.data.loading import DATASETS, DatasetSpec, parse_options
from factorlens.errors import ConfigError
from factorlens.schema import choice, integer, option

ISIC_CLASS_NAMES = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
# HAM10000 class counts (of 10,015 images), in ISIC order: the synthetic class frequencies.
HAM10000_CLASS_COUNTS = np.array([1113, 6705, 514, 327, 1099, 115, 142])

FACTOR_NAMES = [
    "size",
    "eccentricity",
    "orientation",
    "position_x",
    "position_y",
    "lesion_colour",
    "skin_tone",
    "border_irregularity",
]
FACTOR_SIZES = [6, 5, 8, 5, 5, 5, 5, 3]

# Level values. Size sets the equivalent radius sqrt(a*b) so that area does not depend on elongation.
EQUIVALENT_RADIUS_PX = np.array([5.0, 6.5, 8.0, 9.5, 11.0, 13.0])
AXIS_RATIO = np.array([1.0, 0.85, 0.7, 0.55, 0.4])  # minor / major; eccentricity = sqrt(1 - ratio^2)
ORIENTATION_RAD = np.arange(8) * np.pi / 8  # major axis from the x axis, counter-clockwise, y up
POSITION_PX = np.array([25.0, 28.5, 32.0, 35.5, 39.0])  # centre, in pixels from the left / top edge
# Lesion colour = skin colour x pigment transmittance (so a lesion is always darker than its skin).
# Ordered by decreasing transmitted luminance: pink-red (vascular), tan, brown, dark brown, blue-black.
LESION_TRANSMITTANCE = np.array(
    [
        [0.95, 0.62, 0.66],
        [0.75, 0.62, 0.52],
        [0.60, 0.45, 0.36],
        [0.40, 0.28, 0.22],
        [0.22, 0.20, 0.25],
    ]
)
SKIN_RGB = np.array(
    [
        [0.96, 0.83, 0.75],
        [0.91, 0.74, 0.62],
        [0.82, 0.62, 0.49],
        [0.67, 0.47, 0.35],
        [0.50, 0.34, 0.25],
    ]
)
BORDER_AMPLITUDE = np.array([0.0, 0.08, 0.16])  # relative radial wobble of the lesion border
BORDER_HARMONICS = np.array([3.0, 5.0, 7.0])
BORDER_HARMONIC_WEIGHTS = np.array([0.5, 0.3, 0.2])  # sum to 1, so |wobble| <= amplitude

SKIN_TEXTURE_STD = 0.05
LESION_TEXTURE_STD = 0.10
PIXEL_NOISE_STD = 0.012
VIGNETTE_DEPTH = 0.12
TEXTURE_SIGMA_PX = 1.2

# Per class: factor -> (preferred level, spread in levels); factors not listed are uniform.
# Level probabilities are proportional to exp(-(level - preferred)^2 / (2 spread^2)).
CLASS_SHIFTS: dict[str, dict[str, tuple[float, float]]] = {
    "MEL": {
        "size": (4.0, 1.0),
        "eccentricity": (2.5, 1.2),
        "lesion_colour": (3.3, 0.8),
        "border_irregularity": (2.0, 0.6),
    },
    "NV": {
        "size": (1.5, 1.0),
        "eccentricity": (0.5, 1.0),
        "lesion_colour": (2.2, 0.7),
        "border_irregularity": (0.0, 0.6),
    },
    "BCC": {
        "size": (3.0, 1.0),
        "eccentricity": (2.0, 1.2),
        "lesion_colour": (2.5, 0.9),
        "border_irregularity": (1.0, 0.7),
    },
    "AKIEC": {
        "size": (2.5, 1.2),
        "eccentricity": (3.0, 1.0),
        "lesion_colour": (1.2, 0.8),
        "border_irregularity": (1.2, 0.7),
    },
    "BKL": {
        "size": (3.0, 1.2),
        "eccentricity": (2.5, 1.2),
        "lesion_colour": (2.0, 0.9),
        "border_irregularity": (1.0, 0.7),
    },
    "DF": {
        "size": (1.0, 0.8),
        "eccentricity": (0.5, 1.0),
        "lesion_colour": (2.3, 0.6),
        "border_irregularity": (0.0, 0.5),
    },
    "VASC": {
        "size": (1.5, 1.0),
        "eccentricity": (1.5, 1.2),
        "lesion_colour": (0.0, 0.5),
        "border_irregularity": (0.0, 0.5),
    },
}

FACTOR_DISTRIBUTIONS = ("mixture", "independent")

_RENDER_CHUNK = 1024
_U64 = np.uint64


def _splitmix64(values: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser, elementwise on ``uint64`` (wrapping arithmetic): a counter-based hash."""
    z = np.asarray(values, dtype=_U64) + _U64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> _U64(27))) * _U64(0x94D049BB133111EB)
    return z ^ (z >> _U64(31))


def _uniform(noise_seeds: np.ndarray, stream: int, count: int) -> np.ndarray:
    """``float64 [n, count]`` uniform in [0, 1): hash of (image seed, stream, counter)."""
    keys = _splitmix64(noise_seeds.astype(_U64) ^ _splitmix64(np.array([stream], dtype=_U64)))
    counters = keys[:, None] + np.arange(count, dtype=_U64)[None, :]
    return (_splitmix64(counters) >> _U64(11)).astype(np.float64) * 2.0**-53


_BANK_SIZE = 64


@functools.lru_cache(maxsize=2)
def _noise_bank(smooth: bool) -> np.ndarray:
    """``float32 [64, 64, 64]`` periodic random fields with zero mean and unit std each, from a fixed
    hash: white (sensor noise) or Gaussian-smoothed (skin and pigment texture)."""
    bank_seeds = np.arange(_BANK_SIZE, dtype=_U64)
    field = _uniform(bank_seeds, stream=0, count=IMAGE_SIZE * IMAGE_SIZE).astype(np.float32) - 0.5
    field = field.reshape(_BANK_SIZE, IMAGE_SIZE, IMAGE_SIZE)
    if smooth:
        field = gaussian_filter(field, sigma=(0, TEXTURE_SIGMA_PX, TEXTURE_SIGMA_PX), mode="wrap")
    field -= field.mean(axis=(1, 2), keepdims=True)
    field /= field.std(axis=(1, 2), keepdims=True)
    return field


def _noise_field(noise_seeds: np.ndarray, stream: int, smooth: bool) -> np.ndarray:
    """``float32 [n, 64, 64]`` noise per image: a bank field chosen, cyclically shifted and maybe
    transposed by a hash of (image seed, stream) -- 64 x 4096 x 2 variants at the cost of one gather."""
    choice = _splitmix64(noise_seeds.astype(_U64) ^ _splitmix64(np.array([stream], dtype=_U64)))
    bank_index = (choice % _U64(_BANK_SIZE)).astype(np.int64)
    shift_y = ((choice >> _U64(8)) % _U64(IMAGE_SIZE)).astype(np.int64)
    shift_x = ((choice >> _U64(16)) % _U64(IMAGE_SIZE)).astype(np.int64)
    transpose = ((choice >> _U64(24)) & _U64(1)).astype(bool)[:, None, None]
    pixels = np.arange(IMAGE_SIZE)
    rows = (pixels[None, :, None] + shift_y[:, None, None]) % IMAGE_SIZE
    cols = (pixels[None, None, :] + shift_x[:, None, None]) % IMAGE_SIZE
    flat = bank_index[:, None, None] * IMAGE_SIZE**2 + np.where(
        transpose, cols * IMAGE_SIZE + rows, rows * IMAGE_SIZE + cols
    )
    return _noise_bank(smooth).ravel()[flat]


def dataset_noise_seeds(seed: int, n: int) -> np.ndarray:
    """``uint64 [n]`` texture seeds of images ``0..n-1`` of ``synthetic-lesions:n=N,seed=seed``."""
    return _splitmix64((_U64(seed) << _U64(32)) | np.arange(n, dtype=_U64))


def resize_rendered(images: np.ndarray, masks: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Images and masks rendered at 64 px as ``size`` px: 32 by 2x2 area averages (masks >= 0.5), 128 by
    bilinear interpolation (PIL; masks: each pixel doubled). 64 is returned as is."""
    if size == IMAGE_SIZE:
        return images, masks
    if size == IMAGE_SIZE // 2:
        n, c = images.shape[:2]
        small = images.reshape(n, c, size, 2, size, 2).mean(axis=(3, 5))
        mask_small = masks.reshape(len(masks), size, 2, size, 2).mean(axis=(2, 4)) >= 0.5
        return np.rint(small).astype(np.uint8), mask_small.astype(np.uint8)
    if size == IMAGE_SIZE * 2:
        big = np.stack([
            np.stack([np.asarray(Image.fromarray(channel).resize((size, size), Image.Resampling.BILINEAR))
                      for channel in image])
            for image in images
        ])
        return big, masks.repeat(2, axis=1).repeat(2, axis=2)
    raise ConfigError(f"synthetic-lesions renders at 32, 64 or 128 px, not {size}")


class SyntheticLesionSampler:
    """The generative model of ``synthetic-lesions`` (implements ``FactorSampler``); ``size`` 32 or 128
    resizes what it renders at 64 px (:func:`resize_rendered`)."""

    factor_names: list[str] = list(FACTOR_NAMES)
    factor_sizes: list[int] = list(FACTOR_SIZES)
    class_names: list[str] = list(ISIC_CLASS_NAMES)

    def __init__(self, size: int = IMAGE_SIZE, factors: str = "mixture") -> None:
        if factors not in FACTOR_DISTRIBUTIONS:
            raise ConfigError(f"synthetic-lesions option factors must be one of "
                              f"{', '.join(FACTOR_DISTRIBUTIONS)}, got {factors!r}")
        self.size = size
        self.factors = factors

    def class_level_probabilities(self) -> np.ndarray:
        """``float64 [7, K, max_levels]``: p(level of factor k | class c), zero-padded past each size."""
        table = np.zeros((len(ISIC_CLASS_NAMES), len(FACTOR_NAMES), max(FACTOR_SIZES)))
        for c, class_name in enumerate(ISIC_CLASS_NAMES):
            for k, (factor, size) in enumerate(zip(FACTOR_NAMES, FACTOR_SIZES, strict=True)):
                levels = np.arange(size, dtype=np.float64)
                if factor in CLASS_SHIFTS[class_name]:
                    preferred, spread = CLASS_SHIFTS[class_name][factor]
                    weights = np.exp(-0.5 * ((levels - preferred) / spread) ** 2)
                else:
                    weights = np.ones(size)
                table[c, k, :size] = weights / weights.sum()
        return table

    def sample_factors_for_classes(self, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``int64 [n, K]`` factors drawn from p(factors | class) for each class index in ``labels``."""
        labels = np.asarray(labels, dtype=np.int64)
        table = self.class_level_probabilities()
        factors = np.empty((len(labels), len(FACTOR_NAMES)), dtype=np.int64)
        for c in range(len(ISIC_CLASS_NAMES)):
            rows = np.flatnonzero(labels == c)
            for k, size in enumerate(FACTOR_SIZES):
                factors[rows, k] = rng.choice(size, size=len(rows), p=table[c, k, :size])
        return factors

    def sample_labels(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``int64 [n]`` class indices drawn with HAM10000 frequencies."""
        return rng.choice(
            len(ISIC_CLASS_NAMES), size=n, p=HAM10000_CLASS_COUNTS / HAM10000_CLASS_COUNTS.sum()
        )

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``int64 [n, K]`` factors from the dataset's mixture over classes, or (``factors="independent"``)
        every factor uniform over its levels, independently of the others."""
        if self.factors == "independent":
            return independent_factors(n, rng)
        return self.sample_factors_for_classes(self.sample_labels(n, rng), rng)

    def render(self, factors: np.ndarray, noise_seeds: np.ndarray | None = None) -> np.ndarray:
        """``uint8 [n, 3, 64, 64]`` images for ``int64 [n, K]`` factor indices.

        ``noise_seeds`` (``[n]`` non-negative integers) seed the skin/lesion texture and the border shape;
        by default each image's seed is a hash of its factor values, so equal factors give equal images.
        Use :func:`dataset_noise_seeds` to reproduce the images of a loaded dataset.
        """
        images, _ = self.render_with_masks(factors, noise_seeds)
        return images

    def render_with_masks(
        self, factors: np.ndarray, noise_seeds: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Images ``uint8 [n, 3, S, S]`` and exact lesion masks ``uint8 [n, S, S]`` (0/1), S = ``self.size``
        (the masks are exact at 64 px)."""
        factors = self._check_factors(factors)
        if noise_seeds is None:
            flat = np.ravel_multi_index(factors.T, FACTOR_SIZES).astype(_U64)
            noise_seeds = _splitmix64(flat ^ _U64(0x5EED))
        noise_seeds = np.asarray(noise_seeds).astype(_U64)
        if noise_seeds.shape != (len(factors),):
            raise ConfigError(f"noise_seeds must have shape ({len(factors)},), got {noise_seeds.shape}")
        images = np.empty((len(factors), 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
        masks = np.empty((len(factors), IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
        for start in range(0, len(factors), _RENDER_CHUNK):
            chunk = slice(start, start + _RENDER_CHUNK)
            images[chunk], masks[chunk] = _render_chunk(factors[chunk], noise_seeds[chunk])
        return resize_rendered(images, masks, self.size)

    @staticmethod
    def _check_factors(factors: np.ndarray) -> np.ndarray:
        factors = np.asarray(factors, dtype=np.int64)
        if factors.ndim != 2 or factors.shape[1] != len(FACTOR_NAMES):
            raise ConfigError(f"factors must be [n, {len(FACTOR_NAMES)}], got shape {factors.shape}")
        if (factors < 0).any() or (factors >= np.array(FACTOR_SIZES)).any():
            raise ConfigError(
                f"factor index out of range; sizes are {dict(zip(FACTOR_NAMES, FACTOR_SIZES, strict=True))}"
            )
        return factors


def _render_chunk(factors: np.ndarray, noise_seeds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    size, ecc, orient, pos_x, pos_y, colour, tone, border = factors.T
    ratio = AXIS_RATIO[ecc]
    semi_major = EQUIVALENT_RADIUS_PX[size] / np.sqrt(ratio)
    semi_minor = EQUIVALENT_RADIUS_PX[size] * np.sqrt(ratio)
    theta = ORIENTATION_RAD[orient]

    # Pixel centres at (j + 0.5, i + 0.5); y is flipped so angles are counter-clockwise on screen.
    coords = np.arange(IMAGE_SIZE, dtype=np.float32) + 0.5
    dx = coords[None, None, :] - POSITION_PX[pos_x].astype(np.float32)[:, None, None]
    dy = POSITION_PX[pos_y].astype(np.float32)[:, None, None] - coords[None, :, None]
    cos_t, sin_t = np.cos(theta).astype(np.float32), np.sin(theta).astype(np.float32)
    along = (dx * cos_t[:, None, None] + dy * sin_t[:, None, None]) / semi_major.astype(np.float32)[
        :, None, None
    ]
    across = (-dx * sin_t[:, None, None] + dy * cos_t[:, None, None]) / semi_minor.astype(np.float32)[
        :, None, None
    ]
    rho = np.sqrt(along**2 + across**2)  # 1 on the smooth ellipse
    boundary = np.ones_like(rho)
    wobbly = np.flatnonzero(border > 0)  # the trigonometry is only paid for irregular borders
    if len(wobbly):
        phi = np.arctan2(across[wobbly], along[wobbly])
        phases = (2 * np.pi * _uniform(noise_seeds[wobbly], stream=1, count=len(BORDER_HARMONICS))).astype(
            np.float32
        )
        wobble = np.zeros_like(phi)
        for h, (harmonic, weight) in enumerate(zip(BORDER_HARMONICS, BORDER_HARMONIC_WEIGHTS, strict=True)):
            wobble += np.float32(weight) * np.cos(np.float32(harmonic) * phi + phases[:, h, None, None])
        boundary[wobbly] += BORDER_AMPLITUDE[border[wobbly]].astype(np.float32)[:, None, None] * wobble
    inside = boundary - rho  # >= 0 inside the lesion
    masks = (inside >= 0).astype(np.uint8)
    # A ~1 px anti-aliased edge whose 0.5 level is exactly the mask boundary.
    edge_px = np.sqrt(semi_major * semi_minor).astype(np.float32)[:, None, None]
    alpha = np.clip(inside * edge_px + 0.5, 0.0, 1.0)[:, None]

    skin_texture = _noise_field(noise_seeds, stream=2, smooth=True)[:, None]
    lesion_texture = _noise_field(noise_seeds, stream=3, smooth=True)[:, None]
    radius_sq = (dx / 32.0) ** 2 + (dy / 32.0) ** 2
    vignette = 1.0 - VIGNETTE_DEPTH * np.clip(radius_sq, 0, None) / 2.0
    skin = SKIN_RGB[tone].astype(np.float32)[:, :, None, None] * (1 + SKIN_TEXTURE_STD * skin_texture)
    # Pigment is denser towards the centre: up to 20% less transmitted light at the lesion's centre.
    core = 1.0 - 0.2 * np.clip(1.0 - rho, 0.0, 1.0)[:, None]
    transmittance = LESION_TRANSMITTANCE[colour].astype(np.float32)[:, :, None, None] * core
    lesion = skin * transmittance * (1 + LESION_TEXTURE_STD * lesion_texture)
    image = (skin * (1 - alpha) + lesion * alpha) * vignette[:, None]
    # Sensor noise: sharp (unsmoothed), independent per channel.
    sensor = np.stack([_noise_field(noise_seeds, stream=4 + c, smooth=False) for c in range(3)], axis=1)
    image += PIXEL_NOISE_STD * sensor
    images = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
    return images, masks


def allocate_class_counts(n: int) -> np.ndarray:
    """``int64 [7]`` class counts summing to ``n`` in HAM10000 proportions (largest remainder rounding)."""
    exact = n * HAM10000_CLASS_COUNTS / HAM10000_CLASS_COUNTS.sum()
    counts = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: n - counts.sum()]] += 1
    return counts


def independent_factors(n: int, rng: np.random.Generator) -> np.ndarray:
    """``int64 [n, K]``: each factor uniform over its levels, independently of the others and of the class."""
    return np.stack([rng.integers(0, size, n) for size in FACTOR_SIZES], axis=1).astype(np.int64)


def generate_synthetic_lesions(n: int = 10015, seed: int = 0, *, progress: bool = False,
                               size: int = IMAGE_SIZE, factors: str = "mixture") -> ImageDataset:
    """Generate ``synthetic-lesions:n=N,seed=S[,size=32|128][,factors=independent]`` (no cache).
    Deterministic in ``(n, seed, factors)``.

    Images are rendered at 64 px and resized to ``size`` (:func:`resize_rendered`); factors, labels and the
    handcrafted factors (measured on the 64 px masks) do not depend on ``size``. ``factors="mixture"``
    draws them from p(factors | class) (classes with HAM10000's frequencies: size, eccentricity, lesion
    colour and border irregularity correlate through the class); ``"independent"`` draws every factor
    uniformly and independently (the labels, drawn as before, then say nothing about the images)."""
    if n < 1:
        raise ConfigError(f"synthetic-lesions option n must be >= 1, got {n}")
    if seed < 0:
        raise ConfigError(f"synthetic-lesions option seed must be >= 0, got {seed}")
    sampler = SyntheticLesionSampler(factors=factors)
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.repeat(np.arange(len(ISIC_CLASS_NAMES)), allocate_class_counts(n)))
    distribution = factors
    if distribution == "independent":
        factors = independent_factors(n, rng)
    else:
        factors = sampler.sample_factors_for_classes(labels, rng)
    noise_seeds = dataset_noise_seeds(seed, n)
    images = np.empty((n, 3, size, size), dtype=np.uint8)
    masks = np.empty((n, size, size), dtype=np.uint8)
    handcrafted = np.empty((n, 3), dtype=np.float64)
    bar = tqdm(total=n, desc="synthetic-lesions", unit="img", disable=not progress_enabled(progress))
    with bar:
        for start in range(0, n, _RENDER_CHUNK):
            chunk = slice(start, min(start + _RENDER_CHUNK, n))
            rendered, full = sampler.render_with_masks(factors[chunk], noise_seeds[chunk])
            images[chunk], masks[chunk] = resize_rendered(rendered, full, size)
            handcrafted[chunk] = [handcrafted_factors(mask) for mask in full]
            bar.update(chunk.stop - chunk.start)
    return ImageDataset(
        name="synthetic-lesions",
        spec=f"synthetic-lesions:n={n},seed={seed}" + ("" if size == IMAGE_SIZE else f",size={size}")
        + ("" if distribution == "mixture" else f",factors={distribution}"),
        images=images,
        ids=[str(i) for i in range(n)],
        labels=labels.astype(np.int64),
        class_names=list(ISIC_CLASS_NAMES),
        factors=factors,
        factor_names=list(FACTOR_NAMES),
        factor_sizes=list(FACTOR_SIZES),
        handcrafted=handcrafted,
        masks=masks,
        groups=np.arange(n, dtype=np.int64),
        sampler=SyntheticLesionSampler(size, distribution),
        notes={"empty_masks": int(np.isnan(handcrafted[:, 0]).sum())},
    )


@dataclass(frozen=True)
class SyntheticLesionsOptions:
    """Options of the ``synthetic-lesions`` spec (``synthetic-lesions:n=500,seed=1``)."""

    n: int = option(10015, integer(1), "number of images (HAM10000's size by default)")
    seed: int = option(0, integer(0), "seed of the factors and the rendering noise")
    size: int = option(IMAGE_SIZE, image_size_option,
                       "image side: 64 (rendered), 32 (2x2 area averages) or 128 (bilinear)")
    factors: str = option("mixture", choice(*FACTOR_DISTRIBUTIONS),
                          "mixture: factors drawn given the class (correlated, as in HAM10000); independent: "
                          "each uniform and independent (the disentanglement setting; labels uninformative)")


@DATASETS.register("synthetic-lesions")
def load_synthetic_lesions(spec: DatasetSpec, *, skip_bad: bool, progress: bool) -> ImageDataset:
    """``synthetic-lesions[:n=10015,seed=0]``, cached on disk after the first generation."""
    options = parse_options(spec, SyntheticLesionsOptions)
    n, seed, size = options.n, options.seed, options.size
    # the 64 px mixture key is the one from before the size and factors options (its caches stay valid)
    sized = {} if size == IMAGE_SIZE else {"size": size}
    if options.factors != "mixture":
        sized["factors"] = options.factors
    dataset = cached_build(
        "synthetic-lesions",
        {"source": "synthetic-lesions", "n": n, "seed": seed, **sized},
        spec.raw,
        lambda: generate_synthetic_lesions(n, seed, progress=progress, size=size, factors=options.factors),
    )
    dataset.sampler = SyntheticLesionSampler(size, options.factors)
    return dataset
