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
    those of the ellipse with the component's second moments, i.e. the values of
    ``skimage.measure.regionprops`` (computed directly, 10x faster).

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
    # Angle of the major axis from the x axis (columns) with y pointing up (rows grow downwards, hence the
    # minus on the covariance), wrapped into (-pi/2, pi/2].
    orientation = wrap_half_turn(0.5 * np.arctan2(-2 * cov, var_col - var_row))
    return np.array([float(eccentricity), orientation, area / binary.size], dtype=np.float64)
