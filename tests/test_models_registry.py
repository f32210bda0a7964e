"""The model registry and strict config validation."""

import dataclasses

import pytest
import torch

from factorlens.errors import ConfigError
from factorlens.models import MODELS, build_model, model_config_class

ALL = ["vae", "beta-vae", "btcvae", "btcvae-resnet", "btcvae-adv", "gan"]


def test_registry_names_and_defaults():
    assert MODELS.names() == sorted([*ALL, "ddpm", "diffae"])  # the paper's six and the diffusion models
    defaults = {name: dataclasses.asdict(model_config_class(name)()) for name in ALL}
    assert defaults["vae"] == {"latent_dim": 32}
    assert defaults["beta-vae"] == {"latent_dim": 32, "beta": 6.0}
    tc = {"latent_dim": 32, "alpha": 1.0, "beta": 6.0, "gamma": 1.0, "estimator": "mss"}
    assert defaults["btcvae"] == tc and defaults["btcvae-resnet"] == tc
    assert defaults["btcvae-adv"] == {**tc, "adv_weight": 1.0}
    assert defaults["gan"]["latent_dim"] == 32


def test_build_model_applies_params():
    model = build_model("btcvae", {"latent_dim": 5, "beta": 2, "estimator": "mws"}, channels=1)
    assert model.latent_dim == 5 and model.channels == 1
    assert model.config.beta == 2.0 and isinstance(model.config.beta, float)  # int accepted for a float
    assert model.config.estimator == "mws"
    mu, logvar = model.encode(torch.rand(2, 1, 64, 64))
    assert mu.shape == (2, 5) and logvar.shape == (2, 5)


@pytest.mark.parametrize(
    "name, params, key",
    [
        ("btcvae", {"betta": 6}, "model.betta"),
        ("btcvae", {"beta": -1}, "model.beta"),
        ("btcvae", {"beta": float("nan")}, "model.beta"),
        ("btcvae", {"beta": float("inf")}, "model.beta"),
        ("btcvae", {"beta": "six"}, "model.beta"),
        ("btcvae", {"beta": True}, "model.beta"),
        ("btcvae", {"alpha": -0.5}, "model.alpha"),
        ("btcvae", {"gamma": None}, "model.gamma"),
        ("btcvae", {"latent_dim": 0}, "model.latent_dim"),
        ("btcvae", {"latent_dim": 2.5}, "model.latent_dim"),
        ("btcvae", {"latent_dim": "32"}, "model.latent_dim"),
        ("btcvae", {"estimator": "exact"}, "model.estimator"),
        ("btcvae", {"estimator": 1}, "model.estimator"),
        ("btcvae", {"adv_weight": 1.0}, "model.adv_weight"),  # only btcvae-adv has it
        ("btcvae-adv", {"adv_weight": -1.0}, "model.adv_weight"),
        ("beta-vae", {"beta": -2}, "model.beta"),
        ("vae", {"beta": 4}, "model.beta"),  # vae has no beta: use beta-vae
        ("gan", {"width": 2}, "model.width"),
        ("gan", {"latent_dim": -3}, "model.latent_dim"),
    ],
)
def test_bad_params_name_the_key(name, params, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as info:
        build_model(name, params, channels=3)
    assert "\n" not in str(info.value)


def test_zero_weights_are_allowed():
    model = build_model("btcvae", {"alpha": 0, "beta": 0.0, "gamma": 0}, channels=3)
    assert (model.config.alpha, model.config.beta, model.config.gamma) == (0.0, 0.0, 0.0)


def test_unknown_model_and_bad_channels():
    with pytest.raises(ConfigError, match="unknown model 'vqvae'.*btcvae"):
        build_model("vqvae", {}, channels=3)
    with pytest.raises(ConfigError, match="channels"):
        build_model("vae", {}, channels=0)


def test_gan_has_no_encoder():
    gan = build_model("gan", {}, channels=3)
    assert gan.has_encoder is False
    assert build_model("vae", {}, channels=3).has_encoder is True
    with pytest.raises(ConfigError, match="no encoder"):
        gan.encode(torch.rand(2, 3, 64, 64))
