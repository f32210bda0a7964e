"""``btcvae-adv`` (Ours-Adv, Sarhan et al. 2019): Ours-resnet plus a discriminator on reconstructions.

The discriminator D has, by default, the residual encoder's architecture with LeakyReLU(0.2), no batch
norm and one output logit (``factorlens.networks``: the family's ``discriminator``). Losses (per image,
batch-averaged, nats; ``factorlens.objectives.adversarial``):

- generator (VAE) loss: the β-TCVAE loss ``+ adv_weight * (-log D(x_hat))`` (the non-saturating
  generator loss). D's parameters receive no gradient from it, so the trainer's two optimisers never
  share a gradient;
- discriminator loss (Eq. 3 of the paper): ``-log D(x) - log(1 - D(x_hat))``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from factorlens.models.base import StepOutput
from factorlens.models.btcvae import BetaTCVAE, BetaTCVAEConfig
from factorlens.models.vae import WEIGHT
from factorlens.objectives import discriminator_loss, generator_adversarial_loss
from factorlens.schema import option


@dataclass(frozen=True)
class AdversarialBetaTCVAEConfig(BetaTCVAEConfig):
    adv_weight: float = option(1.0, WEIGHT, "weight of -log D(x_hat) in the VAE loss")


class AdversarialBetaTCVAE(BetaTCVAE):
    """Ours-Adv: β-TCVAE + ``self.adversary`` (a discriminator ``[B, C, S, S] -> [B, 1]``)."""

    def __init__(self, config: AdversarialBetaTCVAEConfig, *, encoder: nn.Module, decoder: nn.Module,
                 discriminator: nn.Module, channels: int) -> None:
        super().__init__(config, encoder=encoder, decoder=decoder, channels=channels)
        self.adversary = discriminator

    def compute_loss(self, x: torch.Tensor, *, dataset_size: int) -> StepOutput:
        out = super().compute_loss(x, dataset_size=dataset_size)
        adv_gen = generator_adversarial_loss(self.adversary, out.x_hat)
        loss = out.loss + self.config.adv_weight * adv_gen
        terms = {**out.terms, "loss": loss.detach(), "adv_gen": adv_gen.detach()}
        return StepOutput(loss=loss, terms=terms, x_hat=out.x_hat)

    def adversary_loss(self, x: torch.Tensor, x_hat: torch.Tensor) -> StepOutput:
        loss, terms = discriminator_loss(self.adversary, x, x_hat)
        return StepOutput(loss=loss, terms=terms)
