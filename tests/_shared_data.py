"""Where tests find the large shared data sets (never committed: size limits, HAM10000 is CC BY-NC).

Looked up, in order, in ``$FACTORLENS_SHARED_DATA/<name>`` and ``<repository>/../shared/data/<name>``
(the repository root is found from this file's location). When none holds the data the test is
skipped, unless ``FACTORLENS_REQUIRE_SHARED_DATA=1`` (set by ``.ci/run``, where the data is present),
in which case it fails naming every path it looked at.

    from _shared_data import shared_data
    root = shared_data("ham10000", "HAM10000_metadata.csv")
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ENV_DIR = "FACTORLENS_SHARED_DATA"
ENV_REQUIRE = "FACTORLENS_REQUIRE_SHARED_DATA"


def shared_data_candidates(name: str) -> list[Path]:
    """The folders that may hold the data set ``name``, in the order they are tried."""
    roots = []
    if os.environ.get(ENV_DIR):
        roots.append(Path(os.environ[ENV_DIR]).expanduser())
    roots.append(Path(os.path.normpath(REPO.parent / "shared" / "data")))
    return [root / name for root in roots]


def shared_data(name: str, marker: str | None = None) -> Path:
    """The folder of the shared data set ``name`` (one that holds ``marker`` when given); skips the
    calling test when it is absent, or fails when ``FACTORLENS_REQUIRE_SHARED_DATA=1``."""
    candidates = shared_data_candidates(name)
    for folder in candidates:
        if (folder / marker).is_file() if marker else folder.is_dir():
            return folder
    looked_at = ", ".join(str(folder / marker) if marker else str(folder) for folder in candidates)
    reason = (f"shared data {name!r} not found; looked at {looked_at} "
              f"(set {ENV_DIR} to a folder holding {name}/)")
    if os.environ.get(ENV_REQUIRE) == "1":
        pytest.fail(f"{reason}; {ENV_REQUIRE}=1 requires it", pytrace=False)
    pytest.skip(reason)
