"""The adversarial loss terms shared by every objective with a discriminator (``btcvae-adv``, ``gan``).

Non-saturating losses in the stable softplus-of-logits form (``s`` = discriminator logit,
``D = sigmoid(s)``; ``-log sigmoid(s) = softplus(-s)``, ``-log(1 - sigmoid(s)) = softplus(s)``):

- generator: ``softplus(-s(fake))`` = ``-log D(fake)``, computed with detached copies of D's parameters
  so that the generator loss never moves D (:func:`generator_adversarial_loss`);
- discriminator: ``softplus(-s(real)) + softplus(s(fake.detach()))`` = ``-log D(real) - log(1 - D(fake))``
  (:func:`discriminator_loss`; Eq. 3 of Sarhan et al. 2019).

Both are batch means in nats.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from factorlens.networks import logits_without_parameter_grad


def generator_adversarial_loss(discriminator: nn.Module, fake: torch.Tensor) -> torch.Tensor:
    """``mean(-log D(fake))``, a scalar; gradients reach ``fake`` only, never D's parameters."""
    return F.softplus(-logits_without_parameter_grad(discriminator, fake).float()).mean()


def discriminator_loss(discriminator: nn.Module, real: torch.Tensor,
                       fake: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The discriminator's loss (scalar) and its logged terms ``adv_disc``, ``d_real``, ``d_fake``
    (mean D on each side: 1 = sure it is real). ``real``, ``fake``: ``[B, C, S, S]`` in [0, 1]."""
    real_logits = discriminator(real).float()
    fake_logits = discriminator(fake.detach()).float()
    loss = F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
    terms = {
        "adv_disc": loss.detach(),
        "d_real": torch.sigmoid(real_logits).mean().detach(),
        "d_fake": torch.sigmoid(fake_logits).mean().detach(),
    }
    return loss, terms
