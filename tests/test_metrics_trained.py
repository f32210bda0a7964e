"""Both MIG estimators rank a *trained* encoder above a random one (issue: "exact MIG agrees with the binned
MIG in ordering on a trained model vs a random encoder").

A small Gaussian-blob world keeps it to seconds: 16x16 images of a blob with 3 factors on a full grid
(x 8 values, y 8 values, width 4 values, C order), a VAE with MLP encoder/decoder (d = 4, β = 4) trained
full-batch, and the same architecture with its random initial weights.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from factorlens.metrics import mig, mig_exact

SIZES = (8, 8, 4)


def blob_grid() -> tuple[torch.Tensor, np.ndarray]:
    factors = np.stack(np.meshgrid(*[np.arange(s) for s in SIZES], indexing="ij"), -1).reshape(-1, 3)
    coords = torch.arange(16, dtype=torch.float32)
    x = 2.0 + 1.6 * torch.from_numpy(factors[:, 0]).float()
    y = 2.0 + 1.6 * torch.from_numpy(factors[:, 1]).float()
    width = 1.0 + 0.5 * torch.from_numpy(factors[:, 2]).float()
    gx = torch.exp(-((coords[None, :] - x[:, None]) ** 2) / (2 * width[:, None] ** 2))
    gy = torch.exp(-((coords[None, :] - y[:, None]) ** 2) / (2 * width[:, None] ** 2))
    images = (gy[:, :, None] * gx[:, None, :]).reshape(len(factors), 256)
    return images, factors


class BlobVAE(nn.Module):
    def __init__(self, latent_dim: int = 4) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 2 * latent_dim))
        self.decoder = nn.Sequential(nn.Linear(latent_dim, 128), nn.ReLU(), nn.Linear(128, 256))

    def encode(self, x):
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar.clamp(-10, 5)

    def loss(self, x, beta: float):
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        x_hat = torch.sigmoid(self.decoder(z))
        rec = nn.functional.binary_cross_entropy(x_hat, x, reduction="none").sum(1).mean()
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1).mean()
        return rec + beta * kl


def scores(model: BlobVAE, images: torch.Tensor, factors: np.ndarray) -> tuple[float, float]:
    with torch.no_grad():
        mu, logvar = model.encode(images)
    binned = mig(mu.numpy(), factors).score
    exact = mig_exact(mu.numpy(), logvar.numpy(), SIZES, n_samples=256, seed=0).score
    return binned, exact


def test_trained_encoder_beats_random_encoder_under_both_estimators():
    images, factors = blob_grid()
    torch.manual_seed(0)
    random_model = BlobVAE()
    torch.manual_seed(0)
    trained = BlobVAE()
    optimizer = torch.optim.Adam(trained.parameters(), lr=5e-3)
    for _ in range(1000):
        optimizer.zero_grad()
        trained.loss(images, beta=4.0).backward()
        optimizer.step()
    trained_binned, trained_exact = scores(trained, images, factors)
    random_binned, random_exact = scores(random_model, images, factors)
    # Measured (seed 0): trained binned 0.52, exact 0.41; random binned 0.043, exact 0.0002.
    assert trained_binned > random_binned + 0.1, (trained_binned, random_binned)
    assert trained_exact > random_exact + 0.1, (trained_exact, random_exact)
