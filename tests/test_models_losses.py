"""Each model's loss against an independent recomputation from its own encoder/decoder/discriminator."""

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from factorlens.models import build_model
from factorlens.objectives import decompose_kl


@torch.no_grad()
def _recompute(model, x, seed):
    """rec, analytic KL and the reparameterised sample, recomputed with the same noise as compute_loss."""
    torch.manual_seed(seed)
    mu, logvar = model.encode(x)
    z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
    x_hat = model.decode(z)
    rec = ((x - x_hat) ** 2).sum() / x.shape[0]
    std = torch.exp(0.5 * logvar)
    kl = kl_divergence(Normal(mu, std), Normal(torch.zeros_like(mu), torch.ones_like(std))).sum() / x.shape[0]
    return rec, kl, z, mu, logvar, x_hat


def test_vae_loss_is_rec_plus_kl():
    torch.manual_seed(0)
    model = build_model("vae", {"latent_dim": 5}, channels=3)
    x = torch.rand(4, 3, 64, 64)
    torch.manual_seed(7)
    out = model.compute_loss(x, dataset_size=10)
    rec, kl, *_ = _recompute(model, x, seed=7)
    assert float(out.terms["rec"]) == pytest.approx(float(rec), rel=1e-5)
    assert float(out.terms["kl"]) == pytest.approx(float(kl), rel=1e-4)
    assert float(out.terms["loss"]) == pytest.approx(float(rec + kl), rel=1e-5)
    assert set(out.terms) == {"loss", "rec", "kl"}


def test_beta_vae_weights_the_kl_and_beta_one_equals_vae():
    x = torch.rand(4, 3, 64, 64)
    losses = {}
    for name, params in [("vae", {}), ("beta-vae", {"beta": 1}), ("beta-vae", {"beta": 4.0})]:
        torch.manual_seed(0)  # same initial weights
        model = build_model(name, {"latent_dim": 5, **params}, channels=3)
        torch.manual_seed(1)  # same reparameterisation noise
        out = model.compute_loss(x, dataset_size=10)
        losses[(name, params.get("beta"))] = out.terms
    vae_loss = float(losses[("vae", None)]["loss"])
    assert float(losses[("beta-vae", 1)]["loss"]) == pytest.approx(vae_loss, rel=1e-6)
    t4 = losses[("beta-vae", 4.0)]
    assert float(t4["loss"]) == pytest.approx(float(t4["rec"] + 4.0 * t4["kl"]), rel=1e-6)


@pytest.mark.parametrize("estimator", ["mss", "mws"])
def test_btcvae_loss_is_rec_plus_weighted_decomposition(estimator):
    torch.manual_seed(0)
    params = {"latent_dim": 6, "alpha": 0.5, "beta": 3.0, "gamma": 2.0, "estimator": estimator}
    model = build_model("btcvae", params, channels=3)
    x = torch.rand(8, 3, 64, 64)
    torch.manual_seed(3)
    out = model.compute_loss(x, dataset_size=1000)
    rec, _, z, mu, logvar, _ = _recompute(model, x, seed=3)
    parts = decompose_kl(z.double(), mu.double(), logvar.double(), dataset_size=1000, estimator=estimator)
    t = out.terms
    for key in ("mi", "tc", "dwkl"):
        assert float(t[key]) == pytest.approx(float(getattr(parts, key)), abs=2e-3)
    expected = rec + 0.5 * parts.mi + 3.0 * parts.tc + 2.0 * parts.dwkl
    assert float(t["loss"]) == pytest.approx(float(expected), rel=1e-5)


def test_adversary_loss_is_the_minus_log_d_form():
    torch.manual_seed(0)
    model = build_model("btcvae-adv", {"latent_dim": 4}, channels=3)
    x, x_hat = torch.rand(4, 3, 64, 64), torch.rand(4, 3, 64, 64)
    out = model.adversary_loss(x, x_hat)
    with torch.no_grad():
        d_real = torch.sigmoid(model.adversary(x))
        d_fake = torch.sigmoid(model.adversary(x_hat))
    expected = -torch.log(d_real).mean() - torch.log(1 - d_fake).mean()
    assert float(out.loss.detach()) == pytest.approx(float(expected), rel=1e-5)
    assert float(out.terms["d_real"]) == pytest.approx(float(d_real.mean()), rel=1e-5)


def test_adversarial_generator_loss_adds_weighted_minus_log_d_of_the_reconstruction():
    torch.manual_seed(0)
    model = build_model("btcvae-adv", {"latent_dim": 4, "adv_weight": 2.5}, channels=3)
    x = torch.rand(4, 3, 64, 64)
    torch.manual_seed(5)
    out = model.compute_loss(x, dataset_size=50)
    *_, x_hat = _recompute(model, x, seed=5)
    with torch.no_grad():
        adv_gen = -torch.log(torch.sigmoid(model.adversary(x_hat))).mean()
    t = out.terms
    assert float(t["adv_gen"]) == pytest.approx(float(adv_gen), rel=1e-4)
    vae_part = t["rec"] + t["mi"] + 6.0 * t["tc"] + t["dwkl"]
    assert float(t["loss"]) == pytest.approx(float(vae_part + 2.5 * t["adv_gen"]), rel=1e-5)
    # the gradient of -log D(x_hat) reaches the decoder but not D
    model.zero_grad()
    (out.loss - out.loss.detach()).backward()
    assert all(p.grad is None for p in model.adversary.parameters())


def test_gan_generator_loss_is_non_saturating_on_its_own_prior_samples():
    torch.manual_seed(0)
    model = build_model("gan", {"latent_dim": 8}, channels=1)
    x = torch.rand(6, 1, 64, 64)
    torch.manual_seed(2)
    out = model.compute_loss(x, dataset_size=6)
    torch.manual_seed(2)
    with torch.no_grad():
        fake = model.decode(torch.randn(6, 8))
        expected = -torch.log(torch.sigmoid(model.adversary(fake))).mean()
    assert float(out.loss.detach()) == pytest.approx(float(expected), rel=1e-5)
    assert torch.allclose(out.x_hat, fake, atol=1e-6)
    disc = model.adversary_loss(x, out.x_hat)
    with torch.no_grad():
        d_real, d_fake = torch.sigmoid(model.adversary(x)), torch.sigmoid(model.adversary(fake))
    expected_disc = -torch.log(d_real).mean() - torch.log(1 - d_fake).mean()
    assert float(disc.loss.detach()) == pytest.approx(float(expected_disc), rel=1e-5)
