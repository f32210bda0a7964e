"""Value tests of factorlens.metrics: identities, closed forms and independent computations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import logsumexp
from sklearn.metrics import mutual_info_score

from factorlens.errors import ConfigError, DataError
from factorlens.metrics import (
    dci,
    dci_from_importance,
    discrete_entropy,
    discrete_mutual_info,
    few_label_accuracy,
    gmm_nmi,
    histogram_discretize,
    median_split_factors,
    mig,
    mig_exact,
    mig_handcrafted,
    mig_pathology,
    modularity_explicitness,
    modularity_from_mi,
    one_vs_all_factors,
    psnr,
    sap,
)
from factorlens.metrics.factor_scores import top_two_gap

GRID_SIZES = [3, 6, 8, 5]


def factor_grid(sizes=GRID_SIZES) -> np.ndarray:
    """``int64 [prod(sizes), K]`` every combination of factor values, last factor fastest."""
    return np.stack(np.meshgrid(*[np.arange(s) for s in sizes], indexing="ij"), axis=-1).reshape(
        -1, len(sizes)
    )


# --- discrete MI --------------------------------------------------------------------------------------


def test_mutual_info_matrix_equals_sklearn_on_the_same_bins():
    rng = np.random.default_rng(0)
    factors = rng.integers(0, 5, size=(700, 3))
    factors[:, 2] = rng.integers(0, 11, size=700)
    codes = np.c_[factors[:, :2] + rng.normal(0, 0.7, (700, 2)), rng.normal(size=(700, 3)) ** 3]
    binned = histogram_discretize(codes, bins=20)
    for j in range(codes.shape[1]):  # dlib's binning, column by column
        edges = np.histogram(codes[:, j], 20)[1][:-1]
        np.testing.assert_array_equal(binned[:, j], np.digitize(codes[:, j], edges) - 1)
    expected = np.array(
        [[mutual_info_score(factors[:, k], binned[:, j]) for k in range(3)] for j in range(5)]
    )
    np.testing.assert_allclose(discrete_mutual_info(codes, factors), expected, rtol=1e-10, atol=1e-12)


def test_unknown_factor_entries_are_excluded_per_factor_only():
    rng = np.random.default_rng(1)
    factors = rng.integers(0, 4, size=(500, 2))
    codes = factors + rng.normal(0, 0.5, (500, 2))
    factors[rng.random(500) < 0.3, 1] = -1
    known = factors[:, 1] >= 0
    binned = histogram_discretize(codes)  # bins come from all rows
    mi = discrete_mutual_info(codes, factors)
    for j in range(2):
        assert mi[j, 0] == pytest.approx(mutual_info_score(factors[:, 0], binned[:, j]), abs=1e-12)
        assert mi[j, 1] == pytest.approx(mutual_info_score(factors[known, 1], binned[known, j]), abs=1e-12)
    entropy = discrete_entropy(factors)
    assert entropy[1] == pytest.approx(mutual_info_score(factors[known, 1], factors[known, 1]), abs=1e-12)


def test_non_finite_codes_and_bad_factors_raise_data_errors():
    with pytest.raises(DataError, match="non-finite"):
        discrete_mutual_info(np.array([[0.0], [np.nan]]), np.array([[0], [1]]))
    with pytest.raises(DataError, match="integer"):
        discrete_mutual_info(np.zeros((2, 1)), np.array([[0.5], [1.0]]))


# --- binned MIG ---------------------------------------------------------------------------------------


def test_identity_code_of_independent_factors_has_mig_one():
    factors = factor_grid()
    result = mig(factors.astype(float), factors)
    # On the full grid the factors are independent, so I(z_j; v_k) = H(v_k) if j == k else 0.
    np.testing.assert_allclose(result.mi, np.diag(np.log(GRID_SIZES)), atol=1e-12)
    assert result.score == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_array_equal(result.top_latent, np.arange(4))
    assert result.estimator == "binned-20"


def test_mig_is_invariant_to_latent_permutation_and_positive_affine_rescaling():
    rng = np.random.default_rng(2)
    factors = factor_grid()
    codes = np.c_[factors + rng.normal(0, 0.3, factors.shape), rng.normal(size=(len(factors), 2))]
    base = mig(codes, factors)
    permuted = mig(codes[:, [5, 2, 0, 4, 1, 3]], factors)
    rescaled = mig(3.7 * codes - 11.0, factors)
    assert permuted.score == pytest.approx(base.score, abs=1e-12)
    assert rescaled.score == pytest.approx(base.score, abs=1e-12)
    assert base.score > 0.5


def test_monotone_rescaled_and_permuted_true_factors_score_high():
    factors = factor_grid()
    codes = np.c_[
        np.tanh(factors[:, 0] / 3.0), factors[:, 3] ** 1.5, np.log1p(factors[:, 1]), factors[:, 2] ** 2
    ]
    assert mig(codes, factors).score >= 0.9


def test_constant_code_and_duplicated_latent_give_zero_gap():
    factors = factor_grid()
    constant = mig(np.ones((len(factors), 3)), factors)
    assert constant.score == 0.0
    np.testing.assert_array_equal(constant.mi, 0.0)
    duplicated = mig(np.c_[factors.astype(float), factors[:, 1]], factors)
    assert duplicated.per_factor_gap[1] == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(duplicated.per_factor_gap[[0, 2, 3]], 1.0)
    assert duplicated.score == pytest.approx(0.75, abs=1e-12)


def test_constant_factor_is_left_out_of_the_mean():
    factors = np.c_[factor_grid(), np.zeros(np.prod(GRID_SIZES), dtype=np.int64)]
    result = mig(factors.astype(float), factors)
    assert np.isnan(result.per_factor_gap[-1]) and result.score == pytest.approx(1.0)


def test_mig_pathology_is_mig_on_one_vs_all_factors():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 4, 400)
    one_hot = one_vs_all_factors(labels, 5)
    np.testing.assert_array_equal(one_hot[:, :4].argmax(axis=1), labels)
    assert (one_hot[:, 4] == 0).all()  # class 4 is absent: zero entropy, not scored
    codes = np.c_[one_hot[:, :4] + rng.normal(0, 0.05, (400, 4)), rng.normal(size=(400, 2))]
    result = mig_pathology(codes, labels, 5)
    assert result.score == pytest.approx(mig(codes, one_hot).score, abs=1e-12)
    # Not 1: the indicator of another class also tells "not this class", so the runner-up MI is > 0.
    assert result.score > 0.75 and np.isnan(result.per_factor_gap[4])
    assert mig_pathology(rng.normal(size=(400, 6)), labels, 5).score < 0.05


def test_mig_handcrafted_median_split_excludes_nan_rows_and_counts_them():
    rng = np.random.default_rng(4)
    handcrafted = rng.random((300, 3))
    handcrafted[:25, 0] = np.nan
    handcrafted[:7, 2] = np.nan
    split = median_split_factors(handcrafted)
    assert (split[:25, 0] == -1).all() and (split[25:, 0] >= 0).all()
    assert split[25:, 0].sum() == np.sum(handcrafted[25:, 0] > np.median(handcrafted[25:, 0]))
    codes = np.nan_to_num(handcrafted, nan=0.5) + rng.normal(0, 0.01, (300, 3))
    result = mig_handcrafted(np.c_[codes, rng.normal(size=(300, 2))], handcrafted)
    assert result.factor_names == ["eccentricity", "orientation", "size"]
    np.testing.assert_array_equal(result.n_excluded, [25, 0, 7])
    assert result.score > 0.8


# --- exact MIG (Chen et al.) --------------------------------------------------------------------------


def brute_force_mixture_entropy(samples, means, logvars):
    """-(1/N) sum_s log (1/N) sum_n N(z_s; mu_n, var_n), per latent, with scipy."""
    var = np.exp(logvars)
    log_density = -0.5 * (
        np.log(2 * np.pi) + logvars[None] + (samples[:, None] - means[None]) ** 2 / var[None]
    )
    return -(logsumexp(log_density, axis=1) - np.log(len(means))).mean(axis=0)


def test_exact_mig_matches_a_brute_force_computation_when_every_sample_is_used():
    sizes = [2, 3, 4]
    rng = np.random.default_rng(5)
    means = rng.normal(size=(24, 3))
    logvars = rng.normal(-1.0, 0.5, size=(24, 3))
    result = mig_exact(means, logvars, sizes, n_samples=1000, seed=7, dtype="float64")
    samples = means + np.exp(0.5 * logvars) * np.random.default_rng(7).standard_normal(means.shape)
    marginal = brute_force_mixture_entropy(samples, means, logvars)
    grid = factor_grid(sizes)
    conditional = np.zeros((3, 3))
    for k, size in enumerate(sizes):
        for value in range(size):
            rows = grid[:, k] == value
            conditional[:, k] += brute_force_mixture_entropy(samples[rows], means[rows], logvars[rows]) / size
    np.testing.assert_allclose(result.marginal_entropy, marginal, rtol=1e-10)
    np.testing.assert_allclose(result.conditional_entropy, conditional, rtol=1e-10)
    mi = np.maximum(marginal[:, None] - conditional, 0) / np.log(sizes)
    ordered = np.sort(mi, axis=0)
    assert result.score == pytest.approx(np.mean(ordered[-1] - ordered[-2]), abs=1e-10)


def test_exact_mig_high_for_factor_codes_and_zero_for_prior_like_noise():
    sizes = [4, 5, 6]
    grid = factor_grid(sizes)
    rng = np.random.default_rng(6)
    # z_k = factor value (posterior std 0.05); two collapsed latents equal to the prior N(0, 1).
    means = np.c_[grid.astype(float), np.zeros((len(grid), 2))]
    logvars = np.c_[np.full(grid.shape, 2 * np.log(0.05)), np.zeros((len(grid), 2))]
    good = mig_exact(
        means, logvars, sizes, n_samples=500, factor_names=["a", "b", "c"], factors_scored=["b", "c"]
    )
    assert good.factors_scored == ["b", "c"] and good.mi.shape == (5, 2)
    assert good.score > 0.95
    noise = mig_exact(rng.normal(0, 0.2, means.shape), np.zeros(means.shape), sizes, n_samples=500)
    assert noise.score < 0.03
    assert noise.estimator == "chen-exact-S500"


def test_exact_mig_needs_the_full_grid():
    with pytest.raises(DataError, match="full factor grid"):
        mig_exact(np.zeros((10, 2)), np.zeros((10, 2)), [3, 4])


# --- PSNR ---------------------------------------------------------------------------------------------


def test_psnr_matches_a_hand_computation_and_caps_identical_images():
    x = np.zeros((3, 1, 2, 2))
    x_hat = x.copy()
    x_hat[0, 0, 0, 0] = 0.2  # MSE = 0.04 / 4 = 0.01 -> 20 dB
    x_hat[1] = 0.5  # MSE 0.25 -> 10 log10(4) = 6.0206 dB
    result = psnr(x, x_hat)  # image 2 is identical -> capped at 100 dB
    np.testing.assert_allclose(result.per_image, [20.0, 10 * np.log10(4.0), 100.0])
    assert result.score == pytest.approx((20.0 + 10 * np.log10(4.0) + 100.0) / 3)
    assert result.n_identical == 1
    uint8 = psnr(np.full((1, 3, 4, 4), 255, np.uint8), np.full((1, 3, 4, 4), 0.9))
    assert uint8.score == pytest.approx(20.0)
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        psnr(x, x_hat + 2)


# --- NMI / few-label accuracy -------------------------------------------------------------------------


def test_gmm_nmi_reproducible_near_one_for_separated_clusters_and_near_zero_for_noise():
    rng = np.random.default_rng(8)
    labels = rng.integers(0, 3, 300)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    separated = centres[labels] + rng.normal(size=(300, 2))
    first = gmm_nmi(separated, labels, n_components=3, seeds=range(3))
    assert first.mean > 0.99 and first.per_seed.shape == (3,)
    again = gmm_nmi(separated, labels, n_components=3, seeds=range(3))
    np.testing.assert_array_equal(first.per_seed, again.per_seed)
    noise = gmm_nmi(rng.normal(size=(300, 2)), labels, n_components=3, seeds=range(3))
    assert noise.mean < 0.05


def test_few_label_accuracy_trains_on_one_fold_and_reaches_chance_on_random_codes():
    rng = np.random.default_rng(9)
    labels = rng.integers(0, 4, 400)
    random_codes = rng.normal(size=(400, 3))
    result = few_label_accuracy(random_codes, labels, folds=5, seed=0, hidden_layer_sizes=(16,), max_iter=200)
    assert result.train_sizes == [80] * 5  # each fold trains on one fifth
    assert abs(result.accuracy_mean - 0.25) < 0.06 and abs(result.balanced_accuracy_mean - 0.25) < 0.06
    again = few_label_accuracy(random_codes, labels, folds=5, seed=0, hidden_layer_sizes=(16,), max_iter=200)
    np.testing.assert_array_equal(result.per_fold_accuracy, again.per_fold_accuracy)
    informative = np.c_[3.0 * np.eye(4)[labels] + rng.normal(0, 0.3, (400, 4)), rng.normal(size=400)]
    good = few_label_accuracy(informative, labels, folds=5, seed=0, hidden_layer_sizes=(16,), max_iter=500)
    assert good.accuracy_mean > 0.95


# --- DCI / SAP / modularity ---------------------------------------------------------------------------


def test_dci_closed_forms_of_the_importance_matrix():
    assert dci_from_importance(np.eye(4)) == pytest.approx((1.0, 1.0), abs=1e-8)
    assert dci_from_importance(np.ones((4, 4))) == pytest.approx((0.0, 0.0), abs=1e-8)
    # One latent carries both factors equally: it has disentanglement 0; the other latents are unused.
    importance = np.array([[1.0, 1.0], [0.0, 0.0], [0.0, 0.0]])
    disentanglement, completeness = dci_from_importance(importance)
    assert disentanglement == pytest.approx(0.0, abs=1e-8) and completeness == pytest.approx(1.0, abs=1e-8)


def _identity_and_random(seed: int):
    rng = np.random.default_rng(seed)
    factors = rng.integers(0, 3, size=(600, 3))
    identity = factors + rng.normal(0, 0.05, factors.shape)
    return factors, identity, rng.normal(size=(600, 3))


def test_dci_high_for_identity_codes_low_for_random_codes_and_pinned():
    factors, identity, random_codes = _identity_and_random(10)
    good = dci(identity, factors, num_train=400, num_test=200, model="random-forest", seed=0)
    bad = dci(random_codes, factors, num_train=400, num_test=200, model="random-forest", seed=0)
    assert good.disentanglement > 0.9 and good.completeness > 0.9 and good.informativeness_test == 1.0
    assert bad.disentanglement < 0.2 and bad.informativeness_test < 0.5
    assert (good.num_train, good.num_test) == (400, 200)
    gbt = dci(identity, factors, num_train=200, num_test=100, seed=0)
    assert gbt.model == "gbt" and gbt.disentanglement > 0.95
    with pytest.raises(ConfigError, match="random-forest"):
        dci(identity, factors, model="xgboost")


def test_sap_high_for_binary_identity_codes_low_for_random_codes():
    rng = np.random.default_rng(11)
    factors = rng.integers(0, 2, size=(600, 3))
    good = sap(factors + rng.normal(0, 0.05, factors.shape), factors, num_train=400, num_test=200)
    bad = sap(rng.normal(size=(600, 3)), factors, num_train=400, num_test=200)
    assert good.score > 0.4 and bad.score < 0.1
    np.testing.assert_allclose(np.diag(good.score_matrix), 1.0)
    assert top_two_gap(np.array([[0.9, 0.2], [0.5, 0.7], [0.1, 0.6]])) == pytest.approx((0.4 + 0.1) / 2)


def test_modularity_closed_form_and_explicitness():
    assert modularity_from_mi(np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])) == pytest.approx(1.0)
    assert modularity_from_mi(np.array([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])) == pytest.approx(0.0)
    # one latent with MI (2, 1): 1 - 1 / (4 * 1) = 0.75
    assert modularity_from_mi(np.array([[2.0, 1.0]])) == pytest.approx(0.75)
    factors, identity, random_codes = _identity_and_random(12)
    good = modularity_explicitness(identity, factors, num_train=400, num_test=200)
    bad = modularity_explicitness(random_codes, factors, num_train=400, num_test=200)
    assert good.modularity > 0.95 and good.explicitness_test > 0.75
    assert bad.modularity < good.modularity - 0.3 and abs(bad.explicitness_test - 0.5) < 0.1
    # dlib z-scores the codes before the (regularised) logistic regression: the scale does not matter.
    shrunk = modularity_explicitness(identity * 0.01, factors, num_train=400, num_test=200)
    assert shrunk.explicitness_test == pytest.approx(good.explicitness_test, abs=1e-6)
    assert shrunk.modularity == pytest.approx(good.modularity)


def test_dci_sap_modularity_pinned_on_a_seeded_example():
    # Regression pins (sklearn's tree/SVM/logistic fits are deterministic for a fixed seed and version).
    rng = np.random.default_rng(13)
    factors = rng.integers(0, 3, size=(300, 2))
    codes = np.c_[factors + rng.normal(0, 0.7, factors.shape), rng.normal(size=300)]
    result = dci(codes, factors, num_train=200, num_test=100, model="random-forest")
    assert (result.disentanglement, result.completeness) == pytest.approx(
        (0.198449407, 0.152735416), abs=1e-6
    )
    assert result.informativeness_test == pytest.approx(0.595)
    assert sap(codes, factors, num_train=200, num_test=100).score == pytest.approx(0.185)
    modularity = modularity_explicitness(codes, factors, num_train=200, num_test=100)
    assert (modularity.modularity, modularity.explicitness_test) == pytest.approx(
        (0.665601346, 0.826071556), abs=1e-6
    )


class GridSampler:
    """Fake generative model: a factor's value is written into pixel (0, k) of a 1-channel image."""

    factor_names = ["a", "b", "c"]
    factor_sizes = [3, 5, 4]

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.stack([rng.integers(0, size, n) for size in self.factor_sizes], axis=1)

    def render(self, factors: np.ndarray) -> np.ndarray:
        images = np.zeros((len(factors), 1, 64, 64), np.uint8)
        images[:, 0, 0, : factors.shape[1]] = factors
        return images


def identity_encoder(images: np.ndarray) -> np.ndarray:
    return images[:, 0, 0, :3].astype(float)


def test_interventional_scores_are_one_for_an_identity_encoder_and_chance_for_a_random_one():
    from factorlens.metrics import beta_vae_score, factor_vae_score

    sampler = GridSampler()
    noise = np.random.default_rng(14)

    def random_encoder(images):
        return noise.normal(size=(len(images), 3))

    good = factor_vae_score(sampler, identity_encoder, num_train=200, num_eval=100, num_variance_estimate=500)
    assert good.train_accuracy == 1.0 and good.eval_accuracy == 1.0 and good.num_active_dims == 3
    # dlib prunes on the standard deviation (< 0.05), not the variance: a latent with std 0.1
    # (variance 0.01) stays active.
    quiet = factor_vae_score(
        sampler, lambda images: 0.1 * identity_encoder(images) / np.array([0.82, 1.41, 1.12]),
        num_train=50, num_eval=20, num_variance_estimate=500,
    )
    assert quiet.num_active_dims == 3 and quiet.eval_accuracy == 1.0
    tiny = factor_vae_score(
        sampler, lambda images: 0.01 * identity_encoder(images) / np.array([0.82, 1.41, 1.12]),
        num_train=50, num_eval=20, num_variance_estimate=500,
    )
    assert tiny.num_active_dims == 0 and tiny.eval_accuracy == 0.0
    bad = factor_vae_score(sampler, random_encoder, num_train=200, num_eval=100, num_variance_estimate=500)
    assert abs(bad.eval_accuracy - 1 / 3) < 0.15
    beta_good = beta_vae_score(sampler, identity_encoder, num_train=200, num_eval=100)
    assert beta_good.eval_accuracy == 1.0
    beta_bad = beta_vae_score(sampler, random_encoder, num_train=200, num_eval=100)
    assert abs(beta_bad.eval_accuracy - 1 / 3) < 0.15
