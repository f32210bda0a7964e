"""The project's own error type.

Every user-facing failure (bad data, bad config, bad checkpoint) raises :class:`FactorlensError` with a
one-line message that names the file, row or option to fix. The CLI prints it and exits with code 2.
"""

from __future__ import annotations


class FactorlensError(Exception):
    """A user-facing error: one line, names what to fix. The CLI maps it to exit code 2."""

    exit_code = 2


class DataError(FactorlensError):
    """A dataset path, CSV row, image or mask that cannot be used."""


class ConfigError(FactorlensError):
    """An invalid configuration key, type or value."""


class CheckpointError(FactorlensError):
    """A checkpoint or run directory that cannot be loaded."""


class TrainingError(FactorlensError):
    """Training cannot continue (e.g. a non-finite loss)."""
