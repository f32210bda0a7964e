"""Typed options: frozen dataclasses whose fields carry their own checks, and ONE parser for every source.

Every option a user can set — a config's ``model:``/``train:``/``data:`` sections, ``--set``, a dataset
spec's ``:key=value`` options, ``discover --option`` — is a field of a dataclass, parsed by
:func:`parse`. A bad value gives the same one-line :class:`~factorlens.errors.ConfigError` whatever the
source::

    model.beta in cfg.yaml must be >= 0, got -1.0
    unknown key train.bogus in cfg.yaml; allowed: iterations, batch_size, ...

A field declares its check with :func:`option` (``option(6.0, number(lo=0))``); a field without one is
checked by its type hint (``int``, ``float`` (an int is accepted), ``str``, ``bool``). After the fields,
a dataclass may check relations between them in ``validate(self)``.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from factorlens.errors import ConfigError

T = TypeVar("T")
Check = Callable[[Any, str], Any]  # (value, "key in source") -> normalised value, or ConfigError


def option(default: Any, check: Check | None = None, help: str = "") -> Any:  # noqa: A002 - field name
    """A dataclass field with a default, a check and a help line (``factorlens models`` prints it).

    Mutable defaults (lists) are copied per instance.
    """
    metadata = {"check": check, "help": help}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def help_of(field: dataclasses.Field) -> str:
    return field.metadata.get("help", "")


# --- checks ----------------------------------------------------------------------------------------------
# ``where`` is "section.key in source"; every message starts with it.


def integer(minimum: int | None = None) -> Check:
    def check(value: Any, where: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        if minimum is not None and value < minimum:
            raise ConfigError(f"{where} must be >= {minimum}, got {value}")
        return value

    return check


def number(*, positive: bool = False, lo: float | None = None, hi: float | None = None) -> Check:
    """A finite float (an int is accepted: YAML reads ``6`` as one; a bool never is).

    ``positive``: > 0; ``lo``: >= lo; ``hi``: < hi (exclusive).
    """

    def check(value: Any, where: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"{where} must be finite, got {value}")
        if positive and value <= 0:
            raise ConfigError(f"{where} must be > 0, got {value}")
        if lo is not None and value < lo:
            raise ConfigError(f"{where} must be >= {lo:g}, got {value}")
        if hi is not None and value >= hi:
            raise ConfigError(f"{where} must be < {hi:g}, got {value}")
        return value

    return check


def choice(*choices: str) -> Check:
    def check(value: Any, where: str) -> str:
        if value not in choices:
            raise ConfigError(f"{where} must be one of {', '.join(choices)}, got {value!r}")
        return value

    return check


def boolean(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    return value


def text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be a string, got {value!r}")
    return value


def nonempty_text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where} must be a non-empty string, got {value!r}")
    return value


def number_pair(*, lo: float | None = None, hi: float | None = None) -> Check:
    """A list of two numbers, each checked by ``number(lo=lo, hi=hi)`` (e.g. Adam's betas)."""
    each = number(lo=lo, hi=hi)

    def check(value: Any, where: str) -> list[float]:
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise ConfigError(f"{where} must be a list of two numbers in [{lo:g}, {hi:g}), got {value!r}")
        key, _, source = where.partition(" in ")
        return [each(v, f"{key}[{i}] in {source}") for i, v in enumerate(value)]

    return check


_BY_TYPE: dict[Any, Check] = {int: integer(), float: number(), str: text, bool: boolean}


# --- the parser ------------------------------------------------------------------------------------------


def fields_of(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls) if f.init}


def parse(cls: type[T], mapping: Mapping[str, Any] | None, *, where: str, prefix: str,
          owner: str | None = None) -> T:
    """Build ``cls`` (a dataclass) from ``mapping``, checking every key and value.

    Args:
        cls: the dataclass; missing keys take the field defaults.
        mapping: the given options (None = all defaults).
        where: the source named in messages: a file path, ``--set``, ``command line``, a dataset spec...
        prefix: the dotted section named in messages (``model``, ``train``, ``data``, ``option``...).
        owner: what the options belong to, for the unknown-key message (default: ``prefix``).

    Raises:
        ConfigError: one line, ``<prefix>.<key> in <where> ...``.
    """
    if mapping is None:
        mapping = {}
    if isinstance(mapping, cls):
        return mapping
    if not isinstance(mapping, Mapping):
        raise ConfigError(f"{where}: section {prefix!r} must be a mapping, got {mapping!r}")
    fields = fields_of(cls)
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for key, value in mapping.items():
        if key not in fields:
            allowed = ", ".join(fields) or "(none)"
            raise ConfigError(f"unknown key {prefix}.{key} in {where} (unknown option of {owner or prefix}); "
                              f"allowed: {allowed}")
        if dataclasses.is_dataclass(hints[key]):
            # A nested section (``train.orthogonality: {method: nog}``): parsed the same way.
            values[key] = parse(hints[key], value, where=where, prefix=f"{prefix}.{key}")
            continue
        check = fields[key].metadata.get("check") or _BY_TYPE.get(hints[key])
        if check is None:
            raise TypeError(f"{cls.__name__}.{key}: no check for type {hints[key]!r}")
        values[key] = check(value, f"{prefix}.{key} in {where}")
    instance = cls(**values)
    validate = getattr(instance, "validate", None)
    if validate is not None:
        try:
            validate()
        except ConfigError as exc:
            message = str(exc)
            raise ConfigError(message if where in message else f"{message} (in {where})") from None
    return instance


def as_dict(instance: Any) -> dict[str, Any]:
    """The dataclass as plain YAML-safe values (tuples become lists)."""
    return _plain(dataclasses.asdict(instance))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
