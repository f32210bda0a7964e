"""synthetic-lesions: determinism, and that images, masks and factors agree with the generative model."""

from __future__ import annotations

import numpy as np
import pytest

from factorlens.data import handcrafted_factors, load_dataset
from factorlens.data.handcrafted import wrap_half_turn
from factorlens.data.synthetic import (
    AXIS_RATIO,
    EQUIVALENT_RADIUS_PX,
    FACTOR_NAMES,
    HAM10000_CLASS_COUNTS,
    ORIENTATION_RAD,
    POSITION_PX,
    SyntheticLesionSampler,
    allocate_class_counts,
    dataset_noise_seeds,
    generate_synthetic_lesions,
)
from factorlens.errors import ConfigError

LUMA = np.array([0.299, 0.587, 0.114])
F = {name: k for k, name in enumerate(FACTOR_NAMES)}


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FACTORLENS_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def lesions():
    return generate_synthetic_lesions(400, seed=3)


def _base_factors(n: int) -> np.ndarray:
    """Centred, round, smooth-bordered, mid-size lesions (varied one factor at a time by the tests)."""
    factors = np.zeros((n, len(FACTOR_NAMES)), dtype=np.int64)
    factors[:, F["size"]] = 3
    factors[:, F["position_x"]] = factors[:, F["position_y"]] = 2
    factors[:, F["lesion_colour"]] = 3
    factors[:, F["skin_tone"]] = 1
    return factors


def test_generation_is_deterministic_and_seed_dependent(lesions):
    again = generate_synthetic_lesions(400, seed=3)
    np.testing.assert_array_equal(again.images, lesions.images)
    np.testing.assert_array_equal(again.factors, lesions.factors)
    np.testing.assert_array_equal(again.labels, lesions.labels)
    other = generate_synthetic_lesions(400, seed=4)
    assert (other.factors != lesions.factors).any()


def test_load_dataset_caches_and_matches_generation(lesions):
    first = load_dataset("synthetic-lesions:n=400,seed=3", progress=False)
    second = load_dataset("synthetic-lesions:n=400,seed=3", progress=False)
    for dataset in (first, second):
        np.testing.assert_array_equal(dataset.images, lesions.images)
        np.testing.assert_array_equal(dataset.masks, lesions.masks)
        np.testing.assert_allclose(dataset.handcrafted, lesions.handcrafted)
        assert dataset.sampler is not None and dataset.class_names[0] == "MEL"
    np.testing.assert_array_equal(first.groups, np.arange(400))


def test_sampler_reproduces_dataset_images_from_factors_and_seeds(lesions):
    sampler = SyntheticLesionSampler()
    rows = np.array([0, 5, 77, 399])
    images, masks = sampler.render_with_masks(lesions.factors[rows], dataset_noise_seeds(3, 400)[rows])
    np.testing.assert_array_equal(images, lesions.images[rows])
    np.testing.assert_array_equal(masks, lesions.masks[rows])
    # Default seeds depend only on the factor values: equal factors, equal images.
    np.testing.assert_array_equal(
        sampler.render(lesions.factors[rows]), sampler.render(lesions.factors[rows])
    )


def test_handcrafted_matches_masks(lesions):
    for i in range(0, 400, 37):
        np.testing.assert_allclose(lesions.handcrafted[i], handcrafted_factors(lesions.masks[i]))
    assert lesions.notes["empty_masks"] == 0


def test_mask_area_follows_size_factor_and_closed_form():
    factors = _base_factors(6)
    factors[:, F["size"]] = np.arange(6)
    _, masks = SyntheticLesionSampler().render_with_masks(factors)
    areas = masks.sum(axis=(1, 2))
    assert np.all(np.diff(areas) > 0)
    # Exactly the pixel centres inside the disc of the level's radius (an independent lattice count).
    centres = np.arange(64) + 0.5
    distance_sq = (centres[None, :] - POSITION_PX[2]) ** 2 + (centres[:, None] - POSITION_PX[2]) ** 2
    expected = [(distance_sq <= radius**2).sum() for radius in EQUIVALENT_RADIUS_PX]
    np.testing.assert_array_equal(areas, expected)
    np.testing.assert_allclose(areas, np.pi * EQUIVALENT_RADIUS_PX**2, rtol=0.07)


def test_mask_centroid_follows_position():
    factors = _base_factors(25)
    factors[:, F["position_x"]] = np.repeat(np.arange(5), 5)
    factors[:, F["position_y"]] = np.tile(np.arange(5), 5)
    _, masks = SyntheticLesionSampler().render_with_masks(factors)
    for mask, fx, fy in zip(masks, factors[:, F["position_x"]], factors[:, F["position_y"]], strict=True):
        rows, cols = np.nonzero(mask)
        assert abs(cols.mean() + 0.5 - POSITION_PX[fx]) < 0.15
        assert abs(rows.mean() + 0.5 - POSITION_PX[fy]) < 0.15


def test_measured_orientation_and_eccentricity_follow_factors():
    factors = _base_factors(8 * 2)
    factors[:, F["size"]] = 5
    factors[:, F["orientation"]] = np.tile(np.arange(8), 2)
    factors[:, F["eccentricity"]] = np.repeat([3, 4], 8)
    _, masks = SyntheticLesionSampler().render_with_masks(factors)
    measured = np.stack([handcrafted_factors(mask) for mask in masks])
    # regionprops measures from the row axis: the drawn angle (from x, y up) minus pi/2, modulo pi.
    expected_angle = ORIENTATION_RAD[factors[:, F["orientation"]]] - np.pi / 2
    angle_error = np.abs(wrap_half_turn(measured[:, 1] - expected_angle))
    assert angle_error.max() < 0.03
    expected_ecc = np.sqrt(1 - AXIS_RATIO[factors[:, F["eccentricity"]]] ** 2)
    np.testing.assert_allclose(measured[:, 0], expected_ecc, atol=0.02)


def test_lesion_is_darker_than_skin_and_darkens_with_colour_level():
    factors = _base_factors(5)
    factors[:, F["lesion_colour"]] = np.arange(5)
    images, masks = SyntheticLesionSampler().render_with_masks(factors)
    luma = np.einsum("c,nchw->nhw", LUMA, images.astype(np.float64))
    inside = np.array([luma[i][masks[i] == 1].mean() for i in range(5)])
    outside = np.array([luma[i][masks[i] == 0].mean() for i in range(5)])
    assert np.all(inside < outside - 10)
    assert np.all(np.diff(inside) < 0)


def test_class_frequencies_and_shifts():
    np.testing.assert_array_equal(allocate_class_counts(10015), HAM10000_CLASS_COUNTS)
    assert allocate_class_counts(997).sum() == 997
    sampler = SyntheticLesionSampler()
    labels = np.repeat(np.arange(7), 4000)
    factors = sampler.sample_factors_for_classes(labels, np.random.default_rng(0))
    table = sampler.class_level_probabilities()
    for c in range(7):
        for k, size in enumerate(sampler.factor_sizes):
            observed = np.bincount(factors[labels == c, k], minlength=size) / 4000
            np.testing.assert_allclose(observed, table[c, k, :size], atol=0.03)
    mel, nv, vasc = 0, 1, 6
    mean = {c: factors[labels == c].mean(axis=0) for c in (mel, nv, vasc)}
    assert mean[mel][F["size"]] > mean[nv][F["size"]] + 1.5
    assert mean[mel][F["border_irregularity"]] > mean[nv][F["border_irregularity"]] + 1
    assert mean[mel][F["lesion_colour"]] > mean[nv][F["lesion_colour"]]
    assert np.bincount(factors[labels == vasc, F["lesion_colour"]]).argmax() == 0  # pink-red
    assert mean[nv][F["eccentricity"]] < mean[mel][F["eccentricity"]]


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError,
                       match=r"unknown key synthetic-lesions\.colour .*allowed: n, seed, size, factors"):
        load_dataset("synthetic-lesions:colour=3", progress=False)
    with pytest.raises(ConfigError, match=r"synthetic-lesions\.size in .* must be one of 32, 64, 128, got 3"):
        load_dataset("synthetic-lesions:size=3", progress=False)
    with pytest.raises(ConfigError, match="must be an integer, got 'ten'"):
        load_dataset("synthetic-lesions:n=ten", progress=False)
    with pytest.raises(ConfigError, match=r"synthetic-lesions\.n in .* must be >= 1"):
        load_dataset("synthetic-lesions:n=0", progress=False)
    with pytest.raises(ConfigError, match="out of range"):
        SyntheticLesionSampler().render(np.full((1, 8), 6))
    with pytest.raises(ConfigError,
                       match=r"synthetic-lesions\.factors in .* must be one of mixture, independent"):
        load_dataset("synthetic-lesions:factors=uniform", progress=False)


def test_independent_factors_are_uniform_and_uncorrelated_where_the_mixture_correlates_them(tmp_path,
                                                                                            monkeypatch):
    monkeypatch.setenv("FACTORLENS_CACHE", str(tmp_path))
    mixture = load_dataset("synthetic-lesions:n=3000,seed=2", progress=False)
    independent = load_dataset("synthetic-lesions:n=3000,seed=2,factors=independent", progress=False)
    assert independent.spec == "synthetic-lesions:n=3000,seed=2,factors=independent"
    size, colour = F["size"], F["lesion_colour"]
    mixed = np.corrcoef(mixture.factors[:, size], mixture.factors[:, colour])[0, 1]
    free = np.corrcoef(independent.factors[:, [size, colour, F["eccentricity"]]].T)
    assert mixed > 0.15  # the class mixture ties size to pigment
    assert np.abs(free - np.eye(3)).max() < 0.06  # |r| of 3,000 independent draws: sd ~ 0.018
    for k, levels in enumerate(independent.factor_sizes):
        np.testing.assert_allclose(np.bincount(independent.factors[:, k], minlength=levels) / 3000,
                                   1 / levels, atol=0.04)
    drawn = independent.sampler.sample_factors(4000, np.random.default_rng(0))
    assert abs(np.corrcoef(drawn[:, size], drawn[:, colour])[0, 1]) < 0.06
    # the images are those of the factors (the same renderer)
    np.testing.assert_array_equal(
        independent.sampler.render(independent.factors[:5], dataset_noise_seeds(2, 3000)[:5]),
        independent.images[:5])
