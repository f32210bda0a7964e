"""β-TCVAE (Chen et al. 2018): ``btcvae`` (on Chen et al.'s conv net by default) and its preset
``btcvae-resnet`` (Ours-resnet, Sarhan et al. 2019: the same objective on the bottleneck-residual nets).

Loss per image, batch-averaged, in nats: ``rec + alpha * MI + beta * TC + gamma * DWKL`` where
``MI = E[log q(z|x) - log q(z)]``, ``TC = E[log q(z) - sum_d log q(z_d)]`` and
``DWKL = E[sum_d log q(z_d) - log p(z)]`` are estimated on the batch with
:func:`factorlens.objectives.decompose_kl` (MSS by default, see ``docs/models.md``). With
``alpha = beta = gamma = 1`` the three terms add up to a (stochastic) estimate of the KL term of a VAE.
"""

from __future__ import annotations

from dataclasses import dataclass

from factorlens.models.vae import WEIGHT, GaussianVAE, VAEConfig
from factorlens.objectives import TC_ESTIMATORS, decompose_kl
from factorlens.schema import choice, option


@dataclass(frozen=True)
class BetaTCVAEConfig(VAEConfig):
    alpha: float = option(1.0, WEIGHT, "weight of the index-code mutual information")
    beta: float = option(6.0, WEIGHT, "weight of the total correlation")
    gamma: float = option(1.0, WEIGHT, "weight of the dimension-wise KL")
    estimator: str = option("mss", choice(*TC_ESTIMATORS),
                            "mss (stratified, Chen et al. App. C) or mws (weighted) estimate of log q(z)")


class BetaTCVAE(GaussianVAE):
    """β-TCVAE on injected networks (Ours-resnet = this objective on the ``resnet`` networks)."""

    def latent_penalty(self, z, mu, logvar, kl, dataset_size):
        parts = decompose_kl(z, mu, logvar, dataset_size=dataset_size, estimator=self.config.estimator)
        cfg = self.config
        penalty = cfg.alpha * parts.mi + cfg.beta * parts.tc + cfg.gamma * parts.dwkl
        return penalty, {"mi": parts.mi.detach(), "tc": parts.tc.detach(), "dwkl": parts.dwkl.detach()}
