"""Every registered model: shapes and ranges, finite terms, learning, strict config, SeFa weight view."""

import pytest
import torch
import torch.nn.functional as F

from factorlens.errors import ConfigError
from factorlens.models import MODELS, build_model

ALL = ["vae", "beta-vae", "btcvae", "btcvae-resnet", "btcvae-adv", "gan"]


def test_registry_names():
    assert MODELS.names() == sorted(ALL)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("channels", [1, 3])
def test_forward_backward_and_ranges(name, channels):
    torch.manual_seed(0)
    model = build_model(name, {"latent_dim": 8}, channels=channels)
    x = torch.rand(4, channels, 64, 64)
    out = model.compute_loss(x, dataset_size=100)
    assert out.x_hat.shape == x.shape
    x_hat = out.x_hat.detach()
    assert float(x_hat.min()) >= 0.0 and float(x_hat.max()) <= 1.0
    assert all(torch.isfinite(v) for v in out.terms.values())
    out.loss.backward()
    if model.has_encoder:
        mu, logvar = model.encode(x)
        assert mu.shape == (4, 8) and logvar.shape == (4, 8)
    if model.adversary is not None:
        # the generator loss must not produce gradients for the adversary
        assert all(p.grad is None for p in model.adversary.parameters())


@pytest.mark.parametrize("name", ["vae", "btcvae", "btcvae-resnet", "btcvae-adv"])
def test_a_few_steps_lower_the_loss(name):
    torch.manual_seed(0)
    model = build_model(name, {"latent_dim": 4}, channels=1)
    x = (torch.rand(8, 1, 64, 64) > 0.7).float()
    opt = torch.optim.Adam([p for n, p in model.named_parameters() if not n.startswith("adversary.")], lr=1e-3)
    losses = []
    for _ in range(15):
        torch.manual_seed(1)  # same reparameterisation noise: compare like with like
        out = model.compute_loss(x, dataset_size=100)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(float(out.terms["rec"]))
    assert losses[-1] < 0.8 * losses[0]


def test_terms_of_the_tc_family():
    torch.manual_seed(0)
    model = build_model("btcvae", {"latent_dim": 6}, channels=3)
    out = model.compute_loss(torch.rand(8, 3, 64, 64), dataset_size=1000)
    t = out.terms
    assert {"loss", "rec", "kl", "mi", "tc", "dwkl"} <= set(t)
    assert float(t["loss"]) == pytest.approx(float(t["rec"] + t["mi"] + 6.0 * t["tc"] + t["dwkl"]), rel=1e-5)


def test_beta_vae_with_beta_one_equals_vae():
    x = torch.rand(4, 3, 64, 64)
    torch.manual_seed(0)
    vae = build_model("vae", {"latent_dim": 5}, channels=3)
    torch.manual_seed(0)
    bvae = build_model("beta-vae", {"latent_dim": 5, "beta": 1}, channels=3)
    torch.manual_seed(1)
    a = vae.compute_loss(x, dataset_size=10).loss
    torch.manual_seed(1)
    b = bvae.compute_loss(x, dataset_size=10).loss
    assert float(a) == pytest.approx(float(b), rel=1e-6)


def test_adversary_loss_is_minus_log_d_form():
    torch.manual_seed(0)
    model = build_model("btcvae-adv", {"latent_dim": 4}, channels=3)
    x, x_hat = torch.rand(4, 3, 64, 64), torch.rand(4, 3, 64, 64)
    out = model.adversary_loss(x, x_hat)
    d_real = torch.sigmoid(model.adversary(x))
    d_fake = torch.sigmoid(model.adversary(x_hat))
    expected = -torch.log(d_real).mean() - torch.log(1 - d_fake).mean()
    assert float(out.loss) == pytest.approx(float(expected), rel=1e-5)
    gen = model.compute_loss(x, dataset_size=10).terms["adv_gen"]
    assert float(gen) >= 0.0


@pytest.mark.parametrize("name", ALL)
def test_first_decoder_layer_weight_is_the_layers_linear_map(name):
    torch.manual_seed(0)
    model = build_model(name, {"latent_dim": 6}, channels=3)
    w = model.first_decoder_layer_weight()
    first = model.generator.first if name == "gan" else model.decoder.first
    assert w.data_ptr() == first.weight.data_ptr()  # a view, so hooks on the layer see the same tensor
    for k in range(6):
        e = torch.zeros(1, 6)
        e[0, k] = 1.0
        out = F.conv_transpose2d(e[:, :, None, None], first.weight, None, stride=first.stride)
        assert torch.allclose(out.flatten(), w[:, k], atol=1e-6)


@pytest.mark.parametrize(
    "params, key",
    [
        ({"betta": 6}, "model.betta"),
        ({"beta": -1}, "model.beta"),
        ({"beta": float("nan")}, "model.beta"),
        ({"beta": "six"}, "model.beta"),
        ({"latent_dim": 0}, "model.latent_dim"),
        ({"latent_dim": 2.5}, "model.latent_dim"),
        ({"estimator": "exact"}, "model.estimator"),
    ],
)
def test_bad_params_name_the_key(params, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        build_model("btcvae", params, channels=3)


def test_vae_has_no_beta_and_gan_has_no_encoder():
    with pytest.raises(ConfigError, match="model.beta"):
        build_model("vae", {"beta": 4}, channels=3)
    gan = build_model("gan", {}, channels=3)
    with pytest.raises(ConfigError, match="no encoder"):
        gan.encode(torch.rand(2, 3, 64, 64))
    with pytest.raises(ConfigError, match="unknown model"):
        build_model("vqvae", {}, channels=3)
