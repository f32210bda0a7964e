"""``factorlens explore``: a local page with one slider per latent dimension (or direction) of a run.

- :mod:`~factorlens.explore.state`: :class:`Explorer` (slider sets, base codes, decode, encode, walk).
- :mod:`~factorlens.explore.protocol`: the routes and the validation of every request (:func:`handle`).
- :mod:`~factorlens.explore.server`: the standard-library HTTP server (:func:`make_server`).
- ``page.html``: the page, everything inline (no network beyond this server).
"""

from __future__ import annotations

from factorlens.explore.protocol import RequestError, Response, handle
from factorlens.explore.server import DEFAULT_HOST, DEFAULT_PORT, ExplorerServer, make_server
from factorlens.explore.state import Explorer, SliderSet, direction_set

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "Explorer",
    "ExplorerServer",
    "RequestError",
    "Response",
    "SliderSet",
    "direction_set",
    "handle",
    "make_server",
]
