"""A small DCGAN at 64x64 with a 32-d N(0, I) latent, so directions can be discovered in a GAN latent
space as in Voynov & Babenko and SeFa. Non-saturating losses in softplus-of-logits form."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from factorlens.errors import ConfigError
from factorlens.models.base import LatentModel, StepOutput
from factorlens.models.nets import DCGANDiscriminator, DCGANGenerator, transposed_1x1_weight


@dataclass
class GANConfig:
    latent_dim: int = 32
    width: int = 32

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
        return torch.sigmoid(self.generator(z))

    def first_decoder_layer_weight(self) -> torch.Tensor:
        return transposed_1x1_weight(self.generator.first)

    def compute_loss(self, x: torch.Tensor, *, dataset_size: int) -> StepOutput:
        z = torch.randn(x.shape[0], self.latent_dim, device=x.device)
        fake = self.decode(z)
        params = {name: p.detach() for name, p in self.adversary.named_parameters()}
        buffers = dict(self.adversary.named_buffers())
        logits = torch.func.functional_call(self.adversary, (params, buffers), (fake,)).float()
        loss = F.softplus(-logits).mean()  # non-saturating: -log D(G(z))
        return StepOutput(loss=loss, terms={"loss": loss.detach(), "gen": loss.detach()}, x_hat=fake)

    def adversary_loss(self, x: torch.Tensor, x_hat: torch.Tensor) -> StepOutput:
        real_logits = self.adversary(x).float()
        fake_logits = self.adversary(x_hat.detach()).float()
        loss = F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
        return StepOutput(
            loss=loss,
            terms={
                "disc": loss.detach(),
                "d_real": torch.sigmoid(real_logits).mean().detach(),
                "d_fake": torch.sigmoid(fake_logits).mean().detach(),
            },
        )
