"""Progress-bar policy for the data loaders (docs/architecture.md, "Progress bars")."""

from __future__ import annotations

import os
import sys


def progress_enabled(requested: bool) -> bool:
    """True when the caller asked for a bar and the environment allows one.

    Disabled by ``FACTORLENS_NO_PROGRESS=1``, or when stderr is not a TTY and ``CI`` is set.
    """
    if not requested or os.environ.get("FACTORLENS_NO_PROGRESS") == "1":
        return False
    return not (os.environ.get("CI") and not sys.stderr.isatty())
