"""Figures of latent representations and the one-page HTML report.

- :mod:`~factorlens.viz.grid`: labelled image grids (PNG) and animated GIFs.
- :mod:`~factorlens.viz.traversal`: latent traversals (Fig. 1a of Sarhan et al. 2019).
- :mod:`~factorlens.viz.walk`: manifold walk from a source to a target image (Fig. 1b).
- :mod:`~factorlens.viz.panels`: reconstructions, prior samples, KL bars, MI heat map, training curves.
- :mod:`~factorlens.viz.report`: :func:`write_report`, one self-contained HTML file per set of runs.

Submodules are imported lazily so that ``factorlens.viz.grid`` (used by the directions package) does not
pull in the report machinery.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "save_grid": "grid",
    "save_gif": "grid",
    "render_grid": "grid",
    "traverse": "traversal",
    "Traversal": "traversal",
    "save_traversal": "traversal",
    "manifold_walk": "walk",
    "Walk": "walk",
    "save_walk": "walk",
    "write_report": "report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"factorlens.viz.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'factorlens.viz' has no attribute {name!r}")
