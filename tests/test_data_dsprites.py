"""dSprites: the procedural renderer and index <-> factor mapping on small subsets, and the .npz loader."""

from __future__ import annotations

import numpy as np
import pytest

from factorlens.data import handcrafted_factors, load_dataset
from factorlens.data.dsprites import (
    FACTOR_SIZES,
    NUM_IMAGES,
    ORIENTATIONS_RAD,
    POSITION_OFFSET_PX,
    POSITION_RANGE_PX,
    POSITIONS,
    DSpritesSampler,
    factors_to_index,
    index_to_factors,
    unpack_images,
)
from factorlens.data.handcrafted import wrap_half_turn
from factorlens.errors import ConfigError, DataError

SQUARE, ELLIPSE, HEART = 0, 1, 2


def _factors(shape=SQUARE, scale=5, orientation=0, x=16, y=16, n=1):
    return np.tile(np.array([[shape, scale, orientation, x, y]], dtype=np.int64), (n, 1))


def test_index_factor_mapping_is_canonical_row_major():
    assert NUM_IMAGES == 737280
    indices = np.random.default_rng(0).integers(0, NUM_IMAGES, 500)
    factors = index_to_factors(indices)
    np.testing.assert_array_equal(factors_to_index(factors), indices)
    strides = np.array([6 * 40 * 32 * 32, 40 * 32 * 32, 32 * 32, 32, 1])
    np.testing.assert_array_equal(factors @ strides, indices)
    np.testing.assert_array_equal(index_to_factors([NUM_IMAGES - 1])[0], np.array(FACTOR_SIZES) - 1)


def test_images_are_binary_and_area_orders_shapes_and_scales():
    sampler = DSpritesSampler()
    factors = np.array([[shape, scale, 0, 16, 16] for shape in range(3) for scale in range(6)])
    images = sampler.render(factors)
    assert images.shape == (18, 1, 64, 64) and set(np.unique(images)) == {0, 255}
    area = (images > 0).sum(axis=(1, 2, 3)).reshape(3, 6)
    assert np.all(np.diff(area, axis=1) > 0)  # bigger scale, bigger sprite
    assert np.all(area[ELLIPSE] < area[HEART]) and np.all(area[HEART] < area[SQUARE])
    # Square at scale 1 is 20x20 px on the pixel grid; the 2:1 ellipse covers about pi * 10 * 5 px.
    assert area[SQUARE, 5] == 400
    assert abs(area[ELLIPSE, 5] - np.pi * 50) < 6


def test_orientation_wraps_and_ellipse_angle_is_measured():
    sampler = DSpritesSampler()
    for shape in range(3):
        first, last = sampler.render(
            np.vstack([_factors(shape, orientation=0), _factors(shape, orientation=39)])
        )
        np.testing.assert_array_equal(first, last)  # 0 and 2 pi are the same rotation
    orientations = np.arange(0, 40, 3)
    ellipses = sampler.render(np.vstack([_factors(ELLIPSE, orientation=k) for k in orientations]))
    measured = np.array([handcrafted_factors(image[0])[1] for image in ellipses])
    # regionprops' orientation is measured from the row axis: the dSprites angle (from x, y up) - pi/2.
    assert np.abs(wrap_half_turn(measured - (ORIENTATIONS_RAD[orientations] - np.pi / 2))).max() < 0.05


def test_centroid_is_the_position():
    sampler = DSpritesSampler()
    positions = [(0, 0), (31, 0), (5, 27), (31, 31)]
    for shape in (SQUARE, ELLIPSE):
        images = sampler.render(np.vstack([_factors(shape, 3, 7, x, y) for x, y in positions]))
        for image, (x, y) in zip(images, positions, strict=True):
            rows, cols = np.nonzero(image[0])
            expected = POSITION_OFFSET_PX + POSITION_RANGE_PX * POSITIONS[[x, y]]
            np.testing.assert_allclose([cols.mean() + 0.5, rows.mean() + 0.5], expected, atol=0.2)


def test_sampler_is_uniform_and_validates():
    factors = DSpritesSampler().sample_factors(30000, np.random.default_rng(0))
    for k, size in enumerate(FACTOR_SIZES):
        frequencies = np.bincount(factors[:, k], minlength=size) / 30000
        np.testing.assert_allclose(frequencies, 1 / size, atol=0.02)
    with pytest.raises(ConfigError, match="out of range"):
        DSpritesSampler().render(np.array([[3, 0, 0, 0, 0]]))


def test_packed_rows_unpack_to_the_rendered_images():
    factors = index_to_factors(np.arange(0, NUM_IMAGES, 9001))
    binary = DSpritesSampler.render_binary(factors)
    packed = np.packbits(binary.reshape(len(factors), -1), axis=1)
    np.testing.assert_array_equal(unpack_images(packed), DSpritesSampler().render(factors))


def test_real_npz_layout_is_loaded_without_the_colour_factor(tmp_path):
    latents = np.zeros((4, 6), dtype=np.int64)
    latents[:, 1:] = index_to_factors(np.array([0, 5, 77, 1000]))
    imgs = (DSpritesSampler().render(latents[:, 1:])[:, 0] // 255).astype(np.uint8)
    np.savez(tmp_path / "d.npz", imgs=imgs, latents_classes=latents)
    dataset = load_dataset(f"dsprites:{tmp_path / 'd.npz'}", progress=False)
    np.testing.assert_array_equal(dataset.factors, latents[:, 1:])
    np.testing.assert_array_equal(dataset.images[:, 0], imgs * 255)
    assert dataset.factor_names == ["shape", "scale", "orientation", "posX", "posY"]
    assert dataset.sampler is None  # a partial grid cannot answer arbitrary factors
    np.savez(tmp_path / "bad.npz", imgs=imgs)
    with pytest.raises(DataError, match="bad.npz: missing array.*latents_classes"):
        load_dataset(f"dsprites:{tmp_path / 'bad.npz'}", progress=False)
    with pytest.raises(ConfigError, match="takes a .npz"):
        load_dataset(f"dsprites:{tmp_path}", progress=False)
