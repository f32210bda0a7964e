"""The one dataset protocol every loader returns.

Images are held in memory as ``uint8 [N, C, 64, 64]`` (C = 3 for RGB, 1 for dSprites); models see
``float32`` in [0, 1] after :func:`to_float`. Everything else is optional and ``None`` when the source
does not have it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

IMAGE_SIZE = 64
IMAGE_SIZES = (32, 64, 128)  # what the networks build for; a dataset's ``size`` option takes one of them
HANDCRAFTED_FACTOR_NAMES = ("eccentricity", "orientation", "size")


def integer_choice(*choices: int):
    """A :func:`factorlens.schema.option` check: an integer among ``choices``."""

    def check(value, where: str) -> int:
        from factorlens.errors import ConfigError

        if isinstance(value, bool) or value not in choices:
            raise ConfigError(f"{where} must be one of {', '.join(map(str, choices))}, got {value!r}")
        return int(value)

    return check


image_size_option = integer_choice(*IMAGE_SIZES)  # the check of a dataset's ``size`` option


class FactorSampler(Protocol):
    """Renders images for chosen ground-truth factor values (needed by interventional metrics and by
    the direction-scoring oracle). Datasets with a full generative model (dSprites, synthetic lesions)
    provide one."""

    factor_names: list[str]
    factor_sizes: list[int]

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``int64 [n, K]`` factor indices drawn from the dataset's factor distribution."""
        ...

    def render(self, factors: np.ndarray) -> np.ndarray:
        """``uint8 [n, C, 64, 64]`` images for ``int64 [n, K]`` factor indices."""
        ...


@dataclass
class ImageDataset:
    """A dataset in memory.

    Attributes:
        name: short name of the source (``synthetic-lesions``, ``dsprites``, ``ham10000``...).
        spec: the dataset spec string it was loaded from (recorded in run directories).
        images: ``uint8 [N, C, 64, 64]``.
        ids: one string id per image (file stem, or the index for generated data).
        labels: ``int64 [N]`` class index into ``class_names``, or None.
        class_names: names of the classes (e.g. the 7 ISIC diagnoses ``MEL, NV, ...``).
        factors: ``int64 [N, K]`` discrete ground-truth factor indices in ``0..factor_sizes[k]-1``;
            ``-1`` where unknown. None when the source has no factors.
        factor_names, factor_sizes: names and number of values of the K factors.
        exact_mig_factors: the factors Chen et al.'s exact MIG scores on this dataset (names), when the
            literature scores a subset (dSprites: all but shape); None = every factor.
        handcrafted: ``float64 [N, 3]`` lesion-mask factors (eccentricity, orientation in radians,
            size as area fraction of the image), measured on the largest connected component of the mask
            at the mask's original resolution; NaN where the mask is empty or missing.
        masks: ``uint8 [N, 64, 64]`` binary lesion masks (0/1) after the images' geometric transform.
        groups: ``int64 [N]`` group (lesion/patient) index; splits never put one group on both sides.
        sampler: renders images for given factors, when the source has a generative model.
        notes: counts and warnings gathered while loading (skipped files, empty masks...).
    """

    name: str
    spec: str
    images: np.ndarray
    ids: list[str]
    labels: np.ndarray | None = None
    class_names: list[str] | None = None
    factors: np.ndarray | None = None
    factor_names: list[str] = field(default_factory=list)
    factor_sizes: list[int] = field(default_factory=list)
    exact_mig_factors: list[str] | None = None
    handcrafted: np.ndarray | None = None
    masks: np.ndarray | None = None
    groups: np.ndarray | None = None
    sampler: FactorSampler | None = None
    notes: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> int:
        """Side of the (square) images in pixels."""
        return int(self.images.shape[-1])

    def subset(self, indices: np.ndarray) -> ImageDataset:
        """A view-like copy restricted to ``indices`` (images are fancy-indexed, i.e. copied)."""
        idx = np.asarray(indices, dtype=np.int64)

        def take(a):
            return None if a is None else a[idx]

        return ImageDataset(
            name=self.name,
            spec=self.spec,
            images=self.images[idx],
            ids=[self.ids[i] for i in idx],
            labels=take(self.labels),
            class_names=self.class_names,
            factors=take(self.factors),
            factor_names=list(self.factor_names),
            factor_sizes=list(self.factor_sizes),
            exact_mig_factors=None if self.exact_mig_factors is None else list(self.exact_mig_factors),
            handcrafted=take(self.handcrafted),
            masks=take(self.masks),
            groups=take(self.groups),
            sampler=self.sampler,
            notes=dict(self.notes),
        )


def to_float(images_uint8) -> torch.Tensor:  # noqa: F821 - torch imported lazily
    """``uint8 [B, C, H, W]`` (numpy or torch) -> ``float32`` torch tensor in [0, 1]."""
    import torch

    t = torch.as_tensor(images_uint8)
    return t.to(torch.float32).div_(255.0)
