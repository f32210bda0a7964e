"""Model registry: ``vae``, ``beta-vae``, ``btcvae``, ``btcvae-resnet``, ``btcvae-adv``, ``gan``.

``build_model(name, params, channels=C)`` validates ``params`` against the model's config dataclass and
returns a :class:`~factorlens.models.base.LatentModel`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from factorlens.models.base import LatentModel, StepOutput
from factorlens.models.config import build_config
from factorlens.models.gan import GAN, GANConfig
from factorlens.models.vae import (
    VAE,
    AdversarialBetaTCVAE,
    AdversarialBetaTCVAEConfig,
    BetaTCVAE,
    BetaTCVAEConfig,
    BetaVAE,
    BetaVAEConfig,
    VAEConfig,
)
from factorlens.registry import Registry


@dataclass(frozen=True)
class ModelEntry:
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
        lambda config, channels: BetaTCVAE(config, channels, residual=True),
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
MODELS.register("gan")(ModelEntry(GANConfig, GAN, "DCGAN generator/discriminator, 32-d prior"))


def model_config_class(name: str) -> type:
    return MODELS.get(name).config_class


def build_model(name: str, params: dict[str, Any] | None = None, *, channels: int) -> LatentModel:
    """Build a registered model; bad params raise a ConfigError naming ``model.<key>``."""
    entry = MODELS.get(name)
    config = build_config(entry.config_class, dict(params or {}))
    return entry.factory(config, channels)


__all__ = ["MODELS", "LatentModel", "StepOutput", "build_model", "model_config_class"]
