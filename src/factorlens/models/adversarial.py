"""``btcvae-adv`` (Ours-Adv, Sarhan et al. 2019): Ours-resnet plus a discriminator on reconstructions.

The discriminator D has the residual encoder's architecture with LeakyReLU(0.2), no batch norm and one
output logit ``s``, ``D = sigmoid(s)``. Losses (per image, batch-averaged, nats), in the stable
softplus-of-logits form (``-log sigmoid(s) = softplus(-s)``, ``-log(1 - sigmoid(s)) = softplus(s)``):

- generator (VAE) loss: the β-TCVAE loss ``+ adv_weight * softplus(-s(x_hat))`` (= ``-log D(x_hat)``, the
  non-saturating generator loss). D's parameters receive no gradient from it: D is evaluated with
  :func:`torch.func.functional_call` on *detached* copies of its parameters, so the gradient reaches
  ``x_hat`` (and the encoder/decoder) only, and the trainer's two optimisers never share a gradient;
- discriminator loss (Eq. 3 of the paper): ``softplus(-s(x)) + softplus(s(x_hat.detach()))``
  = ``-log D(x) - log(1 - D(x_hat))``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from factorlens.models.base import StepOutput
from factorlens.models.btcvae import BetaTCVAE, BetaTCVAEConfig
from factorlens.models.config import require_non_negative
from factorlens.models.nets import ResNetEncoder, logits_without_parameter_grad


@dataclass
class AdversarialBetaTCVAEConfig(BetaTCVAEConfig):
    adv_weight: float = 1.0  # weight of -log D(x_hat) in the VAE loss

    def validate(self) -> None:
        super().validate()
        require_non_negative("adv_weight", self.adv_weight)


class AdversarialBetaTCVAE(BetaTCVAE):
    """Ours-Adv: residual β-TCVAE + ``self.adversary`` (a discriminator ``[B, C, 64, 64] -> [B, 1]``)."""

    def __init__(self, config: AdversarialBetaTCVAEConfig, channels: int) -> None:
        super().__init__(config, channels, residual=True)
        self.adversary = ResNetEncoder(channels, 1, leaky=True, use_bn=False)

    def compute_loss(self, x: torch.Tensor, *, dataset_size: int) -> StepOutput:
        out = super().compute_loss(x, dataset_size=dataset_size)
        adv_gen = F.softplus(-logits_without_parameter_grad(self.adversary, out.x_hat).float()).mean()
        loss = out.loss + self.config.adv_weight * adv_gen
        terms = {**out.terms, "loss": loss.detach(), "adv_gen": adv_gen.detach()}
        return StepOutput(loss=loss, terms=terms, x_hat=out.x_hat)

    def adversary_loss(self, x: torch.Tensor, x_hat: torch.Tensor) -> StepOutput:
        real_logits = self.adversary(x).float()
        fake_logits = self.adversary(x_hat.detach()).float()
        loss = F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
        terms = {
            "adv_disc": loss.detach(),
            "d_real": torch.sigmoid(real_logits).mean().detach(),  # mean D(x): 1 = sure it is real
            "d_fake": torch.sigmoid(fake_logits).mean().detach(),
        }
        return StepOutput(loss=loss, terms=terms)
