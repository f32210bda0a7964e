"""``gan``: a GAN with a 32-d N(0, I) latent (DCGAN networks by default), so directions can be
discovered in a GAN latent space as in Voynov & Babenko and SeFa. It has no encoder.

Losses (``factorlens.objectives.adversarial``): generator ``-log D(G(z))`` with its own ``z ~ N(0, I)``
(one per image of the batch; the images themselves are not used), discriminator
``-log D(x) - log(1 - D(G(z)))``. The generator loss gives D's parameters no gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from factorlens.errors import ConfigError
from factorlens.models.base import LatentModel, StepOutput
from factorlens.networks import transposed_conv_weight_as_matrix
from factorlens.objectives import discriminator_loss, generator_adversarial_loss
from factorlens.schema import integer, option


@dataclass(frozen=True)
class GANConfig:
    latent_dim: int = option(32, integer(1), "dimensions of the latent code z")
    width: int = option(32, integer(4), "channels of the last generator / first discriminator layer of the "
                                        "dcgan networks (DCGAN's ngf / ndf)")


class GAN(LatentModel):
    """Generator ``[B, d] -> logits [B, C, S, S]`` (latent-reading layer ``generator.first``) and
    discriminator ``self.adversary`` ``[B, C, S, S] -> [B, 1]``, both injected."""

    has_encoder = False

    def __init__(self, config: GANConfig, *, generator: nn.Module, discriminator: nn.Module,
                 channels: int) -> None:
        super().__init__()
        self.config = config
        self.latent_dim = config.latent_dim
        self.channels = channels
        self.generator = generator
        self.adversary = discriminator

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise ConfigError("model 'gan' has no encoder: use a VAE run, or base codes from the prior")

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``z [B, d]`` -> images ``[B, C, S, S]`` in [0, 1]."""
        return torch.sigmoid(self.generator(z))

    def first_decoder_layer(self) -> nn.Module:
        return self.generator.first

    def first_decoder_layer_weight(self) -> torch.Tensor:
        """``[8w * 4 * 4, d]`` (4096 x 32 by default): the z -> 4x4 feature map layer."""
        return transposed_conv_weight_as_matrix(self.generator.first)

    def compute_loss(self, x: torch.Tensor, *, dataset_size: int) -> StepOutput:
        z = torch.randn(x.shape[0], self.latent_dim, device=x.device)
        fake = self.decode(z)
        adv_gen = generator_adversarial_loss(self.adversary, fake)
        terms = {"loss": adv_gen.detach(), "adv_gen": adv_gen.detach()}
        return StepOutput(loss=adv_gen, terms=terms, x_hat=fake)

    def adversary_loss(self, x: torch.Tensor, x_hat: torch.Tensor) -> StepOutput:
        loss, terms = discriminator_loss(self.adversary, x, x_hat)
        return StepOutput(loss=loss, terms=terms)
