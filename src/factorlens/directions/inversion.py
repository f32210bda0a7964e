"""Codes of real images for a generator without encoder (the GAN): invert the decoder by optimisation.

For each image x the code is ``argmin_z  mean_pixels (G(z) - x)^2 + prior_weight * mean_dims z^2`` found
by Adam from the best of ``restarts`` prior draws. The images are independent: image i draws its starts
from its own generator (seeded by ``seed`` and i), the loss is a sum over images, Adam's moments are per
element, and the decoder must act on each sample alone (a model in eval mode: BatchNorm in training mode
would couple the images). So one batched optimisation inverts them all at once, and an image's code
depends neither on the batch size nor on the other images of the call. The prior term keeps codes in the
typical set of N(0, I), where the generator was trained and where directions are measured.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm


@dataclass(frozen=True)
class Inversion:
    """``codes [N, d]`` float32 and ``mse [N]`` (per-image mean squared error of the decode, images in
    [0, 1]) after ``steps`` Adam steps; ``initial_mse [N]`` before them (best restart)."""

    codes: torch.Tensor
    mse: np.ndarray
    initial_mse: np.ndarray
    steps: int

    def describe(self) -> str:
        before, after = float(np.mean(self.initial_mse)), float(np.mean(self.mse))
        return (f"codes found by inverting the generator on {len(self.codes)} images ({self.steps} Adam "
                f"steps; per-image MSE {before:.4f} -> {after:.4f})")


def _per_image_mse(decode: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor, x: torch.Tensor):
    return (decode(z) - x).pow(2).flatten(1).mean(1)


def invert(
    decode: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    latent_dim: int,
    *,
    steps: int = 300,
    lr: float = 0.05,
    prior_weight: float = 1e-3,
    restarts: int = 8,
    seed: int = 0,
    batch_size: int = 256,
    progress: bool = False,
) -> Inversion:
    """Invert ``decode`` on ``images [N, C, H, W]`` (float in [0, 1]); see the module docstring.

    ``restarts`` prior draws per image are decoded once and the closest (in MSE) starts the optimisation.
    Deterministic for a given ``seed`` on CPU. Only the codes receive gradients (the decoder's parameters
    are left as they are, ``.grad`` included).
    """
    if steps < 0 or restarts < 1:
        raise ValueError("steps must be >= 0 and restarts >= 1")
    images = images.float()
    # [R, N, d]: image i's starts come from its own seeded generator (independent of batching)
    all_starts = torch.stack([
        torch.randn(restarts, latent_dim, generator=torch.Generator().manual_seed(seed * 1_000_003 + i))
        for i in range(len(images))
    ], dim=1) if len(images) else torch.zeros(restarts, 0, latent_dim)
    codes, final, initial = [], [], []
    chunks = list(zip(torch.split(images, batch_size), torch.split(all_starts, batch_size, dim=1),
                      strict=True))
    bar = tqdm(total=len(chunks) * steps, desc="invert", unit="step", disable=not progress)
    for x, starts in chunks:
        with torch.no_grad():
            errors = torch.stack([_per_image_mse(decode, s, x) for s in starts])  # [R, B]
            best = errors.argmin(0)
            z0 = starts[best, torch.arange(len(x))]
        initial.append(errors.min(0).values.numpy())
        z = z0.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([z], lr=lr)
        for _ in range(steps):
            # sum over images: each image's gradient is that of its own loss
            loss = (_per_image_mse(decode, z, x) + prior_weight * z.pow(2).mean(1)).sum()
            (z.grad,) = torch.autograd.grad(loss, [z])
            optimizer.step()
            bar.update()
        with torch.no_grad():
            final.append(_per_image_mse(decode, z, x).numpy())
        codes.append(z.detach())
    bar.close()
    return Inversion(torch.cat(codes), np.concatenate(final), np.concatenate(initial), steps)
