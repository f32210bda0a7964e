"""Dataset specs and the ``DATASETS`` registry behind :func:`load_dataset`.

A spec is ``NAME[:ARG[:ARG]]``: ``synthetic-lesions:n=500,seed=1``, ``ham10000:/data/ham:/data/masks``,
``folder:imgs:labels.csv``. The name picks a loader from :data:`DATASETS`; the loader gets the parsed
:class:`DatasetSpec` and interprets the arguments (paths or ``key=value`` options).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from factorlens.data.base import ImageDataset
from factorlens.errors import ConfigError, DataError
from factorlens.registry import Registry
from factorlens.schema import parse

T = TypeVar("T")


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


def parse_options(spec: DatasetSpec, options_class: type[T]) -> T:
    """Parse a single ``key=value,key=value`` argument into ``options_class`` (a dataclass of
    :mod:`factorlens.schema` options); values are read as YAML scalars (``n=500`` is an int).

    A bad key or value is the one parser's one-line :class:`ConfigError`, e.g.
    ``synthetic-lesions.n in dataset spec 'synthetic-lesions:n=ten' must be an integer, got 'ten'``.
    """
    from factorlens.config import parse_yaml

    if len(spec.args) > 1:
        raise ConfigError(f"dataset {spec.name!r} takes one 'key=value,...' argument, got {spec.raw!r}")
    where = f"dataset spec {spec.raw!r}"
    raw: dict[str, list[str]] = {}
    key = None
    for item in spec.args[0].split(",") if spec.args else ():
        name, sep, value = item.partition("=")
        if not sep and key is not None:  # 'window=-1000,400': a list continues the previous key
            raw[key].append(item)
            continue
        key = name.strip().replace("-", "_")  # 'skip-empty' is the option skip_empty
        if not sep or not key:
            raise ConfigError(f"dataset option {item!r} in {spec.raw!r} is not key=value")
        raw[key] = [value]
    given: dict[str, object] = {}
    for key, values in raw.items():
        parsed = [parse_yaml(value.strip(), f"{where} option {key}") for value in values]
        given[key] = parsed[0] if len(parsed) == 1 else parsed
    return parse(options_class, given, where=where, prefix=spec.name, owner=f"dataset {spec.name}")


def existing_path(text: str, what: str, spec: DatasetSpec) -> Path:
    """``text`` as an absolute path that must exist, else a :class:`DataError` naming it."""
    path = Path(text).expanduser()
    if not path.exists():
        raise DataError(f"{what} {str(path)!r} (from dataset spec {spec.raw!r}) does not exist")
    return path.resolve()
