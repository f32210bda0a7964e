"""Which images a run is evaluated on: one rule for Table 1, ``factorlens encode``, the figures and the
direction methods.

The rule:

- **The run's own dataset** (no ``data_spec``, or the spec the run was trained on): the images of the
  asked split recorded in ``split.json``: ``"test"`` (the default), ``"train"``, or ``"all"`` (every
  image).
- **An empty test split** (a run trained with ``test_fraction: 0``): ``"test"`` then means every image
  (``all_if_empty=True``, the default; what the figures draw from). Table 1 and ``factorlens encode``
  pass ``all_if_empty=False`` and keep the empty split: Table 1 refuses to score no images and
  ``encode`` writes an empty file, rather than silently scoring the training images.
- **Another dataset** (``data_spec`` names a different spec): all of its images (``split="all"``; a
  train or test split of a dataset the run was not trained on does not exist).

The direction methods draw their base codes from the training split instead (``"train"``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from factorlens.errors import ConfigError, DataError

SPLITS = ("train", "test", "all")


def _resolve(run, split: str, all_if_empty: bool) -> tuple[str, np.ndarray]:
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    n = int(run.split["n"])
    if split == "all":
        return "all", np.arange(n, dtype=np.int64)
    indices = np.asarray(run.split.get(split) or [], dtype=np.int64)
    if split == "test" and all_if_empty and len(indices) == 0:
        return "all", np.arange(n, dtype=np.int64)
    return split, indices


def evaluation_indices(run, split: str = "test", *, all_if_empty: bool = True) -> np.ndarray:
    """``int64`` indices into the run's dataset of the images of ``split`` (the module's rule)."""
    return _resolve(run, split, all_if_empty)[1]


@dataclass
class EvaluationImages:
    """The images chosen for a run: ``dataset`` (all of it) and the ``indices`` evaluated.

    Attributes:
        dataset: the whole :class:`~factorlens.data.ImageDataset` the indices point into.
        indices: ``int64 [n]`` rows of ``dataset`` that are evaluated.
        split: what the indices are: ``"train"``, ``"test"`` or ``"all"`` (also when an empty test split
            was replaced by every image).
        spec: the dataset spec.
        own: whether it is the dataset the run was trained on.
    """

    dataset: object
    indices: np.ndarray
    split: str
    spec: str
    own: bool

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def images(self) -> np.ndarray:
        """``uint8 [n, C, 64, 64]`` (a copy)."""
        return self.dataset.images[self.indices]

    def subset(self):
        """The evaluated images with their labels, factors and masks, as an ``ImageDataset``."""
        return self.dataset.subset(self.indices)


def evaluation_images(
    run,
    data_spec: str | None = None,
    *,
    split: str | None = None,
    all_if_empty: bool = True,
    progress: bool = False,
    datasets: dict | None = None,
) -> EvaluationImages:
    """The images ``run`` is evaluated on, by the module's rule.

    Args:
        run: a :class:`~factorlens.training.Run` (anything with ``config``, ``split``, ``model``, ``path``
            and ``load_dataset``).
        data_spec: another dataset to evaluate on (all of it); None or the run's own spec: its own.
        split: ``"test"`` (default for the run's own dataset), ``"train"`` or ``"all"`` (the only choice,
            and the default, for another dataset).
        all_if_empty: an empty test split means every image (see the module docstring).
        progress: progress bar while a dataset loads.
        datasets: ``{spec: ImageDataset}`` cache shared by calls for several runs (filled here).

    Raises:
        ConfigError: a train/test split of another dataset, an unknown split.
        DataError: the dataset's channels differ from the model's.
    """
    run_spec = run.config.data.spec
    own = data_spec is None or data_spec == run_spec
    spec = run_spec if own else data_spec
    split = split or ("test" if own else "all")
    if not own and split != "all":
        raise ConfigError(
            f"split {split!r} refers to the run's own dataset; {data_spec} is evaluated whole (split 'all')"
        )
    cache = {} if datasets is None else datasets
    if spec not in cache:
        if own:
            cache[spec] = run.load_dataset(progress=progress)
        else:
            from factorlens.data import load_dataset

            cache[spec] = load_dataset(spec, progress=progress)
    dataset = cache[spec]
    if dataset.channels != run.model.channels:
        raise DataError(
            f"{spec} has {dataset.channels}-channel images but run {run.path} expects {run.model.channels}"
        )
    if own:
        split, indices = _resolve(run, split, all_if_empty)
    else:
        indices = np.arange(len(dataset), dtype=np.int64)
    return EvaluationImages(dataset=dataset, indices=indices, split=split, spec=spec, own=own)
