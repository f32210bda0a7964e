"""Model registry: objectives on injected networks.

A registered model is an objective (its config dataclass and a factory) plus the network family it uses
by default: ``vae``, ``beta-vae``, ``btcvae`` (``conv``), and the paper's presets ``btcvae-resnet``
(Ours-resnet: ``btcvae`` on ``resnet``), ``btcvae-adv`` (Ours-Adv, ``resnet``), ``gan`` (``dcgan``).
``model.network`` in a config picks another family from ``factorlens.networks.NETWORKS``.

``build_model(name, params, channels=C, image_size=S, network=None)`` validates ``params`` with the one
option parser (:func:`factorlens.schema.parse`) and returns a :class:`~factorlens.models.base.LatentModel`.
See ``docs/models.md`` for objectives, architectures, parameter counts and step times.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from factorlens.errors import ConfigError
from factorlens.models.adversarial import AdversarialBetaTCVAE, AdversarialBetaTCVAEConfig
from factorlens.models.base import LatentModel, StepOutput
from factorlens.models.btcvae import BetaTCVAE, BetaTCVAEConfig
from factorlens.models.ddpm import DDPMConfig, build_ddpm
from factorlens.models.diffae import DiffAEConfig, build_diffae
from factorlens.models.gan import GAN, GANConfig
from factorlens.models.vae import VAE, BetaVAE, BetaVAEConfig, VAEConfig
from factorlens.networks import NETWORKS, network_family
from factorlens.registry import Registry
from factorlens.schema import parse


@dataclass(frozen=True)
class Networks:
    """What a factory builds its networks from: the family, the image size and the channel count."""

    family_name: str
    image_size: int
    channels: int

    def family(self, **options: Any):
        return network_family(self.family_name, **options)


@dataclass(frozen=True)
class ModelEntry:
    """A registered model.

    Attributes:
        config_class: the objective's config dataclass (its fields are the keys allowed in ``model:``).
        factory: ``factory(config, channels)`` for a model that builds its own networks (``network`` None),
            else ``factory(config, networks: Networks)``.
        description: one line for ``factorlens models``.
        network: the default network family, or None when the model takes no ``model.network``.
    """

    config_class: type
    factory: Callable[..., LatentModel]
    description: str
    network: str | None = None


def _vae_factory(model_class: type) -> Callable[[Any, Networks], LatentModel]:
    def build(config: VAEConfig, networks: Networks) -> LatentModel:
        family, size, channels = networks.family(), networks.image_size, networks.channels
        encoder = family.encoder(channels, 2 * config.latent_dim, size)
        decoder = family.decoder(config.latent_dim, channels, size)
        return model_class(config, encoder=encoder, decoder=decoder, channels=channels)

    return build


def _adversarial_btcvae(config: AdversarialBetaTCVAEConfig, networks: Networks) -> AdversarialBetaTCVAE:
    family, size, channels = networks.family(), networks.image_size, networks.channels
    # Creation order encoder, decoder, discriminator: the order v1 drew the initial weights in.
    encoder = family.encoder(channels, 2 * config.latent_dim, size)
    decoder = family.decoder(config.latent_dim, channels, size)
    discriminator = family.discriminator(channels, size)
    return AdversarialBetaTCVAE(config, encoder=encoder, decoder=decoder, discriminator=discriminator,
                                channels=channels)


def _gan(config: GANConfig, networks: Networks) -> GAN:
    family = networks.family(width=config.width)
    generator = family.decoder(config.latent_dim, networks.channels, networks.image_size)
    discriminator = family.discriminator(networks.channels, networks.image_size)
    return GAN(config, generator=generator, discriminator=discriminator, channels=networks.channels)


MODELS: Registry[ModelEntry] = Registry("model")

MODELS.register("vae")(ModelEntry(VAEConfig, _vae_factory(VAE), "VAE (Kingma & Welling)", "conv"))
MODELS.register("beta-vae")(
    ModelEntry(BetaVAEConfig, _vae_factory(BetaVAE), "β-VAE (Higgins et al.)", "conv"))
MODELS.register("btcvae")(
    ModelEntry(BetaTCVAEConfig, _vae_factory(BetaTCVAE), "β-TCVAE (Chen et al.)", "conv"))
MODELS.register("btcvae-resnet")(ModelEntry(
    BetaTCVAEConfig, _vae_factory(BetaTCVAE),
    "Ours-resnet: β-TCVAE on bottleneck residual blocks (Sarhan et al.)", "resnet",
))
MODELS.register("btcvae-adv")(ModelEntry(
    AdversarialBetaTCVAEConfig, _adversarial_btcvae,
    "Ours-Adv: residual β-TCVAE + discriminator (Sarhan et al. Eq. 3)", "resnet",
))
MODELS.register("gan")(ModelEntry(GANConfig, _gan, "GAN (non-saturating), 32-d prior, no encoder", "dcgan"))
MODELS.register("ddpm")(ModelEntry(
    DDPMConfig, build_ddpm, "DDPM (Ho et al.): ε-prediction U-Net, DDIM sampling/inversion", "unet"))
MODELS.register("diffae")(ModelEntry(
    DiffAEConfig, build_diffae,
    "Diffusion autoencoder (Preechakul et al.): semantic encoder conditioning the DDPM U-Net", "unet"))


def model_config_class(name: str) -> type:
    """The config dataclass of model ``name`` (its fields are the keys allowed in ``model:``)."""
    return MODELS.get(name).config_class


def model_network(name: str, network: str | None = None) -> str | None:
    """The network family model ``name`` is built on: ``network`` (checked) or the model's default."""
    entry = MODELS.get(name)
    if network is None:
        return entry.network
    if entry.network is None:
        raise ConfigError(f"model.network: model {name!r} builds its own networks and takes no network")
    NETWORKS.get(network)
    return network


def parse_model_params(name: str, params: dict[str, Any] | None, *, where: str = "config") -> Any:
    """The objective's config dataclass from ``params`` (errors name ``model.<key>`` and ``where``)."""
    return parse(model_config_class(name), params, where=where, prefix="model", owner=f"model {name}")


def build_model(name: str, params: dict[str, Any] | Any | None = None, *, channels: int,
                image_size: int = 64, network: str | None = None, where: str = "config") -> LatentModel:
    """Build a registered model for ``[B, channels, image_size, image_size]`` images.

    ``params``: a mapping (validated; bad params raise a one-line :class:`ConfigError` naming
    ``model.<key>``) or an instance of the model's config dataclass. An unknown name lists the registered
    models.
    """
    entry = MODELS.get(name)
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ConfigError(f"model {name!r}: image channels must be a positive integer, got {channels!r}")
    config = (params if isinstance(params, entry.config_class)
              else parse_model_params(name, params, where=where))
    family = model_network(name, network)
    if family is None:
        return entry.factory(config, channels)
    return entry.factory(config, Networks(family, image_size, channels))


__all__ = ["MODELS", "LatentModel", "ModelEntry", "Networks", "StepOutput", "build_model",
           "model_config_class", "model_network", "parse_model_params"]
