"""Cross-checks of ``factorlens.metrics`` against computations written independently of it: sklearn's
``mutual_info_score`` on disentanglement_lib's own binning code, hand-computed closed forms, numerical
quadrature of mixture entropies for Chen's estimator, and a fake factor sampler for the interventional
scores. Every test pins values, not shapes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import logsumexp
from sklearn.metrics import mutual_info_score

from factorlens.metrics import discrete_mutual_info, mig, mig_handcrafted, mig_pathology


def dlib_discretize(codes: np.ndarray, bins: int) -> np.ndarray:
    """disentanglement_lib's ``_histogram_discretize`` (values 1..bins), written out on its own."""
    out = np.zeros(codes.shape, dtype=np.int64)
    for j in range(codes.shape[1]):
        out[:, j] = np.digitize(codes[:, j], np.histogram(codes[:, j], bins)[1][:-1])
    return out


def sklearn_mi_matrix(codes: np.ndarray, factors: np.ndarray, bins: int = 20) -> np.ndarray:
    binned = dlib_discretize(codes, bins)
    mi = np.zeros((codes.shape[1], factors.shape[1]))
    for k in range(factors.shape[1]):
        known = factors[:, k] >= 0
        for j in range(codes.shape[1]):
            mi[j, k] = mutual_info_score(factors[known, k], binned[known, j])
    return mi


def test_mi_matrix_equals_sklearn_on_dlib_bins_with_unknown_entries():
    rng = np.random.default_rng(3)
    factors = rng.integers(0, 4, size=(1500, 3))
    codes = np.c_[factors[:, :2] + rng.normal(0, 0.4, (1500, 2)), rng.standard_exponential((1500, 2))]
    factors[rng.random(1500) < 0.2, 1] = -1  # unknown values are left out of factor 1 only
    np.testing.assert_allclose(discrete_mutual_info(codes, factors, bins=20),
                               sklearn_mi_matrix(codes, factors), rtol=1e-10, atol=1e-12)


def test_mig_equals_hand_computed_gap():
    rng = np.random.default_rng(0)
    factor = np.repeat(np.arange(4), 250)
    noise = rng.normal(size=1000)
    codes = np.c_[factor.astype(float), noise]
    # The exact latent falls in 4 distinct bins, so I(z0; v) = H(v) = log 4; the noise latent is runner-up.
    runner_up = mutual_info_score(factor, dlib_discretize(noise[:, None], 20)[:, 0])
    result = mig(codes, factor[:, None])
    assert result.factor_entropy[0] == pytest.approx(np.log(4))
    assert result.score == pytest.approx((np.log(4) - runner_up) / np.log(4), abs=1e-12)


def test_mig_duplicated_latent_gives_zero_gap():
    factor = np.repeat(np.arange(5), 40)
    codes = np.c_[factor, factor * 3.0 + 1.0, np.sin(np.arange(200.0))]
    assert mig(codes, factor[:, None]).score == pytest.approx(0.0, abs=1e-12)


def test_mig_pathology_is_mig_on_one_vs_all_factors():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, 800)
    codes = np.c_[labels + rng.normal(0, 0.3, 800), rng.normal(size=(800, 3))]
    one_vs_all = (labels[:, None] == np.arange(5)).astype(int)  # class 4 never occurs: zero entropy
    mi = sklearn_mi_matrix(codes, one_vs_all)
    entropy = np.array([mutual_info_score(one_vs_all[:, k], one_vs_all[:, k]) for k in range(5)])
    top = -np.sort(-mi, axis=0)
    expected = np.mean((top[0, :4] - top[1, :4]) / entropy[:4])
    result = mig_pathology(codes, labels, 5)
    assert result.score == pytest.approx(expected, abs=1e-10)
    assert np.isnan(result.per_factor_gap[4])


def test_mig_handcrafted_median_split_and_nan_exclusion():
    rng = np.random.default_rng(2)
    handcrafted = rng.normal(size=(400, 3))
    handcrafted[:30, 0] = np.nan
    codes = np.c_[handcrafted[:, 1], rng.normal(size=(400, 2))]
    codes[:30, 0] = 0.0
    result = mig_handcrafted(codes, handcrafted)
    assert list(result.n_excluded) == [30, 0, 0]
    binary = np.full((400, 3), -1)
    for k in range(3):
        known = ~np.isnan(handcrafted[:, k])
        binary[known, k] = handcrafted[known, k] > np.median(handcrafted[known, k])
    np.testing.assert_allclose(result.mi, sklearn_mi_matrix(codes, binary), atol=1e-12)


# --- Chen's estimator ---------------------------------------------------------------------------------------


def quadrature_entropy(means: np.ndarray, std: float) -> float:
    """Differential entropy (nats) of the equal-weight mixture of N(means, std^2), by a fine Riemann sum."""
    grid = np.linspace(means.min() - 8 * std, means.max() + 8 * std, 20001)
    log_p = logsumexp(-0.5 * ((grid[:, None] - means[None]) / std) ** 2, axis=1) - np.log(
        len(means) * std * np.sqrt(2 * np.pi))
    return float(-(np.exp(log_p) * log_p).sum() * (grid[1] - grid[0]))


def test_mig_exact_entropies_match_quadrature_and_grid_layout():
    from factorlens.metrics.mig_exact import mig_exact

    sizes = [3, 200]  # the last factor varies fastest (C order)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in sizes], indexing="ij"), -1).reshape(-1, 2)
    std = 0.5
    # latent 0 encodes the first factor, latent 1 a smooth function of the second (fastest) factor.
    means = np.c_[3.0 * grid[:, 0], np.sin(grid[:, 1] * 0.7) * 2.0]
    logvars = np.full(means.shape, 2 * np.log(std))
    result = mig_exact(means, logvars, sizes, n_samples=10_000, seed=0)
    expected_h0 = quadrature_entropy(means[:, 0], std)
    expected_h0_given_v0 = np.mean([quadrature_entropy(means[grid[:, 0] == v, 0], std) for v in range(3)])
    # Monte Carlo over all 600 samples: standard error ~0.04 nats.
    assert result.marginal_entropy[0] == pytest.approx(expected_h0, abs=0.15)
    assert result.conditional_entropy[0, 0] == pytest.approx(expected_h0_given_v0, abs=0.15)
    mi_0 = expected_h0 - expected_h0_given_v0
    assert result.mi[0, 0] == pytest.approx(mi_0, abs=0.2)
    # A .view-style mix-up of grid axes would credit the wrong latent; each factor's best latent is its own.
    assert list(np.argmax(result.mi, axis=0)) == [0, 1]
    assert result.per_factor_gap[0] > 0.9 * mi_0 / np.log(3) - 0.1


def test_mig_exact_pure_noise_code_scores_near_zero():
    from factorlens.metrics.mig_exact import mig_exact

    rng = np.random.default_rng(5)
    means = rng.normal(size=(4 * 50, 3))
    result = mig_exact(means, np.full(means.shape, np.log(0.1)), [4, 50], n_samples=10_000, seed=1)
    assert result.score < 0.05


# --- reconstruction and downstream --------------------------------------------------------------------------


def test_psnr_hand_computation():
    from factorlens.metrics.reconstruction import psnr

    x = np.zeros((2, 1, 4, 4))
    x_hat = np.zeros((2, 1, 4, 4))
    x_hat[0] = 0.1  # MSE 0.01 -> 20 dB
    x_hat[1, :, :2] = 0.2  # MSE 0.02 -> 10 log10(50) dB
    result = psnr(x, x_hat)
    assert result.per_image[0] == pytest.approx(20.0)
    assert result.per_image[1] == pytest.approx(10 * np.log10(50))
    assert result.score == pytest.approx((20.0 + 10 * np.log10(50)) / 2)


def test_gmm_nmi_separated_clusters_random_codes_and_reproducibility():
    from factorlens.metrics.downstream import gmm_nmi

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 100)
    clustered = np.c_[labels * 10.0, -labels * 10.0] + rng.normal(size=(300, 2))
    assert gmm_nmi(clustered, labels, n_components=3, seeds=range(3)).mean > 0.95
    random_codes = rng.normal(size=(300, 4))
    first = gmm_nmi(random_codes, labels, n_components=3, seeds=range(3))
    assert first.mean < 0.05
    np.testing.assert_array_equal(first.per_seed, gmm_nmi(random_codes, labels, n_components=3,
                                                           seeds=range(3)).per_seed)


def test_few_label_accuracy_separable_and_chance():
    from factorlens.metrics.downstream import few_label_accuracy

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 200)
    separable = np.c_[labels * 5.0, rng.normal(size=600)] + rng.normal(0, 0.3, (600, 2))
    result = few_label_accuracy(separable, labels, seed=0)
    assert result.accuracy_mean > 0.95
    # The paper's protocol: the MLP trains on ONE fold (10 %) and is tested on the other nine.
    assert sorted(result.train_sizes) == [60] * 10
    chance = few_label_accuracy(rng.normal(size=(600, 3)), labels, seed=0)
    assert abs(chance.accuracy_mean - 1 / 3) < 0.08
    assert abs(chance.balanced_accuracy_mean - 1 / 3) < 0.08


# --- dlib's factor scores -----------------------------------------------------------------------------------


def test_dci_from_importance_closed_forms():
    from factorlens.metrics.factor_scores import dci_from_importance

    assert dci_from_importance(np.eye(3)) == pytest.approx((1.0, 1.0), abs=1e-6)
    assert dci_from_importance(np.ones((3, 3))) == pytest.approx((0.0, 0.0), abs=1e-6)
    # code 0 -> only factor 0 (1), code 1 -> both equally (0); weights 1/2 each -> D = 0.5.
    # factor 0 column (2/3, 1/3) -> 1 - H2; factor 1 column (0, 1) -> 1; weights 3/4, 1/4.
    h2 = -(2 / 3 * np.log2(2 / 3) + 1 / 3 * np.log2(1 / 3))
    expected_c = 0.75 * (1 - h2) + 0.25
    mixed = np.array([[1.0, 0.0], [0.5, 0.5]])
    assert dci_from_importance(mixed) == pytest.approx((0.5, expected_c), abs=1e-6)


def test_modularity_closed_forms():
    from factorlens.metrics.factor_scores import modularity_from_mi

    assert modularity_from_mi(np.eye(3)) == pytest.approx(1.0)
    assert modularity_from_mi(np.ones((2, 3))) == pytest.approx(0.0)
    # squared row (1, 0.25): deviation 0.25 / (1 * (2 - 1)) -> 0.75; an all-zero latent scores 0 (as dlib).
    assert modularity_from_mi(np.array([[1.0, 0.5], [0.0, 0.0]])) == pytest.approx(0.375)


def factor_grid_codes(n: int, rng: np.random.Generator, sizes=(4, 5, 6)):
    factors = np.stack([rng.integers(0, s, n) for s in sizes], axis=1)
    return factors


def test_dci_sap_modularity_identity_high_random_low():
    from factorlens.metrics.factor_scores import dci, modularity_explicitness, sap

    rng = np.random.default_rng(0)
    factors = factor_grid_codes(1500, rng)
    identity = factors + rng.normal(0, 0.05, factors.shape)
    random_codes = rng.normal(size=(1500, 3))
    sizes = dict(num_train=1000, num_test=500, seed=0)
    good, bad = dci(identity, factors, model="random-forest", **sizes), dci(random_codes, factors,
                                                                            model="random-forest", **sizes)
    assert good.disentanglement > 0.9 and good.completeness > 0.9 and good.informativeness_test > 0.95
    assert bad.disentanglement < 0.3 and bad.informativeness_test < 0.4
    binary = (factors > np.array([1, 2, 2])).astype(int)
    # Best latent predicts its binary factor perfectly, the runner-up is balanced chance (0.5): SAP ~ 0.5.
    near_identity = binary + rng.normal(0, 0.05, binary.shape)
    assert sap(near_identity, binary, **sizes).score == pytest.approx(0.5, abs=0.06)
    assert sap(random_codes, binary, **sizes).score < 0.05
    assert modularity_explicitness(identity, factors, **sizes).modularity > 0.9
    assert modularity_explicitness(identity, factors, **sizes).explicitness_test > 0.95


# --- interventional scores ----------------------------------------------------------------------------------


class FakeSampler:
    """Factors written into the first pixels of a blank image; uniform over a small grid."""

    factor_names = ["a", "b", "c"]
    factor_sizes = [4, 5, 6]

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.stack([rng.integers(0, s, n) for s in self.factor_sizes], axis=1)

    def render(self, factors: np.ndarray) -> np.ndarray:
        images = np.zeros((len(factors), 1, 64, 64), dtype=np.uint8)
        images[:, 0, 0, :3] = factors * 10
        return images


def identity_encoder(images: np.ndarray) -> np.ndarray:
    return images[:, 0, 0, :3].astype(np.float64) / 10.0


def random_encoder():
    rng = np.random.default_rng(7)
    return lambda images: rng.normal(size=(len(images), 3))


def test_factor_vae_score_identity_is_one_random_is_near_chance():
    from factorlens.metrics.interventional import factor_vae_score

    sizes = dict(batch_size=16, num_train=300, num_eval=200, num_variance_estimate=500, seed=0)
    assert factor_vae_score(FakeSampler(), identity_encoder, **sizes).eval_accuracy == pytest.approx(1.0)
    assert factor_vae_score(FakeSampler(), random_encoder(), **sizes).eval_accuracy < 0.5


def test_beta_vae_score_identity_is_one_random_is_near_chance():
    from factorlens.metrics.interventional import beta_vae_score

    sizes = dict(batch_size=16, num_train=300, num_eval=200, seed=0)
    assert beta_vae_score(FakeSampler(), identity_encoder, **sizes).eval_accuracy == pytest.approx(1.0)
    assert beta_vae_score(FakeSampler(), random_encoder(), **sizes).eval_accuracy < 0.5
