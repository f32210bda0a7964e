"""The β-TCVAE decomposition: identities, the MSS weights, and accuracy on a toy problem with known TC."""

import math

import numpy as np
import pytest
import torch

from factorlens.errors import ConfigError
from factorlens.objectives import decompose_kl, gaussian_log_density, kl_to_standard_normal, mss_weight_matrix


def _batch(b=6, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(b, d, generator=g, dtype=torch.float64)
    logvar = torch.randn(b, d, generator=g, dtype=torch.float64) * 0.3 - 1.0
    z = mu + torch.randn(b, d, generator=g, dtype=torch.float64) * torch.exp(0.5 * logvar)
    return z, mu, logvar


@pytest.mark.parametrize("estimator", ["mss", "mws"])
def test_mi_tc_dwkl_sum_to_log_q_minus_log_p(estimator):
    z, mu, logvar = _batch()
    parts = decompose_kl(z, mu, logvar, dataset_size=1000, estimator=estimator)
    total = parts.mi + parts.tc + parts.dwkl
    expected = (parts.log_qz_given_x - parts.log_pz).mean()
    assert float(total) == pytest.approx(float(expected), abs=1e-12)
    # log q(z|x) - log p(z) is also available in closed form from the samples
    direct = (gaussian_log_density(z, mu, logvar) - gaussian_log_density(z, 0 * z, 0 * z)).sum(1).mean()
    assert float(expected) == pytest.approx(float(direct), abs=1e-12)


def _assert_valid_mss_matrix(w, n):
    """Chen et al. App. C: every row sums to 1, w_ii = 1/N, one off-diagonal (N-M)/(NM), M-1 times 1/M."""
    b = w.shape[0]
    m = b - 1
    assert torch.allclose(w.sum(1), torch.ones(b, dtype=w.dtype), atol=1e-12), "rows must sum to 1"
    assert torch.allclose(w.diagonal(), torch.full((b,), 1.0 / n, dtype=w.dtype)), "diagonal must be 1/N"
    for i in range(b):
        off = torch.cat([w[i, :i], w[i, i + 1 :]])
        n_special = int(torch.isclose(off, torch.tensor((n - m) / (n * m), dtype=w.dtype)).sum())
        n_uniform = int(torch.isclose(off, torch.tensor(1.0 / m, dtype=w.dtype)).sum())
        assert (n_special, n_uniform) == (1, m - 1), f"row {i}"


@pytest.mark.parametrize("b, n", [(2, 10), (3, 3), (7, 500), (64, 10015)])
def test_mss_matrix_is_chen_et_al_appendix_c(b, n):
    w = mss_weight_matrix(b, n)
    _assert_valid_mss_matrix(w, n)
    rows = torch.arange(b)
    special = torch.full((b,), (n - b + 1) / (n * (b - 1)), dtype=w.dtype)
    assert torch.allclose(w[rows, (rows + 1) % b], special)


def _column_zero_matrix(b, n):
    """The widely copied construction (W.view(-1)[::M+1] walks down column 0 of a (M+1)x(M+1) matrix)."""
    m = b - 1
    strat = (n - m) / (n * m)
    w = torch.full((b, b), 1.0 / m, dtype=torch.float64)
    w.view(-1)[:: m + 1] = 1.0 / n
    w.view(-1)[1 :: m + 1] = strat
    w[m - 1, 0] = strat
    return w


def test_the_check_rejects_the_column_zero_variant():
    with pytest.raises(AssertionError):
        _assert_valid_mss_matrix(_column_zero_matrix(5, 500), 500)
    w = _column_zero_matrix(5, 500)
    # z_i's own posterior gets 1/M, the 1/N goes to x_0, and row M-1 loses its 1/N altogether
    assert float(w[2, 2]) == pytest.approx(1 / 4) and float(w[2, 0]) == pytest.approx(1 / 500)
    assert float(w[3].sum()) == pytest.approx(2 * 0.248 + 3 / 4)


def test_mss_matches_a_plain_loop():
    z, mu, logvar = _batch(b=4, d=2, seed=5)
    n = 40
    parts = decompose_kl(z, mu, logvar, dataset_size=n, estimator="mss")
    b, d = z.shape
    m = b - 1
    zs, ms, vs = z.numpy(), mu.numpy(), np.exp(logvar.numpy())

    def weight(i, j):  # written out from Chen et al. App. C, independently of mss_weight_matrix
        if i == j:
            return 1.0 / n
        return (n - m) / (n * m) if j == (i + 1) % b else 1.0 / m

    def pdf(x, mean, var):
        return math.exp(-0.5 * (x - mean) ** 2 / var) / math.sqrt(2 * math.pi * var)

    for i in range(b):
        comp = [[pdf(zs[i, k], ms[j, k], vs[j, k]) for k in range(d)] for j in range(b)]  # [j][k]
        q = sum(weight(i, j) * math.prod(comp[j]) for j in range(b))
        marg = sum(math.log(sum(weight(i, j) * comp[j][k] for j in range(b))) for k in range(d))
        assert float(parts.log_qz[i]) == pytest.approx(math.log(q), abs=1e-10)
        assert float(parts.log_prod_qzd[i]) == pytest.approx(marg, abs=1e-10)
        own = sum(math.log(pdf(zs[i, k], ms[i, k], vs[i, k])) for k in range(d))
        prior = sum(math.log(pdf(zs[i, k], 0.0, 1.0)) for k in range(d))
        assert float(parts.log_qz_given_x[i]) == pytest.approx(own, abs=1e-10)
        assert float(parts.log_pz[i]) == pytest.approx(prior, abs=1e-10)


@pytest.mark.parametrize("estimator", ["mss", "mws"])
def test_low_precision_inputs_are_computed_in_fp32_without_autocast(estimator):
    z, mu, logvar = _batch(b=16, d=8, seed=2)
    reference = decompose_kl(z, mu, logvar, dataset_size=100, estimator=estimator)
    low = [t.to(torch.bfloat16) for t in (z, mu, logvar)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        parts = decompose_kl(*low, dataset_size=100, estimator=estimator)
    assert parts.log_qz.dtype == torch.float32
    # same bf16-rounded inputs in float64: only fp32 rounding separates the two
    exact = decompose_kl(*[t.double() for t in low], dataset_size=100, estimator=estimator)
    assert float(parts.tc) == pytest.approx(float(exact.tc), abs=1e-3)
    assert float(reference.tc) == pytest.approx(float(exact.tc), abs=0.5)


def test_mws_matches_a_plain_loop():
    z, mu, logvar = _batch(b=4, d=2, seed=3)
    n = 50
    parts = decompose_kl(z, mu, logvar, dataset_size=n, estimator="mws")
    b, d = z.shape
    zs, ms, vs = z.numpy(), mu.numpy(), np.exp(logvar.numpy())

    def logpdf(x, m, v):
        return -0.5 * (math.log(2 * math.pi * v) + (x - m) ** 2 / v)

    for i in range(b):
        joint = [sum(logpdf(zs[i, k], ms[j, k], vs[j, k]) for k in range(d)) for j in range(b)]
        log_qz = math.log(sum(math.exp(v) for v in joint)) - math.log(n * b)
        marg = sum(
            math.log(sum(math.exp(logpdf(zs[i, k], ms[j, k], vs[j, k])) for j in range(b))) - math.log(n * b)
            for k in range(d)
        )
        assert float(parts.log_qz[i]) == pytest.approx(log_qz, abs=1e-10)
        assert float(parts.log_prod_qzd[i]) == pytest.approx(marg, abs=1e-10)


def test_dataset_size_is_checked():
    z, mu, logvar = _batch()
    with pytest.raises(ConfigError, match="dataset_size"):
        decompose_kl(z, mu, logvar, dataset_size=3)
    with pytest.raises(ConfigError, match="batch_size"):
        decompose_kl(z[:1], mu[:1], logvar[:1], dataset_size=100)
    with pytest.raises(TypeError):
        decompose_kl(z, mu, logvar)  # N is required, never defaulted to the batch size
    with pytest.raises(ConfigError, match="dataset_size"):
        decompose_kl(z, mu, logvar, dataset_size=1000.0)
    with pytest.raises(ConfigError, match="estimator"):
        decompose_kl(z, mu, logvar, dataset_size=1000, estimator="exact")


def test_kl_closed_form_matches_monte_carlo():
    mu = torch.tensor([[0.5, -1.0]], dtype=torch.float64)
    logvar = torch.tensor([[-0.5, 0.3]], dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    z = mu + torch.randn(200_000, 2, generator=g, dtype=torch.float64) * torch.exp(0.5 * logvar)
    mc = (gaussian_log_density(z, mu, logvar) - gaussian_log_density(z, 0 * z, 0 * z)).mean(0)
    assert torch.allclose(kl_to_standard_normal(mu, logvar)[0], mc, atol=0.01)


def _exact_tc(mu, sigma, z):
    """TC of the full-data mixture q(z) = 1/N sum_n N(mu_n, sigma^2), evaluated at samples z (numpy)."""
    def log_mix(points, means):  # points [S, D'], means [N, D']
        sq = ((points[:, None, :] - means[None, :, :]) / sigma) ** 2
        comp = -0.5 * sq.sum(-1) - points.shape[1] * math.log(sigma * math.sqrt(2 * math.pi))
        mx = comp.max(1, keepdims=True)
        return (mx[:, 0] + np.log(np.exp(comp - mx).mean(1)))

    joint = log_mix(z, mu)
    marginals = sum(log_mix(z[:, [k]], mu[:, [k]]) for k in range(mu.shape[1]))
    return float((joint - marginals).mean())


def test_mss_estimate_is_close_to_the_exact_tc_and_mws_is_not():
    rng = np.random.default_rng(0)
    n, d, b, sigma = 2000, 4, 128, 0.1
    # Correlated means: the first two dims share a component, so TC > 0.
    shared = rng.normal(size=(n, 1))
    mu = np.concatenate([shared + 0.3 * rng.normal(size=(n, 2)), rng.normal(size=(n, d - 2))], axis=1)
    idx = rng.integers(0, n, size=3000)
    z_eval = mu[idx] + sigma * rng.normal(size=(3000, d))
    exact = _exact_tc(mu, sigma, z_eval)

    g = torch.Generator().manual_seed(1)
    mu_t = torch.as_tensor(mu)
    logvar_t = torch.full_like(mu_t, 2 * math.log(sigma))
    estimates = {"mss": [], "mws": []}
    for _ in range(40):
        batch = torch.randperm(n, generator=g)[:b]
        m, lv = mu_t[batch], logvar_t[batch]
        z = m + sigma * torch.randn(m.shape, generator=g, dtype=torch.float64)
        for est in estimates:
            estimates[est].append(float(decompose_kl(z, m, lv, dataset_size=n, estimator=est).tc))
    mss, mws = np.mean(estimates["mss"]), np.mean(estimates["mws"])
    assert exact > 0.3
    assert abs(mss - exact) < 0.5, (mss, exact)
    assert abs(mws - exact) > 2.0, (mws, exact)
