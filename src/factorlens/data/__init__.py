"""Datasets: every loader returns an :class:`ImageDataset` (see ``docs/data.md``).

Importing this package registers the loaders in :data:`DATASETS`; :func:`load_dataset` dispatches on the
spec's name.
"""

from factorlens.data import (  # noqa: F401  (importing registers loaders)
    dicom,
    dsprites,
    exported,
    folder,
    isic,
    nifti,
    synthetic,
)
from factorlens.data.base import HANDCRAFTED_FACTOR_NAMES, IMAGE_SIZE, FactorSampler, ImageDataset, to_float
from factorlens.data.exported import export_dataset
from factorlens.data.handcrafted import handcrafted_factors
from factorlens.data.loading import DATASETS, DatasetSpec, load_dataset, parse_spec
from factorlens.data.split import describe, split_indices

__all__ = [
    "DATASETS",
    "HANDCRAFTED_FACTOR_NAMES",
    "IMAGE_SIZE",
    "DatasetSpec",
    "FactorSampler",
    "ImageDataset",
    "handcrafted_factors",
    "load_dataset",
    "parse_spec",
    "describe",
    "export_dataset",
    "split_indices",
    "to_float",
]
