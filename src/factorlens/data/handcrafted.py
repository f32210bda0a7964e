"""Handcrafted lesion factors measured on a binary mask (Sarhan et al. 2019, "MIG handcrafted").

The same function serves the real masks (at their original resolution) and the synthetic lesions, so the
two are directly comparable.
"""

from __future__ import annotations

import numpy as np
from skimage.measure import label, regionprops

from factorlens.data.base import HANDCRAFTED_FACTOR_NAMES

__all__ = ["HANDCRAFTED_FACTOR_NAMES", "handcrafted_factors", "wrap_half_turn"]


def wrap_half_turn(angle: np.ndarray | float) -> np.ndarray | float:
    """Wrap an axis angle (radians) into ``(-pi/2, pi/2]``: an axis has no direction, so theta == theta+pi."""
    wrapped = np.pi / 2 - np.mod(np.pi / 2 - np.asarray(angle, dtype=np.float64), np.pi)
    return float(wrapped) if np.ndim(wrapped) == 0 else wrapped


def handcrafted_factors(mask: np.ndarray) -> np.ndarray:
    """``float64 [3]``: eccentricity, orientation, size of the largest connected lesion component.

    Args:
        mask: ``[H, W]`` array, nonzero = lesion (any size; 8-connectivity).

    Returns:
        ``[eccentricity in [0, 1), orientation in radians, size]`` where orientation is the angle of the
        major axis from the image x axis (columns), counter-clockwise with y pointing up, in
        ``(-pi/2, pi/2]``, and size is the component's area as a fraction of the ``H * W`` mask. All NaN
        when the mask is empty.
    """
    binary = np.asarray(mask) != 0
    if binary.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {binary.shape}")
    if not binary.any():
        return np.full(3, np.nan)
    components = regionprops(label(binary, connectivity=2))
    largest = max(components, key=lambda region: region.area)
    # skimage measures the angle from the row axis (pointing down); +pi/2 turns it into the angle from the
    # x axis with y up, the convention used by the synthetic generator and the direction oracles.
    orientation = wrap_half_turn(largest.orientation + np.pi / 2)
    return np.array(
        [float(largest.eccentricity), orientation, float(largest.area) / binary.size], dtype=np.float64
    )
