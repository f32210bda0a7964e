"""Dataset specs and the ``DATASETS`` registry behind :func:`load_dataset`.

A spec is ``NAME[:ARG[:ARG]]``: ``synthetic-lesions:n=500,seed=1``, ``ham10000:/data/ham:/data/masks``,
``folder:imgs:labels.csv``. The name picks a loader from :data:`DATASETS`; the loader gets the parsed
:class:`DatasetSpec` and interprets the arguments (paths or ``key=value`` options).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from factorlens.data.base import ImageDataset
from factorlens.errors import ConfigError, DataError
from factorlens.registry import Registry


@dataclass(frozen=True)
class DatasetSpec:
    """A parsed spec: ``raw`` as the user wrote it, the loader ``name`` and its ``args``."""

    raw: str
    name: str
    args: tuple[str, ...]


class DatasetLoader(Protocol):
    def __call__(self, spec: DatasetSpec, *, skip_bad: bool, progress: bool) -> ImageDataset: ...


DATASETS: Registry[DatasetLoader] = Registry("dataset")


def parse_spec(spec: str) -> DatasetSpec:
    """Split ``NAME[:ARG...]``; an empty spec or empty argument is a :class:`ConfigError`."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"empty dataset spec {spec!r}; choose one of: {', '.join(DATASETS.names())}")
    name, *args = spec.strip().split(":")
    if any(arg == "" for arg in args):
        raise ConfigError(f"dataset spec {spec!r} has an empty argument between ':'")
    return DatasetSpec(raw=spec, name=name, args=tuple(args))


def load_dataset(spec: str, *, skip_bad: bool = False, progress: bool = True) -> ImageDataset:
    """Load (or build and cache) the dataset described by ``spec``.

    Args:
        spec: ``synthetic-lesions[:n=10015,seed=0]``, ``dsprites`` / ``dsprites:PATH.npz``,
            ``isic2018:PATH[:MASKS]``, ``ham10000:PATH[:MASKS]`` or ``folder:PATH[:CSV]``.
        skip_bad: skip unreadable image files (counted in ``notes``) instead of raising ``DataError``.
        progress: show a tqdm bar on stderr while decoding or generating.
    """
    parsed = parse_spec(spec)
    loader = DATASETS.get(parsed.name)
    return loader(parsed, skip_bad=skip_bad, progress=progress)


def parse_options(spec: DatasetSpec, defaults: dict[str, Callable[[str], object]]) -> dict[str, object]:
    """Parse a single ``key=value,key=value`` argument; ``defaults`` maps each allowed key to its parser.

    Returns only the keys the user gave; a bad key or value is a one-line :class:`ConfigError`.
    """
    if len(spec.args) > 1:
        raise ConfigError(f"dataset {spec.name!r} takes one 'key=value,...' argument, got {spec.raw!r}")
    options: dict[str, object] = {}
    if not spec.args:
        return options
    for item in spec.args[0].split(","):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep:
            raise ConfigError(f"dataset option {item!r} in {spec.raw!r} is not key=value")
        if key not in defaults:
            allowed = ", ".join(sorted(defaults))
            raise ConfigError(f"unknown option {key!r} for dataset {spec.name!r}; allowed: {allowed}")
        try:
            options[key] = defaults[key](value.strip())
        except ValueError:
            raise ConfigError(f"bad value {value!r} for option {key!r} in {spec.raw!r}") from None
    return options


def existing_path(text: str, what: str, spec: DatasetSpec) -> Path:
    """``text`` as an absolute path that must exist, else a :class:`DataError` naming it."""
    path = Path(text).expanduser()
    if not path.exists():
        raise DataError(f"{what} {str(path)!r} (from dataset spec {spec.raw!r}) does not exist")
    return path.resolve()
