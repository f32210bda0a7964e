"""Diagonal-Gaussian log densities and the closed-form KL to N(0, I)."""

from __future__ import annotations

import math

import torch

_LOG_2PI = math.log(2.0 * math.pi)


def gaussian_log_density(x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Elementwise ``log N(x; mu, exp(logvar))`` in nats, constants included (broadcasting shapes)."""
    return -0.5 * (_LOG_2PI + logvar + (x - mu) ** 2 * torch.exp(-logvar))


def kl_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``KL(N(mu, exp(logvar)) || N(0, 1))`` per dimension: ``[B, d]`` -> ``[B, d]`` nats."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)
