"""Strict validation of model parameters against a model's config dataclass."""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any

from factorlens.errors import ConfigError


def build_config(config_class: type, params: dict[str, Any]) -> Any:
    """Instantiate ``config_class`` from ``params``; unknown keys, wrong types and bad values raise
    a one-line :class:`ConfigError` naming ``model.<key>``. An int is accepted (and converted) where a
    float is expected; a bool is never accepted as a number."""
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    hints = typing.get_type_hints(config_class)
    coerced: dict[str, Any] = {}
    for key, value in params.items():
        if key not in fields:
            raise ConfigError(f"model.{key}: unknown option; valid options: {', '.join(sorted(fields))}")
        coerced[key] = _coerce(key, value, hints[key])
    config = config_class(**coerced)
    config.validate()
    return config


def _coerce(key: str, value: Any, expected: Any) -> Any:
    if expected is float:
        # YAML reads "6" as an int; bools are ints in Python but never a sensible number.
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"model.{key}: expected a number, got {value!r}")
        return float(value)
    if expected is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"model.{key}: expected an integer, got {value!r}")
        return value
    if expected is str:
        if not isinstance(value, str):
            raise ConfigError(f"model.{key}: expected a string, got {value!r}")
        return value
    if expected is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"model.{key}: expected true or false, got {value!r}")
        return value
    raise TypeError(f"unsupported config field type {expected!r} for {key}")


def require_non_negative(key: str, value: float) -> None:
    """Loss weights: finite and >= 0 (0 switches a term off; NaN or a negative weight is a typo)."""
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"model.{key}: must be a finite number >= 0, got {value!r}")
