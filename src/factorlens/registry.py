"""String registries (models, datasets, metrics, direction methods).

A registry maps a name to a factory. Lookup of an unknown name raises a one-line
:class:`~factorlens.errors.ConfigError` listing the valid names, never a KeyError traceback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

from factorlens.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._items[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            choices = ", ".join(sorted(self._items))
            raise ConfigError(f"unknown {self.kind} {name!r}; choose one of: {choices}") from None

    @contextmanager
    def override(self, name: str, obj: T) -> Iterator[T]:
        """Register ``obj`` as ``name`` (replacing an entry of that name) inside a ``with`` block only:
        the public seam for tests and notebooks that need a model, dataset or method of their own."""
        missing = object()
        previous = self._items.get(name, missing)
        self._items[name] = obj
        try:
            yield obj
        finally:
            if previous is missing:
                self._items.pop(name, None)
            else:
                self._items[name] = previous  # type: ignore[assignment]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
