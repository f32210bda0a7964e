"""Model registry: ``vae``, ``beta-vae``, ``btcvae``, ``btcvae-resnet``, ``btcvae-adv``, ``gan``.

``build_model(name, params, channels=C)`` validates ``params`` against the model's config dataclass and
returns a :class:`~factorlens.models.base.LatentModel`. See ``docs/models.md`` for objectives,
architectures, parameter counts and step times.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from factorlens.errors import ConfigError
from factorlens.models.adversarial import AdversarialBetaTCVAE, AdversarialBetaTCVAEConfig
from factorlens.models.base import LatentModel, StepOutput
from factorlens.models.btcvae import BetaTCVAE, BetaTCVAEConfig, build_residual_btcvae
from factorlens.models.config import build_config
from factorlens.models.gan import GAN, GANConfig
from factorlens.models.vae import VAE, BetaVAE, BetaVAEConfig, VAEConfig
from factorlens.registry import Registry


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: its config dataclass and ``factory(config, channels) -> LatentModel``."""

    config_class: type
    factory: Callable[[Any, int], LatentModel]
    description: str


MODELS: Registry[ModelEntry] = Registry("model")

MODELS.register("vae")(ModelEntry(VAEConfig, VAE, "VAE (Kingma & Welling), Chen et al.'s conv net"))
MODELS.register("beta-vae")(ModelEntry(BetaVAEConfig, BetaVAE, "β-VAE (Higgins et al.), conv net"))
MODELS.register("btcvae")(ModelEntry(BetaTCVAEConfig, BetaTCVAE, "β-TCVAE (Chen et al.), conv net"))
MODELS.register("btcvae-resnet")(
    ModelEntry(
        BetaTCVAEConfig,
        build_residual_btcvae,
        "Ours-resnet: β-TCVAE with bottleneck residual blocks (Sarhan et al.)",
    )
)
MODELS.register("btcvae-adv")(
    ModelEntry(
        AdversarialBetaTCVAEConfig,
        AdversarialBetaTCVAE,
        "Ours-Adv: residual β-TCVAE + discriminator (Sarhan et al. Eq. 3)",
    )
)
MODELS.register("gan")(ModelEntry(GANConfig, GAN, "DCGAN generator/discriminator, 32-d prior, no encoder"))


def model_config_class(name: str) -> type:
    """The config dataclass of model ``name`` (its fields are the keys allowed in ``model:``)."""
    return MODELS.get(name).config_class


def build_model(name: str, params: dict[str, Any] | None = None, *, channels: int) -> LatentModel:
    """Build a registered model for ``[B, channels, 64, 64]`` images.

    Bad params raise a one-line :class:`ConfigError` naming ``model.<key>``; an unknown name lists the
    registered models.
    """
    entry = MODELS.get(name)
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ConfigError(f"model {name!r}: image channels must be a positive integer, got {channels!r}")
    config = build_config(entry.config_class, dict(params or {}))
    return entry.factory(config, channels)


__all__ = ["MODELS", "LatentModel", "ModelEntry", "StepOutput", "build_model", "model_config_class"]
