"""The VAE family: ``vae``, ``beta-vae``, ``btcvae``, ``btcvae-resnet`` (Ours-resnet) and ``btcvae-adv``
(Ours-Adv, Sarhan et al. 2019).

Objective (minimised, per image, batch-averaged; all in nats):
- reconstruction ``rec = sum over pixels and channels of (x - x_hat)^2``: the negative Gaussian
  log-likelihood with fixed variance 1/2 up to a constant. Summed, not averaged, over pixels like Chen et
  al. and disentangling-vae, so β has the same meaning as in those papers;
- ``vae``: rec + KL;  ``beta-vae``: rec + β KL;
- β-TCVAE family: rec + α MI + β TC + γ DWKL (Chen et al. 2018; MSS estimator by default);
- ``btcvae-adv`` adds ``w * (-log D(x_hat))`` to the generator loss and trains D with
  ``-log D(x) - log(1 - D(x_hat))`` (Eq. 3 of Sarhan et al.), both in the stable softplus-of-logits form.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from factorlens.errors import ConfigError
from factorlens.models.base import LatentModel, StepOutput
from factorlens.models.config import require_positive
from factorlens.models.nets import ConvDecoder, ConvEncoder, ResNetDecoder, ResNetEncoder, transposed_1x1_weight
from factorlens.objectives import TC_ESTIMATORS, decompose_kl, kl_to_standard_normal

# exp(-12) ~ 6e-6 and exp(8) ~ 3e3 bound the posterior variance: enough range for any sane posterior,
# and it keeps exp(-logvar) in the [B, B, d] TC tensor finite.
LOGVAR_MIN, LOGVAR_MAX = -12.0, 8.0


@dataclass
class VAEConfig:
    latent_dim: int = 32

    def validate(self) -> None:
        if self.latent_dim < 1:
            raise ConfigError(f"model.latent_dim: must be >= 1, got {self.latent_dim}")


@dataclass
class BetaVAEConfig(VAEConfig):
    beta: float = 6.0

    def validate(self) -> None:
        super().validate()
        require_positive("beta", self.beta, allow_zero=True)


@dataclass
class BetaTCVAEConfig(VAEConfig):
    alpha: float = 1.0
    beta: float = 6.0
    gamma: float = 1.0
    estimator: str = "mss"

    def validate(self) -> None:
        super().validate()
        for key in ("alpha", "beta", "gamma"):
            require_positive(key, getattr(self, key), allow_zero=True)
        if self.estimator not in TC_ESTIMATORS:
            raise ConfigError(f"model.estimator: must be one of {', '.join(TC_ESTIMATORS)}, got {self.estimator!r}")


@dataclass
class AdversarialBetaTCVAEConfig(BetaTCVAEConfig):
    adv_weight: float = 1.0

    def validate(self) -> None:
        super().validate()
        require_positive("adv_weight", self.adv_weight, allow_zero=True)


def reconstruction_loss(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Squared error summed over pixels and channels, averaged over the batch (nats up to a constant)."""
    return (x_hat.float() - x.float()).pow(2).flatten(1).sum(dim=1).mean()


class GaussianVAE(LatentModel):
    """Encoder -> (mu, logvar) -> reparameterised z -> decoder -> sigmoid. Subclasses define the prior term."""

    def __init__(self, config: VAEConfig, channels: int, *, residual: bool = False) -> None:
        super().__init__()
        self.config = config
        self.latent_dim = config.latent_dim
        self.channels = channels
        encoder_cls, decoder_cls = (ResNetEncoder, ResNetDecoder) if residual else (ConvEncoder, ConvDecoder)
        self.encoder = encoder_cls(channels, 2 * config.latent_dim)
        self.decoder = decoder_cls(config.latent_dim, channels)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(z))

    def first_decoder_layer_weight(self) -> torch.Tensor:
        return transposed_1x1_weight(self.decoder.first)

    def prior_terms(
        self, z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, kl: torch.Tensor, dataset_size: int
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The prior part of the loss (scalar) and its logged terms."""
        raise NotImplementedError

    def compute_loss(self, x: torch.Tensor, *, dataset_size: int) -> StepOutput:
        mu, logvar = self.encode(x)
        mu, logvar = mu.float(), logvar.float()
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        x_hat = self.decode(z)
        rec = reconstruction_loss(x, x_hat)
        kl = kl_to_standard_normal(mu, logvar).sum(dim=1).mean()
        prior_loss, terms = self.prior_terms(z, mu, logvar, kl, dataset_size)
        loss = rec + prior_loss
        terms = {"rec": rec.detach(), "kl": kl.detach(), **terms}
        loss, terms = self.extra_generator_terms(loss, terms, x_hat)
        terms = {"loss": loss.detach(), **terms}
        return StepOutput(loss=loss, terms=terms, x_hat=x_hat)

    def extra_generator_terms(self, loss, terms, x_hat):
        return loss, terms


class VAE(GaussianVAE):
    def prior_terms(self, z, mu, logvar, kl, dataset_size):
        return kl, {}


class BetaVAE(GaussianVAE):
    def prior_terms(self, z, mu, logvar, kl, dataset_size):
        return self.config.beta * kl, {}


class BetaTCVAE(GaussianVAE):
    def prior_terms(self, z, mu, logvar, kl, dataset_size):
        parts = decompose_kl(z, mu, logvar, dataset_size=dataset_size, estimator=self.config.estimator)
        mi, tc, dwkl = parts.mi, parts.tc, parts.dwkl
        cfg = self.config
        loss = cfg.alpha * mi + cfg.beta * tc + cfg.gamma * dwkl
        return loss, {"mi": mi.detach(), "tc": tc.detach(), "dwkl": dwkl.detach()}


class AdversarialBetaTCVAE(BetaTCVAE):
    """Ours-Adv: residual β-TCVAE + a discriminator with the encoder's architecture (LeakyReLU, no BN,
    one output logit)."""

    def __init__(self, config: AdversarialBetaTCVAEConfig, channels: int) -> None:
        super().__init__(config, channels, residual=True)
        self.adversary = ResNetEncoder(channels, 1, leaky=True, use_bn=False)

    def _logits_without_adversary_grad(self, images: torch.Tensor) -> torch.Tensor:
        # The generator loss must not move D: call D with detached copies of its parameters, so the
        # gradient flows into x_hat (and the VAE) only.
        params = {name: p.detach() for name, p in self.adversary.named_parameters()}
        buffers = dict(self.adversary.named_buffers())
        return torch.func.functional_call(self.adversary, (params, buffers), (images,))

    def extra_generator_terms(self, loss, terms, x_hat):
        adv_gen = F.softplus(-self._logits_without_adversary_grad(x_hat).float()).mean()  # = -log D(x_hat)
        loss = loss + self.config.adv_weight * adv_gen
        return loss, {**terms, "adv_gen": adv_gen.detach()}

    def adversary_loss(self, x: torch.Tensor, x_hat: torch.Tensor) -> StepOutput:
        real_logits = self.adversary(x).float()
        fake_logits = self.adversary(x_hat.detach()).float()
        # -log D(x) - log(1 - D(x_hat)) with D = sigmoid(logit), written with softplus for stability.
        loss = F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
        d_real = torch.sigmoid(real_logits).mean().detach()
        d_fake = torch.sigmoid(fake_logits).mean().detach()
        return StepOutput(loss=loss, terms={"adv_disc": loss.detach(), "d_real": d_real, "d_fake": d_fake})
