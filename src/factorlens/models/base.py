"""The model protocol shared by every model in the registry.

Conventions (all models):
- inputs ``x``: ``float32 [B, C, 64, 64]`` in [0, 1];
- ``encode(x) -> (mu, logvar)``, each ``[B, d]`` (a Gaussian posterior q(z|x) = N(mu, exp(logvar)));
- ``decode(z) -> x_hat`` ``[B, C, 64, 64]`` in [0, 1] (sigmoid output);
- ``compute_loss(x, dataset_size=N) -> StepOutput``: the generator/VAE objective for one batch, every
  logged term a detached scalar in ``terms`` (nats per image, batch-averaged);
- models with an adversary (``btcvae-adv``, ``gan``) set ``self.adversary`` to an ``nn.Module`` and
  implement ``adversary_loss(x, x_hat) -> StepOutput``; the trainer steps a second optimizer with it
  after each generator step (the adversarial update is a hook of the one training loop).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class StepOutput:
    loss: torch.Tensor  # scalar to minimise
    terms: dict[str, torch.Tensor] = field(default_factory=dict)  # detached scalars to log
    x_hat: torch.Tensor | None = None  # reconstructions / generated images (for the adversary)


class LatentModel(nn.Module):
    """Base class: subclasses set ``latent_dim``, ``channels`` and implement encode/decode/compute_loss."""

    latent_dim: int
    channels: int
    has_encoder: bool = True

    def __init__(self) -> None:
        super().__init__()
        # An instance attribute, not a class attribute: nn.Module resolves submodules through
        # __getattr__, which a class-level ``adversary = None`` would shadow.
        self.adversary: nn.Module | None = None

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def compute_loss(self, x: torch.Tensor, *, dataset_size: int) -> StepOutput:
        raise NotImplementedError

    def adversary_loss(self, x: torch.Tensor, x_hat: torch.Tensor) -> StepOutput:
        raise NotImplementedError(f"{type(self).__name__} has no adversary")

    def on_fresh_run(self) -> None:
        """Called by the trainer once, before the first step of a new run (never on --resume): a model
        that starts from weights trained elsewhere loads them here. Default: nothing."""

    def first_decoder_layer(self) -> nn.Module:
        """The decoder's / generator's latent-reading first layer (SeFa, NOG/OLR)."""
        raise NotImplementedError

    def first_decoder_layer_weight(self) -> torch.Tensor:
        """``[out_features, d]``: the weight of the first (latent -> features) layer, for SeFa."""
        raise NotImplementedError
