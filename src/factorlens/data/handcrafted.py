"""Handcrafted lesion factors measured on a binary mask (Sarhan et al. 2019, "MIG handcrafted").

The same function serves the real masks (at their original resolution) and the synthetic lesions, so the
two are directly comparable.
"""

from __future__ import annotations

import numpy as np
from skimage.measure import label

from factorlens.data.base import HANDCRAFTED_FACTOR_NAMES

__all__ = ["HANDCRAFTED_FACTOR_NAMES", "handcrafted_factors", "wrap_half_turn"]


def wrap_half_turn(angle: np.ndarray | float) -> np.ndarray | float:
    """Wrap an axis angle (radians) into ``(-pi/2, pi/2]``: an axis has no direction, so theta == theta+pi."""
    wrapped = np.pi / 2 - np.mod(np.pi / 2 - np.asarray(angle, dtype=np.float64), np.pi)
    return float(wrapped) if np.ndim(wrapped) == 0 else wrapped


def handcrafted_factors(mask: np.ndarray) -> np.ndarray:
    """``float64 [3]``: eccentricity, orientation, size of the largest connected lesion component.

    Components come from ``skimage.measure.label`` (8-connectivity); eccentricity and orientation are
    those of the ellipse with the component's second moments, with ``skimage.measure.regionprops``'
    definitions — the paper's tool, and the orientation convention decides which images fall on each
    side of its median split — computed directly (10x faster; tests compare with regionprops).

    Args:
        mask: ``[H, W]`` array, nonzero = lesion (any size; 8-connectivity).

    Returns:
        ``[eccentricity in [0, 1), orientation in radians, size]`` where orientation is regionprops':
        the angle between the row axis (axis 0) and the major axis, in ``[-pi/2, pi/2]`` (a lesion whose
        major axis runs along the columns is at +-pi/2, one along the rows at 0), and size is the
        component's area as a fraction of the ``H * W`` mask. All NaN when the mask is empty.
    """
    binary = np.asarray(mask) != 0
    if binary.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {binary.shape}")
    if not binary.any():
        return np.full(3, np.nan)
    components = label(binary, connectivity=2)
    sizes = np.bincount(components.ravel())
    sizes[0] = 0  # background
    rows, cols = np.nonzero(components == np.argmax(sizes))
    area = len(rows)
    # The component's second central moments (pixel units): regionprops derives eccentricity and
    # orientation from the same three numbers; tests check that both agree.
    d_row, d_col = rows - rows.mean(), cols - cols.mean()
    var_row, var_col, cov = (d_row**2).mean(), (d_col**2).mean(), (d_row * d_col).mean()
    half_spread = np.sqrt(((var_row - var_col) / 2) ** 2 + cov**2)
    major, minor = (var_row + var_col) / 2 + half_spread, (var_row + var_col) / 2 - half_spread
    eccentricity = np.sqrt(1 - minor / major) if major > 0 else 0.0
    # regionprops' orientation (skimage 0.26: 0.5 * atan2(-2 b, c - a) on the inertia tensor
    # [[a, b], [b, c]] = [[var_col, -cov], [-cov, var_row]], +-pi/4 when a == c).
    if var_col == var_row:
        orientation = np.pi / 4 if cov > 0 else -np.pi / 4
    else:
        orientation = 0.5 * np.arctan2(2 * cov, var_row - var_col)
    return np.array([float(eccentricity), orientation, area / binary.size], dtype=np.float64)
