"""Image grids and animated GIFs, drawn with PIL and written atomically.

Every figure of factorlens that shows images (traversals, manifold walks, reconstructions, prior
samples, direction traversals) goes through :func:`render_grid`: tiles are upscaled with nearest-neighbour
(64x64 pixels stay crisp, no invented detail), labels use a TrueType font shipped with matplotlib so they
are readable at 100 % zoom on any machine.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from factorlens.errors import FactorlensError
from factorlens.io import atomic_write_bytes

DEFAULT_SCALE = 2  # 64x64 tiles become 128x128 on screen
LABEL_FONT_PX = 14
TITLE_FONT_PX = 16
GAP_PX = 2  # white gutter between tiles
MARGIN_PX = 6
MARKER_WIDTH_PX = 3
BACKGROUND = (255, 255, 255)
TEXT_COLOUR = (20, 20, 20)
GREYED_TEXT_COLOUR = (150, 150, 150)
# Marker colours cycled by the manifold walk; chosen to stay distinct from typical skin tones.
MARKER_COLOURS = (
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (0, 128, 128),
    (128, 0, 0),
)

Colour = tuple[int, int, int] | str
Marker = tuple[int, int, Colour]


class FigureError(FactorlensError):
    """A figure cannot be drawn from the given arrays or options."""


@lru_cache(maxsize=8)
def _font(size_px: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """DejaVu Sans from matplotlib's data folder (always installed with matplotlib)."""
    try:
        import matplotlib

        return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts/ttf/DejaVuSans.ttf"), size_px)
    except (ImportError, OSError):
        # Pillow's built-in font scales with ``size`` since Pillow 10.1.
        return ImageFont.load_default(size=size_px)


def _text_size(text: str, font) -> tuple[int, int]:
    left, top, right, bottom = font.getbbox(text or " ")
    return int(right - left), int(bottom - top)


def _check_images(images: np.ndarray, name: str = "images") -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 5 or images.shape[2] not in (1, 3):
        raise FigureError(
            f"{name} must be [rows, cols, C, H, W] with C = 1 or 3, got shape {list(images.shape)}"
        )
    if images.shape[0] == 0 or images.shape[1] == 0:
        raise FigureError(f"{name} is empty (shape {list(images.shape)})")
    if not np.all(np.isfinite(images)):
        raise FigureError(f"{name} contains NaN or infinite pixel values")
    return images


def to_uint8_hwc(image: np.ndarray) -> np.ndarray:
    """``float [C, H, W]`` in [0, 1] -> ``uint8 [H, W, 3]`` (grey images are repeated to RGB)."""
    hwc = np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0).transpose(1, 2, 0)
    if hwc.shape[2] == 1:
        hwc = np.repeat(hwc, 3, axis=2)
    return np.round(hwc * 255.0).astype(np.uint8)


def _grey_out(tile: np.ndarray) -> np.ndarray:
    """Desaturate and fade a ``uint8 [H, W, 3]`` tile: an inactive latent dimension stays visible but
    reads as background."""
    luminance = tile.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    faded = 0.35 * luminance + 0.65 * 235.0
    return np.repeat(np.round(faded)[..., None], 3, axis=2).astype(np.uint8)


def render_grid(
    images: np.ndarray,
    *,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    title: str | None = None,
    greyed_rows: Sequence[int] | None = None,
    markers: Sequence[Marker] | None = None,
    scale: int = DEFAULT_SCALE,
) -> Image.Image:
    """Draw ``images float [R, Cols, C, H, W]`` in [0, 1] as one RGB PIL image.

    Args:
        row_labels: R strings drawn left of each row.
        col_labels: Cols strings drawn above each column.
        title: one line above everything.
        greyed_rows: row indices drawn desaturated and faded (e.g. inactive latent dimensions).
        markers: ``(row, col, colour)`` triples; a square frame of that colour is drawn around the tile.
        scale: integer nearest-neighbour upscaling of each tile.
    """
    images = _check_images(images)
    n_rows, n_cols, _, height, width = images.shape
    if row_labels is not None and len(row_labels) != n_rows:
        raise FigureError(f"{len(row_labels)} row labels for {n_rows} rows")
    if col_labels is not None and len(col_labels) != n_cols:
        raise FigureError(f"{len(col_labels)} column labels for {n_cols} columns")
    if scale < 1:
        raise FigureError(f"scale must be a positive integer, got {scale}")
    greyed = set(int(r) for r in (greyed_rows or ()))
    font, title_font = _font(LABEL_FONT_PX), _font(TITLE_FONT_PX)

    tile_h, tile_w = height * scale, width * scale
    label_w = (
        max((_text_size(s, font)[0] for s in row_labels), default=0) + 2 * MARGIN_PX if row_labels else 0
    )
    col_label_h = LABEL_FONT_PX + 2 * MARGIN_PX if col_labels else 0
    title_h = TITLE_FONT_PX + 2 * MARGIN_PX if title else 0
    grid_w = n_cols * tile_w + (n_cols - 1) * GAP_PX
    total_w = max(
        MARGIN_PX + label_w + grid_w + MARGIN_PX, _text_size(title or "", title_font)[0] + 2 * MARGIN_PX
    )
    total_h = MARGIN_PX + title_h + col_label_h + n_rows * tile_h + (n_rows - 1) * GAP_PX + MARGIN_PX
    canvas = Image.new("RGB", (total_w, total_h), BACKGROUND)
    draw = ImageDraw.Draw(canvas)

    x0, y0 = MARGIN_PX + label_w, MARGIN_PX + title_h + col_label_h
    if title:
        draw.text((MARGIN_PX, MARGIN_PX), title, fill=TEXT_COLOUR, font=title_font)
    for c, text in enumerate(col_labels or ()):
        text_w, _ = _text_size(text, font)
        cx = x0 + c * (tile_w + GAP_PX) + (tile_w - text_w) // 2
        draw.text((cx, MARGIN_PX + title_h + MARGIN_PX // 2), text, fill=TEXT_COLOUR, font=font)
    for r in range(n_rows):
        top = y0 + r * (tile_h + GAP_PX)
        if row_labels:
            colour = GREYED_TEXT_COLOUR if r in greyed else TEXT_COLOUR
            draw.text((MARGIN_PX, top + (tile_h - LABEL_FONT_PX) // 2), row_labels[r], fill=colour, font=font)
        for c in range(n_cols):
            tile = to_uint8_hwc(images[r, c])
            if r in greyed:
                tile = _grey_out(tile)
            tile_image = Image.fromarray(tile, "RGB").resize((tile_w, tile_h), Image.Resampling.NEAREST)
            canvas.paste(tile_image, (x0 + c * (tile_w + GAP_PX), top))
    for r, c, colour in markers or ():
        if not (0 <= r < n_rows and 0 <= c < n_cols):
            raise FigureError(f"marker ({r}, {c}) is outside the {n_rows}x{n_cols} grid")
        left, top = x0 + c * (tile_w + GAP_PX), y0 + r * (tile_h + GAP_PX)
        draw.rectangle(
            (left, top, left + tile_w - 1, top + tile_h - 1), outline=colour, width=MARKER_WIDTH_PX
        )
    return canvas


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def save_grid(
    images: np.ndarray,
    path: str | Path,
    *,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    title: str | None = None,
    greyed_rows: Sequence[int] | None = None,
    markers: Sequence[Marker] | None = None,
    scale: int = DEFAULT_SCALE,
) -> Path:
    """Write ``images float [R, Cols, C, H, W]`` in [0, 1] as a labelled PNG grid (atomically).

    See :func:`render_grid` for the options. Returns ``path``.
    """
    canvas = render_grid(
        images,
        row_labels=row_labels,
        col_labels=col_labels,
        title=title,
        greyed_rows=greyed_rows,
        markers=markers,
        scale=scale,
    )
    atomic_write_bytes(path, png_bytes(canvas))
    return Path(path)


def gif_bytes(frames: Sequence[Image.Image] | np.ndarray, *, duration_ms: int, loop: int = 0) -> bytes:
    """Encode frames as an animated GIF.

    ``frames``: PIL images, or ``float [T, C, H, W]`` in [0, 1] (drawn at 2x with nearest upscaling).
    """
    if isinstance(frames, np.ndarray):
        if frames.ndim != 4:
            raise FigureError(f"GIF frames must be [T, C, H, W], got shape {list(frames.shape)}")
        frames = [render_grid(frame[None, None]) for frame in frames]
    frames = list(frames)
    if not frames:
        raise FigureError("a GIF needs at least one frame")
    if duration_ms <= 0:
        raise FigureError(f"GIF frame duration must be positive, got {duration_ms} ms")
    # A GIF has one canvas size: frames of different sizes (a title that is wider for "+3.0" than for
    # "-3.0") are padded with white to the largest, so no frame is cropped.
    width, height = max(f.width for f in frames), max(f.height for f in frames)
    if any(f.size != (width, height) for f in frames):
        padded = []
        for frame in frames:
            canvas = Image.new("RGB", (width, height), "white")
            canvas.paste(frame.convert("RGB"), (0, 0))
            padded.append(canvas)
        frames = padded
    # One shared adaptive palette keeps colours stable across frames (no flicker between frames).
    palette_image = _shared_palette([f.convert("RGB") for f in frames])
    paletted = [f.convert("RGB").quantize(palette=palette_image, dither=Image.Dither.NONE) for f in frames]
    buffer = io.BytesIO()
    paletted[0].save(
        buffer,
        format="GIF",
        save_all=True,
        append_images=paletted[1:],
        duration=duration_ms,
        loop=loop,
        disposal=1,
    )
    return buffer.getvalue()


def _shared_palette(frames: list[Image.Image], max_sampled: int = 8) -> Image.Image:
    """A 255-colour palette computed from up to ``max_sampled`` evenly spaced frames stacked together,
    so colours that appear only at one end of a traversal are still represented."""
    picks = np.unique(np.linspace(0, len(frames) - 1, min(max_sampled, len(frames))).round().astype(int))
    width, height = frames[0].size
    montage = Image.new("RGB", (width, height * len(picks)))
    for i, k in enumerate(picks):
        montage.paste(frames[k].resize((width, height)), (0, i * height))
    return montage.quantize(colors=255, method=Image.Quantize.MEDIANCUT)


def save_gif(frames: Sequence[Image.Image] | np.ndarray, path: str | Path, *, duration_ms: int = 150) -> Path:
    """Write an animated GIF (atomically); ``frames`` as in :func:`gif_bytes`. Returns ``path``."""
    atomic_write_bytes(path, gif_bytes(frames, duration_ms=duration_ms))
    return Path(path)


def hstack_images(panels: Sequence[Image.Image], *, gap_px: int = 4 * MARGIN_PX) -> Image.Image:
    """Paste PIL images side by side, top-aligned, on a white background (for comparisons)."""
    if not panels:
        raise FigureError("nothing to stack")
    width = sum(p.width for p in panels) + gap_px * (len(panels) - 1)
    canvas = Image.new("RGB", (width, max(p.height for p in panels)), BACKGROUND)
    x = 0
    for panel in panels:
        canvas.paste(panel.convert("RGB"), (x, 0))
        x += panel.width + gap_px
    return canvas
