"""A planted-direction phantom: a generator whose interpretable directions are known exactly.

The latent ``z [B, d]`` is read through ``F`` orthonormal *planted directions* (rows of ``planted``);
planted coordinate ``f_j = planted[j] . z`` sets the brightness ``0.5 + 0.45 sin(steepness * f_j)`` of its
own Gaussian spot (spots on a grid, so every factor is read back by the spot's intensity). The brightness
is periodic, not monotone: the two ends of a long traversal can look alike. Latent directions
orthogonal to the planted ones change nothing, like the inactive dimensions of a beta-TCVAE.

The design gives every method its cue, each independent of the others:
- SeFa: the first layer repeats planted row ``j`` ``units_per_factor[j]`` times (distinct counts, so
  ``W^T W`` has distinct eigenvalues along the planted rows);
- PCA: :meth:`posterior_codes` has distinct standard deviations along the planted rows;
- Voynov: each spot responds non-linearly and independently, so a shift along a mixture of planted rows
  changes several spots by amounts that depend on z and is confused with other directions, whereas a
  planted shift changes exactly one spot; the reconstructor is best served by the planted rows.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

POSTERIOR_STDS = (2.0, 1.6, 1.3, 1.0, 0.8, 0.6)


class PlantedPhantom(nn.Module):
    """``decode(z [B, d]) -> [B, 1, S, S]`` images in [0, 1] with ``F`` planted directions.

    Args:
        latent_dim: d (>= F).
        num_factors: F <= 6 spots / planted directions.
        image_size: S in pixels.
        steepness: angular frequency of the brightness sine (radians per unit of f_j).
        units_per_factor: first-layer units driven by each factor (default ``F, F-1, ..., 1``).
        seed: draws the random orthonormal planted directions.
    """

    def __init__(
        self,
        latent_dim: int = 8,
        num_factors: int = 4,
        image_size: int = 16,
        steepness: float = 1.0,
        units_per_factor: tuple[int, ...] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not 1 <= num_factors <= min(len(POSTERIOR_STDS), latent_dim):
            raise ValueError(f"num_factors must be in 1..{min(len(POSTERIOR_STDS), latent_dim)}")
        self.latent_dim, self.channels, self.num_factors = latent_dim, 1, num_factors
        self.image_size, self.steepness = image_size, steepness
        rng = np.random.default_rng(seed)
        q, _ = np.linalg.qr(rng.standard_normal((latent_dim, latent_dim)))
        # rows 0..F-1 planted, the rest an orthonormal complement (inactive directions)
        self.register_buffer("basis", torch.as_tensor(q.T, dtype=torch.float32))
        units = units_per_factor or tuple(range(num_factors, 0, -1))
        self.units_per_factor = tuple(units)
        rows = torch.cat([self.planted[j].repeat(count, 1) for j, count in enumerate(units)])
        self.first = nn.Linear(latent_dim, len(rows), bias=False)
        with torch.no_grad():
            self.first.weight.copy_(rows)
        self.first.requires_grad_(False)
        self.register_buffer("unit_factor", torch.cat([torch.full((c,), j) for j, c in enumerate(units)]))
        self.register_buffer("spots", self._spot_templates())

    @property
    def planted(self) -> torch.Tensor:
        """``[F, d]`` the planted unit directions."""
        return self.basis[: self.num_factors]

    def _spot_templates(self) -> torch.Tensor:
        """``[F, S, S]`` Gaussian spots on a grid of ceil(sqrt(F)) cells per side."""
        cells = math.ceil(math.sqrt(self.num_factors))
        coords = (torch.arange(self.image_size, dtype=torch.float32) + 0.5) / self.image_size
        yy, xx = torch.meshgrid(coords, coords, indexing="ij")
        width = 0.18 / cells
        spots = []
        for j in range(self.num_factors):
            cy, cx = (j // cells + 0.5) / cells, (j % cells + 0.5) / cells
            spots.append(torch.exp(-0.5 * ((xx - cx) ** 2 + (yy - cy) ** 2) / width**2))
        return torch.stack(spots)

    def factor_values(self, z: torch.Tensor) -> torch.Tensor:
        """``[B, F]`` planted coordinates (mean over each factor's first-layer units)."""
        h = self.first(z)
        sums = torch.zeros(len(z), self.num_factors, dtype=h.dtype).index_add_(1, self.unit_factor, h)
        return sums / torch.tensor(self.units_per_factor, dtype=h.dtype)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        f = self.factor_values(z)
        brightness = 0.5 + 0.45 * torch.sin(self.steepness * f)  # [B, F]
        return torch.einsum("bf,fhw->bhw", brightness, self.spots).clamp(0, 1)[:, None]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.decode(z)

    def first_decoder_layer_weight(self) -> torch.Tensor:
        return self.first.weight

    def read_factors(self, images: torch.Tensor | np.ndarray) -> np.ndarray:
        """Oracle: ``[B, F]`` spot brightness read off ``[B, 1, S, S]`` images (template projection)."""
        images = torch.as_tensor(np.asarray(images), dtype=torch.float32)[:, 0]
        spots = self.spots
        return (torch.einsum("bhw,fhw->bf", images, spots) / (spots**2).sum((1, 2))).numpy()

    def posterior_codes(self, n: int, seed: int = 0, inactive_std: float = 0.05) -> torch.Tensor:
        """``[n, d]`` anisotropic "encoder means": stds 2.0, 1.6, 1.3, ... along the planted rows (in
        order) and ``inactive_std`` along the rest."""
        gen = torch.Generator().manual_seed(seed)
        stds = torch.full((self.latent_dim,), inactive_std)
        stds[: self.num_factors] = torch.tensor(POSTERIOR_STDS[: self.num_factors])
        return (torch.randn(n, self.latent_dim, generator=gen) * stds) @ self.basis
