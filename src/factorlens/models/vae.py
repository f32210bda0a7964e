"""The Gaussian-VAE base and the KL-penalty family: ``vae`` (Kingma & Welling) and ``beta-vae``
(Higgins et al.), on Chen et al.'s conv net.

Every VAE here has a diagonal-Gaussian posterior ``q(z|x) = N(mu, exp(logvar))``, the prior N(0, I) and a
sigmoid decoder. The objective is minimised per image and averaged over the batch (all terms in nats):

- ``rec = sum over pixels and channels of (x - x_hat)^2``. This is the negative log-likelihood of a
  Gaussian decoder with fixed variance 1/2, up to an additive constant. It is *summed* over the
  64*64*C values (not averaged) as in Chen et al. and disentangling-vae, so a given β weighs the prior term
  against the same amount of reconstruction as in those papers;
- ``vae``: ``rec + KL(q(z|x) || N(0, I))``;  ``beta-vae``: ``rec + β KL``.

The β-TCVAE family (``btcvae.py``, ``adversarial.py``) reuses :class:`GaussianVAE` with a different
latent penalty. Every objective here takes its networks from ``factorlens.networks`` (``model.network``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from factorlens.models.base import LatentModel, StepOutput
from factorlens.networks import transposed_conv_weight_as_matrix
from factorlens.objectives import kl_to_standard_normal
from factorlens.schema import integer, number, option

# exp(-12) ~ 6e-6 and exp(8) ~ 3e3 bound the posterior variance: ample for any useful posterior, and it
# keeps exp(-logvar) in the [B, B, d] β-TCVAE tensor finite even for a diverging encoder.
LOGVAR_MIN, LOGVAR_MAX = -12.0, 8.0


# Loss weights: finite and >= 0 (0 switches a term off; NaN or a negative weight is a typo).
WEIGHT = number(lo=0.0)


@dataclass(frozen=True)
class VAEConfig:
    """``vae``: no weight on the KL (β = 1 by definition; use ``beta-vae`` to change it)."""

    latent_dim: int = option(32, integer(1), "dimensions of the latent code z")


@dataclass(frozen=True)
class BetaVAEConfig(VAEConfig):
    """``beta-vae``: ``rec + beta * KL``."""

    beta: float = option(6.0, WEIGHT, "weight of the KL term")


def reconstruction_loss(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Squared error summed over pixels and channels, averaged over the batch.

    Args: ``x``, ``x_hat``: ``[B, C, H, W]`` in [0, 1]. Returns a scalar (nats up to a constant), in fp32.
    """
    return (x_hat.float() - x.float()).pow(2).flatten(1).sum(dim=1).mean()


class GaussianVAE(LatentModel):
    """Encoder -> (mu, logvar) -> reparameterised z -> decoder -> sigmoid.

    Subclasses define :meth:`latent_penalty`, the prior part of the loss. The networks are injected
    (``factorlens.networks``): ``encoder [B, C, S, S] -> [B, 2d]`` and ``decoder [B, d] -> logits
    [B, C, S, S]`` with its latent-reading layer as ``decoder.first``.
    """

    def __init__(self, config: VAEConfig, *, encoder: nn.Module, decoder: nn.Module, channels: int) -> None:
        super().__init__()
        self.config = config
        self.latent_dim = config.latent_dim
        self.channels = channels
        self.encoder = encoder
        self.decoder = decoder

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x [B, C, S, S]`` -> ``(mu, logvar)``, each ``[B, d]``; logvar clamped to [-12, 8]."""
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``z [B, d]`` -> ``x_hat [B, C, S, S]`` in [0, 1]."""
        return torch.sigmoid(self.decoder(z))

    def first_decoder_layer(self) -> nn.Module:
        return self.decoder.first

    def first_decoder_layer_weight(self) -> torch.Tensor:
        return transposed_conv_weight_as_matrix(self.decoder.first)

    def latent_penalty(
        self, z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, kl: torch.Tensor, dataset_size: int
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The prior part of the loss (scalar) and the extra terms to log.

        ``z, mu, logvar``: fp32 ``[B, d]``; ``kl``: the analytic KL to N(0, I), batch-averaged scalar.
        """
        raise NotImplementedError

    def compute_loss(self, x: torch.Tensor, *, dataset_size: int) -> StepOutput:
        mu, logvar = self.encode(x)
        # The latent statistics stay fp32 under autocast: logvar.exp() and the TC tensor need the range.
        mu, logvar = mu.float(), logvar.float()
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        x_hat = self.decode(z)
        rec = reconstruction_loss(x, x_hat)
        kl = kl_to_standard_normal(mu, logvar).sum(dim=1).mean()
        penalty, extra_terms = self.latent_penalty(z, mu, logvar, kl, dataset_size)
        loss = rec + penalty
        terms = {"loss": loss.detach(), "rec": rec.detach(), "kl": kl.detach(), **extra_terms}
        return StepOutput(loss=loss, terms=terms, x_hat=x_hat)


class VAE(GaussianVAE):
    def latent_penalty(self, z, mu, logvar, kl, dataset_size):
        return kl, {}


class BetaVAE(GaussianVAE):
    def latent_penalty(self, z, mu, logvar, kl, dataset_size):
        return self.config.beta * kl, {}
