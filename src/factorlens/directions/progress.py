"""Progress-bar policy shared by the direction methods (see docs/architecture.md)."""

from __future__ import annotations

import os
import sys


def progress_enabled() -> bool:
    """False when ``FACTORLENS_NO_PROGRESS=1``, or when stderr is not a TTY and ``CI`` is set."""
    if os.environ.get("FACTORLENS_NO_PROGRESS") == "1":
        return False
    return not (os.environ.get("CI") and not sys.stderr.isatty())
