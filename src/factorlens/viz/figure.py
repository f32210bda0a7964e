"""Figures as objects: what the figure functions return and the file-writing ones are built on.

A :class:`Figure` holds the rendered image (``.image`` PIL, ``.array`` uint8 ``[H, W, 3]``, ``.png``
bytes), a caption saying what it shows and how it was made, the computed data it was drawn from
(``.data``, e.g. a :class:`~factorlens.viz.traversals.Traversal`) and, for traversals and walks, an
animation rendered on first use (``.gif``). ``save(path)`` writes the PNG or the GIF (by the suffix)
atomically; in Jupyter a figure displays itself inline (``_repr_png_``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from pathlib import Path

import numpy as np
from PIL import Image

from factorlens.viz.grid import FigureError, png_bytes


class Figure:
    """A rendered figure and its caption.

    Args:
        image: the rendered figure.
        caption: one or two sentences: what the figure shows and how it was made.
        description: the caption's "how it was made" part, for captions of figures derived from this one
            (default: the caption).
        data: the computed object the figure shows (``Traversal``, ``Walk``), or None.
        animation: renders the animated GIF (bytes) when first asked for, or None.
        animation_caption: caption of the animation.
    """

    def __init__(
        self,
        image: Image.Image,
        caption: str,
        *,
        description: str | None = None,
        data: object = None,
        animation: Callable[[], bytes] | None = None,
        animation_caption: str | None = None,
    ) -> None:
        self.image = image
        self.caption = caption
        self.description = caption if description is None else description
        self.data = data
        self._animation = animation
        self.animation_caption = animation_caption

    @cached_property
    def png(self) -> bytes:
        """The figure as PNG bytes (what :meth:`save` writes to ``*.png``)."""
        return png_bytes(self.image)

    @property
    def array(self) -> np.ndarray:
        """``uint8 [H, W, 3]`` pixels of the figure."""
        return np.asarray(self.image.convert("RGB"))

    @cached_property
    def gif(self) -> bytes | None:
        """The animated GIF (rendered on first use), or None when the figure has no animation."""
        return None if self._animation is None else self._animation()

    def save(self, path: str | Path, *, format: str | None = None) -> Path:
        """Write the PNG or the animation (GIF) atomically; returns ``path``.

        ``format``: ``"png"`` or ``"gif"``; default: by the suffix of ``path`` (``.png`` / ``.gif``).
        """
        from factorlens.io import atomic_write_bytes

        path = Path(path)
        kind = format or path.suffix.lower().lstrip(".")
        if kind == "png":
            data = self.png
        elif kind == "gif":
            if self.gif is None:
                raise FigureError(f"{path}: this figure has no animation; save it as .png")
            data = self.gif
        else:
            raise FigureError(f"{path}: a figure is saved as .png (or .gif for its animation)")
        atomic_write_bytes(path, data)
        return path

    def _repr_png_(self) -> bytes:
        return self.png

    def __repr__(self) -> str:
        animated = ", animated" if self._animation is not None else ""
        return f"<Figure {self.image.width}x{self.image.height}{animated}: {self.caption[:80]!r}>"
