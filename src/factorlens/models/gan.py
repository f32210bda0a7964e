"""``gan``: a DCGAN at 64x64 with a 32-d N(0, I) latent, so directions can be discovered in a GAN latent
space as in Voynov & Babenko and SeFa. It has no encoder.

Non-saturating losses in softplus-of-logits form (``s`` = discriminator logit, ``D = sigmoid(s)``):
generator ``softplus(-s(G(z)))`` = ``-log D(G(z))`` with its own ``z ~ N(0, I)`` (one per image of the
batch; the images themselves are not used), discriminator ``softplus(-s(x)) + softplus(s(G(z)))`` =
``-log D(x) - log(1 - D(G(z)))``. The generator loss gives D's parameters no gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from factorlens.errors import ConfigError
from factorlens.models.base import LatentModel, StepOutput
from factorlens.models.nets import (
    DCGANDiscriminator,
    DCGANGenerator,
    logits_without_parameter_grad,
    transposed_conv_weight_as_matrix,
)


@dataclass
class GANConfig:
    latent_dim: int = 32
    width: int = 32  # channels of the last generator / first discriminator layer (DCGAN's ngf / ndf)

    def validate(self) -> None:
        if self.latent_dim < 1:
            raise ConfigError(f"model.latent_dim: must be >= 1, got {self.latent_dim}")
        if self.width < 4:
            raise ConfigError(f"model.width: must be >= 4, got {self.width}")


class GAN(LatentModel):
    has_encoder = False

    def __init__(self, config: GANConfig, channels: int) -> None:
        super().__init__()
        self.config = config
        self.latent_dim = config.latent_dim
        self.channels = channels
        self.generator = DCGANGenerator(config.latent_dim, channels, config.width)
        self.adversary = DCGANDiscriminator(channels, config.width)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise ConfigError("model 'gan' has no encoder: use a VAE run, or base codes from the prior")

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``z [B, d]`` -> images ``[B, C, 64, 64]`` in [0, 1]."""
        return torch.sigmoid(self.generator(z))

    def first_decoder_layer_weight(self) -> torch.Tensor:
        """``[8w * 4 * 4, d]`` (4096 x 32 by default): the z -> 4x4 feature map layer."""
        return transposed_conv_weight_as_matrix(self.generator.first)

    def compute_loss(self, x: torch.Tensor, *, dataset_size: int) -> StepOutput:
        z = torch.randn(x.shape[0], self.latent_dim, device=x.device)
        fake = self.decode(z)
        adv_gen = F.softplus(-logits_without_parameter_grad(self.adversary, fake).float()).mean()
        terms = {"loss": adv_gen.detach(), "adv_gen": adv_gen.detach()}
        return StepOutput(loss=adv_gen, terms=terms, x_hat=fake)

    def adversary_loss(self, x: torch.Tensor, x_hat: torch.Tensor) -> StepOutput:
        real_logits = self.adversary(x).float()
        fake_logits = self.adversary(x_hat.detach()).float()
        loss = F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
        terms = {
            "adv_disc": loss.detach(),
            "d_real": torch.sigmoid(real_logits).mean().detach(),
            "d_fake": torch.sigmoid(fake_logits).mean().detach(),
        }
        return StepOutput(loss=loss, terms=terms)
