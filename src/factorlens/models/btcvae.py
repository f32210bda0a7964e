"""β-TCVAE (Chen et al. 2018): ``btcvae`` on Chen et al.'s conv net and ``btcvae-resnet`` (Ours-resnet,
Sarhan et al. 2019) on the bottleneck-residual nets.

Loss per image, batch-averaged, in nats: ``rec + alpha * MI + beta * TC + gamma * DWKL`` where
``MI = E[log q(z|x) - log q(z)]``, ``TC = E[log q(z) - sum_d log q(z_d)]`` and
``DWKL = E[sum_d log q(z_d) - log p(z)]`` are estimated on the batch with
:func:`factorlens.objectives.decompose_kl` (MSS by default, see ``docs/models.md``). With
``alpha = beta = gamma = 1`` the three terms add up to a (stochastic) estimate of the KL term of a VAE.
"""

from __future__ import annotations

from dataclasses import dataclass

from factorlens.errors import ConfigError
from factorlens.models.config import require_non_negative
from factorlens.models.vae import GaussianVAE, VAEConfig
from factorlens.objectives import TC_ESTIMATORS, decompose_kl


@dataclass
class BetaTCVAEConfig(VAEConfig):
    alpha: float = 1.0  # weight of the index-code mutual information
    beta: float = 6.0  # weight of the total correlation
    gamma: float = 1.0  # weight of the dimension-wise KL
    estimator: str = "mss"  # "mss" (stratified, Chen et al. App. C) or "mws" (weighted)

    def validate(self) -> None:
        super().validate()
        for key in ("alpha", "beta", "gamma"):
            require_non_negative(key, getattr(self, key))
        if self.estimator not in TC_ESTIMATORS:
            choices = ", ".join(TC_ESTIMATORS)
            raise ConfigError(f"model.estimator: must be one of {choices}, got {self.estimator!r}")


class BetaTCVAE(GaussianVAE):
    """β-TCVAE; ``residual=True`` gives Ours-resnet (same objective, bottleneck-residual nets)."""

    def __init__(self, config: BetaTCVAEConfig, channels: int, *, residual: bool = False) -> None:
        super().__init__(config, channels, residual=residual)

    def latent_penalty(self, z, mu, logvar, kl, dataset_size):
        parts = decompose_kl(z, mu, logvar, dataset_size=dataset_size, estimator=self.config.estimator)
        cfg = self.config
        penalty = cfg.alpha * parts.mi + cfg.beta * parts.tc + cfg.gamma * parts.dwkl
        return penalty, {"mi": parts.mi.detach(), "tc": parts.tc.detach(), "dwkl": parts.dwkl.detach()}


def build_residual_btcvae(config: BetaTCVAEConfig, channels: int) -> BetaTCVAE:
    """``btcvae-resnet`` (Ours-resnet)."""
    return BetaTCVAE(config, channels, residual=True)
