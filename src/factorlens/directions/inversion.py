"""Codes of real images for a generator without encoder (the GAN): invert the decoder by optimisation.

For each image x the code is ``argmin_z  mean_pixels (G(z) - x)^2 + prior_weight * mean_dims z^2`` found
by Adam from the best of ``restarts`` prior draws. The images are independent (the loss is a sum over
images and Adam's moments are per element), so one batched optimisation inverts them all at once and a
batch's result does not depend on its neighbours. The prior term keeps codes in the typical set of
N(0, I), where the generator was trained and where directions are measured.
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
    Deterministic for a given ``seed`` on CPU.
    """
    if steps < 0 or restarts < 1:
        raise ValueError("steps must be >= 0 and restarts >= 1")
    gen = torch.Generator().manual_seed(seed)
    codes, final, initial = [], [], []
    chunks = list(torch.split(images.float(), batch_size))
    bar = tqdm(total=len(chunks) * steps, desc="invert", unit="step", disable=not progress)
    for x in chunks:
        with torch.no_grad():
            starts = torch.randn(restarts, len(x), latent_dim, generator=gen)
            errors = torch.stack([_per_image_mse(decode, s, x) for s in starts])  # [R, B]
            best = errors.argmin(0)
            z0 = starts[best, torch.arange(len(x))]
        initial.append(errors.min(0).values.numpy())
        z = z0.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([z], lr=lr)
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            # sum over images: each image's gradient is that of its own loss
            loss = (_per_image_mse(decode, z, x) + prior_weight * z.pow(2).mean(1)).sum()
            loss.backward()
            optimizer.step()
            bar.update()
        with torch.no_grad():
            final.append(_per_image_mse(decode, z, x).numpy())
        codes.append(z.detach())
    bar.close()
    if not chunks:
        empty = np.zeros(0, dtype=np.float32)
        return Inversion(torch.zeros(0, latent_dim), empty, empty, steps)
    return Inversion(torch.cat(codes), np.concatenate(final), np.concatenate(initial), steps)
