"""Figures of latent representations and the one-page HTML report.

Figures are objects: :func:`traversal` and :func:`walk` return a :class:`Figure` (the rendered image,
its caption, the data it shows, an animation; ``.save(path)``, inline display in Jupyter). The functions
that write files (``save_traversal``, ``save_walk``, ``factorlens traverse/walk/viz``) are built on them.

- :mod:`~factorlens.viz.grid`: labelled image grids (PNG) and animated GIFs.
- :mod:`~factorlens.viz.figure`: :class:`Figure`.
- :mod:`~factorlens.viz.traversals`: latent traversals (Fig. 1a of Sarhan et al. 2019).
- :mod:`~factorlens.viz.walks`: manifold walk from a source to a target image (Fig. 1b).
- :mod:`~factorlens.viz.panels`: reconstructions, prior samples, KL bars, MI heat map, training curves.
- :mod:`~factorlens.viz.report`: :func:`write_report`, one self-contained HTML file per set of runs.

Submodules are imported lazily so that ``factorlens.viz.grid`` (used by the directions package) does not
pull in the report machinery. (No submodule is named like an exported function: importing it would
replace the function on this package.)
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Figure": "figure",
    "save_grid": "grid",
    "save_gif": "grid",
    "render_grid": "grid",
    "traversal": "traversals",
    "traversal_figure": "traversals",
    "traverse": "traversals",
    "Traversal": "traversals",
    "save_traversal": "traversals",
    "walk": "walks",
    "walk_figure": "walks",
    "manifold_walk": "walks",
    "Walk": "walks",
    "save_walk": "walks",
    "write_report": "report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"factorlens.viz.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'factorlens.viz' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
