"""Direction discovery on a planted-direction phantom whose true directions are known exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from factorlens.directions import DIRECTION_METHODS, DirectionSet, GeneratorAdapter, discover_directions
from factorlens.directions.scores import direction_mig, modularity, rca_comparison, score_directions
from factorlens.directions.voynov import OrthoDeformator
from factorlens.errors import CheckpointError, ConfigError


def matched_cosines(directions: DirectionSet, planted: torch.Tensor) -> np.ndarray:
    """|cos| between each planted direction and its Hungarian-matched found direction."""
    cos = np.abs(directions.unit_matrix() @ planted.numpy().T)
    rows, cols = linear_sum_assignment(-cos)
    return cos[rows, cols]


def test_registry_lists_the_methods() -> None:
    assert {"sefa", "pca", "voynov", "axes", "random"} <= set(DIRECTION_METHODS.names())
    with pytest.raises(ConfigError, match="unknown direction method 'nope'"):
        DIRECTION_METHODS.get("nope")


def test_sefa_recovers_planted_directions_in_eigenvalue_order(adapter, phantom) -> None:
    found = discover_directions(adapter, "sefa", k=4)
    # units per factor are 4, 3, 2, 1 -> the eigenvalues, and the planted rows in that order
    np.testing.assert_allclose(found.extras["eigenvalues"], [4, 3, 2, 1], atol=1e-5)
    cos = np.abs(np.sum(found.unit_matrix() * phantom.planted.numpy(), axis=1))
    np.testing.assert_allclose(cos, 1.0, atol=1e-5)


def test_pca_recovers_planted_directions_and_posterior_sigmas(adapter, phantom) -> None:
    found = discover_directions(adapter, "pca", k=4)
    assert matched_cosines(found, phantom.planted).min() >= 0.98
    # scales are the posterior stds along the planted rows (2.0, 1.6, 1.3, 1.0) up to sampling error
    np.testing.assert_allclose(found.scales, [2.0, 1.6, 1.3, 1.0], rtol=0.08)


def test_voynov_ortho_recovers_planted_directions(adapter, phantom) -> None:
    found = discover_directions(adapter, "voynov", steps=400, seed=0, deformator="ortho")
    assert found.num_directions == 4  # k defaults to the active subspace (4 planted of 8 dims)
    assert matched_cosines(found, phantom.planted).min() >= 0.9
    assert found.extras["rca"] >= 0.9


def test_ortho_deformator_stays_orthonormal() -> None:
    deformator = OrthoDeformator(6, 6, torch.Generator().manual_seed(0))
    with torch.no_grad():
        deformator.log_half.mul_(20.0)  # far from the identity
    rows = deformator.directions()
    torch.testing.assert_close(rows @ rows.T, torch.eye(6), atol=1e-5, rtol=0)
    with pytest.raises(ConfigError, match="k = active latent dim"):
        OrthoDeformator(6, 3, torch.Generator())


def test_baseline_deformators_are_not_trained(adapter) -> None:
    identity = discover_directions(adapter, "voynov", k=3, steps=5, deformator="identity")
    np.testing.assert_array_equal(identity.matrix, np.eye(8)[:3])
    random = discover_directions(adapter, "voynov", k=4, steps=5, deformator="random", seed=3)
    np.testing.assert_allclose(random.matrix @ random.matrix.T, np.eye(4), atol=1e-5)


def test_linear_deformator_keeps_its_trained_step_size(adapter) -> None:
    # Trained with shifts eps * mean posterior sigma * A e_k: one unit of shift is that vector.
    found = discover_directions(adapter, "voynov", steps=5, deformator="linear", seed=0)
    mean_sigma = np.sqrt(np.diag(adapter.base_covariance().numpy()).mean())
    np.testing.assert_allclose(found.scales, mean_sigma * np.linalg.norm(found.matrix, axis=1), rtol=1e-5)
    np.testing.assert_allclose(found.shift_vectors(), mean_sigma * found.matrix, rtol=1e-4, atol=1e-6)


def test_rca_is_higher_for_planted_directions_than_for_random(adapter, phantom) -> None:
    planted = DirectionSet(
        phantom.planted.numpy(), adapter.direction_scales(phantom.planted.numpy()), "planted"
    )
    rca = rca_comparison(adapter, planted, steps=250, seed=0)
    assert rca["chance"] == 0.25
    assert rca["directions"] >= 0.9
    assert rca["directions"] >= rca["random"] + 0.1  # measured: 0.99 vs 0.81


def test_pooled_rca_tells_planted_from_random_and_identical_rows_sit_at_chance(adapter, phantom) -> None:
    from factorlens.directions.voynov import cached_reconstructor_accuracies

    planted = DirectionSet(
        phantom.planted.numpy(), adapter.direction_scales(phantom.planted.numpy()), "planted"
    )
    rca = rca_comparison(adapter, planted, steps=250, seed=0, pairs=512)
    assert (rca["estimator"], rca["pairs"], rca["eval_pairs"]) == ("pool", 512, 128)
    assert rca["directions"] >= 0.95 and rca["directions"] >= rca["random"] + 0.05  # measured 0.977, 0.891
    # K copies of one direction: the pair says nothing about k, so held-out accuracy is about 1/K
    same = np.repeat(phantom.planted.numpy()[:1], 4, axis=0)
    first = cached_reconstructor_accuracies(adapter, {"same": same, "planted": planted.matrix}, pairs=512,
                                            eval_pairs=256, steps=250, seed=0)
    assert abs(first["same"] - 0.25) < 0.1 and first["planted"] >= 0.9
    again = cached_reconstructor_accuracies(adapter, {"same": same, "planted": planted.matrix}, pairs=512,
                                            eval_pairs=256, steps=250, seed=0)
    assert again == first  # deterministic
    assert rca_comparison(adapter, planted, steps=1, seed=0)["estimator"] == "online"
    with pytest.raises(ConfigError, match="same number of directions"):
        cached_reconstructor_accuracies(adapter, {"a": same, "b": same[:2]}, pairs=8, eval_pairs=8, steps=1,
                                        seed=0)


def test_pooled_rca_on_the_normalised_difference(adapter, phantom) -> None:
    from factorlens.directions.voynov import cached_reconstructor_accuracies

    planted = phantom.planted.numpy()
    same = np.repeat(planted[:1], 4, axis=0)
    seen = cached_reconstructor_accuracies(adapter, {"same": same, "planted": planted}, pairs=512,
                                           eval_pairs=256, steps=250, seed=0, input_kind="difference")
    assert abs(seen["same"] - 0.25) < 0.1 and seen["planted"] >= 0.9
    rca = rca_comparison(adapter, DirectionSet(planted, adapter.direction_scales(planted), "planted"),
                         steps=1, seed=0, pairs=8, input_kind="difference")
    assert rca["input"] == "difference" and rca["estimator"] == "pool"
    with pytest.raises(ConfigError, match="reconstructor input 'sum'"):
        cached_reconstructor_accuracies(adapter, {"a": same}, pairs=8, eval_pairs=8, steps=1, seed=0,
                                        input_kind="sum")


def test_effect_matrix_of_planted_directions_is_diagonal(adapter, phantom) -> None:
    planted = phantom.planted.numpy()
    names = ["spot0", "spot1", "spot2", "spot3"]
    exact = DirectionSet(planted, adapter.direction_scales(planted), "planted")
    scores = score_directions(adapter, exact, phantom.read_factors, names, num_codes=16)
    off_diagonal = scores.effect[~np.eye(4, dtype=bool)]
    assert off_diagonal.max() < 0.02 * scores.effect.diagonal().min()
    assert scores.direction_mig > 0.95 and scores.modularity > 0.95
    np.testing.assert_array_equal(scores.effect.argmax(axis=0), [0, 1, 2, 3])
    # Hadamard mixtures move every spot at once: no factor has a clear direction
    hadamard = np.array([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]]) / 2.0 @ planted
    mixed = score_directions(
        adapter,
        DirectionSet(hadamard, adapter.direction_scales(hadamard), "mixed"),
        phantom.read_factors,
        names,
    )
    assert mixed.direction_mig < 0.3 and mixed.modularity < 0.3


def test_direction_mig_and_modularity_known_values() -> None:
    effect = np.array([[3.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    mig, gaps = direction_mig(effect)
    np.testing.assert_allclose(gaps, [0.5, 1.0])
    assert mig == pytest.approx(0.75)
    assert modularity(effect) == pytest.approx(1.0)
    assert modularity(np.array([[1.0, 1.0]])) == pytest.approx(0.0)


def test_direction_set_roundtrip_and_errors(tmp_path) -> None:
    rng = np.random.default_rng(0)
    original = DirectionSet(
        rng.standard_normal((3, 5)),
        np.array([1.0, 2.0, 3.0]),
        "pca",
        {"space": "posterior"},
        7,
        ["a", "", "c"],
    )
    original.save(tmp_path / "set", figures={"grid.png": "traversal"})
    loaded = DirectionSet.load(tmp_path / "set")
    np.testing.assert_array_equal(loaded.matrix, original.matrix)
    np.testing.assert_array_equal(loaded.scales, original.scales)
    assert (loaded.method, loaded.params, loaded.seed, loaded.labels) == (
        "pca",
        {"space": "posterior"},
        7,
        ["a", "", "c"],
    )
    assert DirectionSet.read_figures(tmp_path / "set") == {"grid.png": "traversal"}
    with pytest.raises(CheckpointError, match="missing direction file"):
        DirectionSet.load(tmp_path / "absent")
    (tmp_path / "set" / "directions.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="corrupted direction matrix"):
        DirectionSet.load(tmp_path / "set")
    original.save(tmp_path / "set")
    (tmp_path / "set" / "directions.json").write_text("{broken")
    with pytest.raises(CheckpointError, match="corrupted direction metadata"):
        DirectionSet.load(tmp_path / "set")
    json.dumps(original.extras)  # extras stay JSON-serialisable


def test_unknown_option_is_a_one_line_config_error(adapter) -> None:
    with pytest.raises(ConfigError, match=r"unknown key option\.bogus in discover_directions\(\)"):
        discover_directions(adapter, "sefa", bogus=1)
    with pytest.raises(ConfigError, match="at most 8 directions"):
        discover_directions(adapter, "pca", k=9)


def test_kmeans_directions_recover_the_directions_of_clustered_codes() -> None:
    rng = np.random.default_rng(0)
    true = np.linalg.qr(rng.standard_normal((6, 3)))[0].T  # 3 orthonormal directions in d = 6
    cluster = rng.integers(0, 3, size=900)
    codes = true[cluster] * rng.uniform(1.0, 3.0, size=(900, 1)) + 0.05 * rng.standard_normal((900, 6))
    adapter = GeneratorAdapter(lambda z: z.view(-1, 1, 2, 3), 6, posterior_codes=codes)
    found = discover_directions(adapter, "kmeans", k=3, seed=0)
    assert found.method == "kmeans" and sorted(found.extras["cluster_sizes"], reverse=True) == \
        found.extras["cluster_sizes"]
    assert matched_cosines(found, torch.as_tensor(true)).min() > 0.99


def test_axial_kmeans_finds_every_line_of_sign_symmetric_codes_where_spherical_wastes_clusters() -> None:
    # Codes along 3 lines, both signs (like a VAE's codes, symmetric about 0).
    rng = np.random.default_rng(1)
    true = np.linalg.qr(rng.standard_normal((6, 3)))[0].T
    line = rng.integers(0, 3, size=1200)
    sign = rng.choice([-1.0, 1.0], size=(1200, 1))
    codes = true[line] * sign * rng.uniform(1.0, 3.0, size=(1200, 1)) + 0.05 * rng.standard_normal((1200, 6))
    adapter = GeneratorAdapter(lambda z: z.view(-1, 1, 2, 3), 6, posterior_codes=codes)
    axial = discover_directions(adapter, "kmeans", k=3, seed=0)
    assert axial.params["kind"] == "axial"
    assert matched_cosines(axial, torch.as_tensor(true)).min() > 0.99
    spherical = discover_directions(adapter, "kmeans", k=3, seed=0, kind="spherical")
    # Three rays cannot cover six half-lines: at least one line is missed (|cos| far below 1).
    assert matched_cosines(spherical, torch.as_tensor(true)).min() < 0.9


def test_kmeans_may_be_overcomplete() -> None:
    # d = 2, codes on 4 lines at 0, 45, 90 and 135 degrees: K = 4 > d recovers all four.
    rng = np.random.default_rng(2)
    angles = np.deg2rad([0.0, 45.0, 90.0, 135.0])
    true = np.c_[np.cos(angles), np.sin(angles)]
    picked = rng.integers(0, 4, size=800)
    codes = true[picked] * rng.choice([-1.0, 1.0], size=(800, 1)) * rng.uniform(1, 2, size=(800, 1))
    codes = codes + 0.02 * rng.standard_normal(codes.shape)
    adapter = GeneratorAdapter(lambda z: z.view(-1, 1, 1, 2), 2, posterior_codes=codes)
    found = discover_directions(adapter, "kmeans", k=4, seed=0)
    assert found.num_directions == 4
    cosines = np.abs(found.unit_matrix() @ true.T)
    assert cosines.max(axis=0).min() > 0.99


def test_two_alternative_choice_known_values() -> None:
    from factorlens.directions.scores import _two_alternative_choice

    # Each query is similar (1) to its own side's references and dissimilar (0) to the others: after the
    # joint z-score every entry is +-1, right = 1 + 1, swapped = -1 - 1, p = sigmoid(4).
    separated = np.zeros((18, 2))
    separated[:9, 0] = separated[9:, 1] = 1.0
    assert _two_alternative_choice(separated, 9) == pytest.approx(1 / (1 + np.exp(-4.0)))
    assert _two_alternative_choice(separated[:, ::-1].copy(), 9) == pytest.approx(1 / (1 + np.exp(4.0)))
    assert _two_alternative_choice(np.full((18, 2), 3.0), 9) == pytest.approx(0.5)  # no evidence


def test_interpretability_index_high_for_planted_directions_chance_for_idle_ones(phantom) -> None:
    from factorlens.directions.scores import interpretability_index

    def monotone_decode(z: torch.Tensor) -> torch.Tensor:
        # The phantom's own brightness is periodic (sin), so the two ends of a direction can look alike;
        # a monotone brightness makes "the ends look different" true for every planted direction.
        brightness = torch.sigmoid(phantom.factor_values(z))
        return torch.einsum("bf,fhw->bhw", brightness, phantom.spots)[:, None]

    # Klindt et al.'s protocol needs > 800 codes in the middle half: 2,000 posterior codes.
    codes = phantom.posterior_codes(2000, seed=1)
    adapter = GeneratorAdapter(monotone_decode, phantom.latent_dim, posterior_codes=codes)

    planted = phantom.planted.numpy()  # rows that change the spots
    idle = np.linalg.svd(planted)[2][len(planted):]  # orthogonal complement: the image does not change
    both = DirectionSet(np.concatenate([planted, idle]), np.ones(len(planted) + len(idle)), "test", {}, 0)
    result = interpretability_index(adapter, both, num_samples=2048, trials=20, seed=0)
    scores = np.asarray(result["per_direction"])
    on, off = scores[: len(planted)], scores[len(planted):]
    print(result["per_quantile"])
    assert on.min() > off.max() and on.mean() - off.mean() > 0.15, scores
    assert np.abs(off - 0.5).max() < 0.06, scores
    hard = np.asarray(result["per_quantile"]["0.25"])
    assert hard[: len(planted)].mean() < on.mean(), hard  # the middle half is harder to tell apart
    again = interpretability_index(adapter, both, num_samples=2048, trials=20, seed=0)
    assert again["per_direction"] == result["per_direction"]  # seeded
    with pytest.raises(ConfigError, match="central band"):
        interpretability_index(adapter, both, num_samples=1000)
