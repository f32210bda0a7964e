"""Decoding and the geometric transform shared by every image loader.

Images: any PIL-readable file -> RGB (CMYK, greyscale, palette, RGBA and 16-bit handled) -> centre crop
to a square -> 64x64 by area averaging (``Image.BOX``); crops smaller than 64 px are upsampled (bicubic).
Masks: any PNG encoding -> luminance in [0, 1] -> ``> 0.5`` -> the *same fractional* crop as the image
(so a 600x450 mask of a 200x150 image is cut identically) -> 64x64 area average -> ``>= 0.5``.
Handcrafted factors are measured on the whole mask at its original resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from factorlens.data.base import IMAGE_SIZE
from factorlens.data.handcrafted import handcrafted_factors

# What PIL raises on a zero-byte, truncated, non-image or oversized file.
DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)

_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
# A mask is cut with the image's fractional crop, so any resolution works, but its aspect ratio must be
# the image's (up to rounding when one of them was downscaled): otherwise it belongs to another image.
ASPECT_TOLERANCE = 0.02


@dataclass(frozen=True)
class CropBox:
    """The centre-square crop as fractions of width and height: ``(left, top, right, bottom)`` in [0, 1]."""

    left: float
    top: float
    right: float
    bottom: float

    @classmethod
    def centre_square(cls, width: int, height: int) -> CropBox:
        side = min(width, height)
        dx, dy = (width - side) / (2 * width), (height - side) / (2 * height)
        return cls(dx, dy, 1 - dx, 1 - dy)

    def pixels(self, width: int, height: int) -> tuple[float, float, float, float]:
        return (self.left * width, self.top * height, self.right * width, self.bottom * height)


def open_image(path: str) -> Image.Image:
    """Open and fully decode ``path`` (so truncation is detected here, not later)."""
    with Image.open(path) as handle:
        handle.load()
        return handle.copy()


def luminance(image: Image.Image) -> np.ndarray:
    """``float32 [H, W]`` luminance in [0, 1] for any mode (palette, 1-bit, greyscale, RGB(A), 16-bit)."""
    if image.mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(image, dtype=np.float32)
        if image.mode != "I":
            return values / 65535.0  # 'I;16*' is 16-bit data even when it is all dark (<= 255)
        # 'I' also holds 8-bit data opened as 32-bit; only rescale when values exceed 8 bits.
        return values / (65535.0 if values.max(initial=0) > 255 else 255.0)
    if image.mode == "F":
        return np.clip(np.asarray(image, dtype=np.float32), 0, 1)
    return np.asarray(image.convert("L"), dtype=np.float32) / 255.0


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any mode to 8-bit RGB (16-bit greyscale is rescaled, not clipped)."""
    if image.mode == "RGB":
        return image
    if image.mode in _SIXTEEN_BIT_MODES or image.mode == "F":
        grey = Image.fromarray(np.rint(luminance(image) * 255).astype(np.uint8))
        return grey.convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Composite onto white: transparent background is paper, not black skin.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def preprocess_image(image: Image.Image, size: int = IMAGE_SIZE, channels: int = 3
                     ) -> tuple[np.ndarray, CropBox, bool]:
    """``uint8 [channels, size, size]`` (3: RGB; 1: the luminance of that RGB, ``L``), the crop used, and
    whether the crop was upsampled (side < size)."""
    rgb = to_rgb(image)
    crop = CropBox.centre_square(*rgb.size)
    side = min(rgb.size)
    upsampled = side < size
    resample = Image.Resampling.BICUBIC if upsampled else Image.Resampling.BOX
    small = rgb.resize((size, size), resample, box=crop.pixels(*rgb.size))
    if channels == 1:
        return np.asarray(small.convert("L"), dtype=np.uint8)[None].copy(), crop, upsampled
    return np.asarray(small, dtype=np.uint8).transpose(2, 0, 1).copy(), crop, upsampled


def mask_to_grid(mask: np.ndarray, crop: CropBox, size: int = IMAGE_SIZE) -> np.ndarray:
    """``uint8 [size, size]`` (0/1): the binary ``[H, W]`` mask cut by ``crop`` (fractions), area-averaged."""
    height, width = mask.shape
    as_float = Image.fromarray(mask.astype(np.float32), mode="F")
    small = as_float.resize((size, size), Image.Resampling.BOX, box=crop.pixels(width, height))
    return (np.asarray(small) >= 0.5).astype(np.uint8)


@dataclass
class DecodedItem:
    """One decoded (image, mask) pair; ``*_error`` holds the decoder's message when a file is unusable."""

    image: np.ndarray | None = None
    mask: np.ndarray | None = None
    handcrafted: np.ndarray | None = None
    upsampled: bool = False
    image_error: str | None = None
    mask_error: str | None = None


def decode_item(task: tuple) -> DecodedItem:
    """Decode one image and its optional mask (runs in worker processes; errors come back as text).

    Handcrafted factors are NaN when there is no mask or it is unreadable; a readable but empty mask also
    gives NaN (the caller counts it).
    """
    image_path, mask_path, *shape = task  # shape: optional (size, channels)
    size, channels = shape if shape else (IMAGE_SIZE, 3)
    item = DecodedItem(handcrafted=np.full(3, np.nan))
    try:
        image = open_image(image_path)
        image_size = image.size
        item.image, crop, item.upsampled = preprocess_image(image, size, channels)
    except DECODE_ERRORS as error:
        item.image_error = f"{type(error).__name__}: {error}"
        return item
    if mask_path is not None:
        try:
            mask_image = open_image(mask_path)
            mask = luminance(mask_image) > 0.5
        except DECODE_ERRORS as error:
            item.mask_error = f"{type(error).__name__}: {error}"
            return item
        image_w, image_h = image_size
        mask_w, mask_h = mask_image.size
        # An empty mask has no geometry to misplace: it is counted as empty whatever its size.
        if mask.any() and abs((mask_w / mask_h) / (image_w / image_h) - 1) > ASPECT_TOLERANCE:
            item.mask_error = (
                f"mask is {mask_w}x{mask_h} but its image is {image_w}x{image_h} (another aspect ratio)"
            )
            return item
        item.mask = mask_to_grid(mask, crop, size)
        item.handcrafted = handcrafted_factors(mask)
    return item
