"""Every registered model: forward/backward, output ranges, learning, channels_last, the SeFa weight view,
and the architectures' parameter counts against closed-form counts."""

import pytest
import torch
from torch import nn

from factorlens.models import build_model

ALL = ["vae", "beta-vae", "btcvae", "btcvae-resnet", "btcvae-adv", "gan"]


def _generator_parameters(model):
    adversary_ids = {id(p) for p in model.adversary.parameters()} if model.adversary is not None else set()
    return [p for p in model.parameters() if id(p) not in adversary_ids]


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("channels", [1, 3])
def test_forward_backward_ranges_and_gradients(name, channels):
    torch.manual_seed(0)
    model = build_model(name, {"latent_dim": 8}, channels=channels)
    x = torch.rand(4, channels, 64, 64)
    out = model.compute_loss(x, dataset_size=100)
    x_hat = out.x_hat.detach()
    assert x_hat.shape == x.shape
    assert 0.0 <= float(x_hat.min()) and float(x_hat.max()) <= 1.0
    assert all(bool(torch.isfinite(v)) and v.dim() == 0 for v in out.terms.values())
    assert float(out.terms["loss"]) == pytest.approx(float(out.loss.detach()), rel=1e-6)
    out.loss.backward()
    # every generator parameter gets a finite gradient; the adversary none from the generator loss
    for p in _generator_parameters(model):
        assert p.grad is not None and bool(torch.isfinite(p.grad).all())
    if model.adversary is not None:
        assert all(p.grad is None for p in model.adversary.parameters())
        adv = model.adversary_loss(x, out.x_hat)
        adv.loss.backward()
        assert all(p.grad is not None for p in model.adversary.parameters())
        assert float(adv.terms["adv_disc"]) > 0.0


@pytest.mark.parametrize("name", ALL)
def test_a_few_adam_steps_lower_the_loss(name):
    torch.manual_seed(0)
    model = build_model(name, {"latent_dim": 4}, channels=1)
    x = (torch.rand(8, 1, 64, 64) > 0.7).float()
    opt = torch.optim.Adam(_generator_parameters(model), lr=1e-3)
    losses = []
    for _ in range(12):
        torch.manual_seed(1)  # the same reparameterisation (or GAN) noise each step: compare like with like
        out = model.compute_loss(x, dataset_size=100)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(float(out.loss.detach()))
    assert losses[-1] < 0.8 * losses[0], losses


@pytest.mark.parametrize("name", ALL)
def test_first_decoder_layer_weight_is_a_view_of_the_layers_linear_map(name):
    torch.manual_seed(0)
    model = build_model(name, {"latent_dim": 6}, channels=3)
    w = model.first_decoder_layer_weight()
    first = model.generator.first if name == "gan" else model.decoder.first
    assert w.shape == (first.weight[0].numel(), 6)
    assert w.data_ptr() == first.weight.data_ptr() and w._base is first.weight  # a view, not a copy
    with torch.no_grad():
        bias_only = first(torch.zeros(1, 6, 1, 1)).flatten()
        for k in range(6):
            e = torch.zeros(1, 6, 1, 1)
            e[0, k] = 1.0
            assert torch.allclose(first(e).flatten() - bias_only, w[:, k], atol=1e-6)
        z = torch.randn(3, 6)
        assert torch.allclose(first(z[:, :, None, None]).flatten(1) - bias_only, z @ w.t(), atol=1e-5)


@pytest.mark.parametrize("name", ["btcvae", "btcvae-resnet", "gan"])
def test_channels_last_gives_the_same_outputs(name):
    torch.manual_seed(0)
    model = build_model(name, {"latent_dim": 8}, channels=3).eval()
    x = torch.rand(2, 3, 64, 64)
    z = torch.randn(2, 8)
    with torch.no_grad():
        reference = model.decode(z)
        codes = model.encode(x)[0] if model.has_encoder else None
        model = model.to(memory_format=torch.channels_last)
        assert torch.allclose(model.decode(z), reference, atol=1e-5)
        if codes is not None:
            x_cl = x.contiguous(memory_format=torch.channels_last)
            assert torch.allclose(model.encode(x_cl)[0], codes, atol=1e-5)


def _conv_params(c_in, c_out, k, bias=True):
    return c_in * c_out * k * k + (c_out if bias else 0)


def test_conv_net_parameter_count_matches_chen_et_al_architecture():
    d, c = 32, 3
    encoder = sum(_conv_params(a, b, 4) + 2 * b for a, b in [(c, 32), (32, 32), (32, 64), (64, 64)])
    encoder += _conv_params(64, 512, 4) + 2 * 512 + _conv_params(512, 2 * d, 1)
    decoder = _conv_params(d, 512, 1) + 2 * 512 + _conv_params(512, 64, 4) + 2 * 64
    decoder += sum(_conv_params(a, b, 4) + 2 * b for a, b in [(64, 64), (64, 32), (32, 32)])
    decoder += _conv_params(32, c, 4)
    model = build_model("vae", {}, channels=c)
    assert sum(p.numel() for p in model.encoder.parameters()) == encoder
    assert sum(p.numel() for p in model.decoder.parameters()) == decoder


def test_discriminator_is_the_residual_encoder_without_batch_norm():
    model = build_model("btcvae-adv", {}, channels=3)
    disc_modules = list(model.adversary.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in disc_modules)
    leaky = [m for m in disc_modules if isinstance(m, nn.LeakyReLU)]
    assert leaky and all(m.negative_slope == 0.2 for m in leaky)
    assert not any(type(m) is nn.ReLU for m in disc_modules)
    convs = [m.weight.shape for m in disc_modules if isinstance(m, nn.Conv2d)]
    encoder_convs = [m.weight.shape for m in model.encoder.modules() if isinstance(m, nn.Conv2d)]
    assert convs[:-1] == encoder_convs[:-1] and convs[-1][0] == 1 and encoder_convs[-1][0] == 64
    assert model.adversary(torch.rand(5, 3, 64, 64)).shape == (5, 1)
def test_generator_side_discriminator_call_leaves_parameters_and_running_stats_alone():
    from factorlens.networks import logits_without_parameter_grad

    torch.manual_seed(0)
    critic = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(),
                                 torch.nn.LazyLinear(1))
    critic(torch.randn(2, 1, 8, 8))  # materialise the lazy layer
    critic.train()
    running = critic[1].running_mean.clone()
    tracked = int(critic[1].num_batches_tracked)
    fake = torch.randn(4, 1, 8, 8, requires_grad=True)
    logits_without_parameter_grad(critic, fake).sum().backward()
    torch.testing.assert_close(critic[1].running_mean, running)  # no fakes written into D's statistics
    assert int(critic[1].num_batches_tracked) == tracked
    assert fake.grad is not None and fake.grad.abs().sum() > 0  # the generator still gets a gradient
    assert all(p.grad is None for p in critic.parameters())  # D does not
    # Train-mode BatchNorm still normalises with this batch's statistics (same output as a plain call).
    expected = critic(fake.detach())
    torch.testing.assert_close(logits_without_parameter_grad(critic, fake.detach()), expected)
