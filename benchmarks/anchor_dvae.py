"""The speed anchor: disentangling-vae's β-TCVAE training loop, re-implemented from its published description.

disentangling-vae (Dubois et al.'s repository for Chen et al.'s β-TCVAE and friends) is the reference our
users time us against. This module rebuilds its β-TCVAE *as that code runs it by default*, from the
architecture and loss its README and the Burgess et al. (2018) paper describe, so that
``benchmarks.train_throughput`` can print the anchor next to every factorlens model, in one run:

- encoder ("Burgess"): three 4x4 stride-2 convs 3->32->32->32 (64 -> 8 px) plus a fourth for 64 px inputs
  (-> 4 px), ReLU, no normalisation; two 256-unit linear layers with ReLU; one linear layer to the mean and
  log-variance of a ``latent_dim``-dimensional Gaussian;
- decoder: the mirror (linear 256, 256, 512 with ReLU, reshape to 32x4x4, four 4x4 stride-2 transposed
  convs with ReLU between them), a sigmoid on the output;
- loss: Bernoulli reconstruction (binary cross-entropy summed over pixels, averaged over the batch) +
  α·MI + β·TC + γ·dimension-wise KL with α = γ = 1, β = 6, the three terms estimated with minibatch
  stratified sampling (the code's default ``is_mss=True``) from one batch of B samples z ~ q(z|x);
- Adam, lr 5e-4 (the code's default), the default (foreach) implementation; inputs NCHW float32 in [0, 1],
  no channels_last, no autocast (the code has neither).

FLOPs per image and training step (forward + backward ≈ 3 x forward), at 64 px: 87 M for this network;
:func:`train_flops_per_image` counts them from the layer shapes so the table can report GFLOP/s.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F  # noqa: N812 (the usual alias)
from torch import nn


class BurgessEncoder(nn.Module):
    """``[B, C, 64, 64]`` in [0, 1] -> (mean, log-variance), each ``[B, latent_dim]``."""

    def __init__(self, channels: int = 3, latent_dim: int = 32, hidden: int = 32, dense: int = 256) -> None:
        super().__init__()
        self.convs = nn.ModuleList([
            nn.Conv2d(channels, hidden, 4, 2, 1), nn.Conv2d(hidden, hidden, 4, 2, 1),
            nn.Conv2d(hidden, hidden, 4, 2, 1), nn.Conv2d(hidden, hidden, 4, 2, 1),
        ])  # fmt: skip
        self.lin1 = nn.Linear(hidden * 4 * 4, dense)
        self.lin2 = nn.Linear(dense, dense)
        self.mean_logvar = nn.Linear(dense, 2 * latent_dim)
        self.latent_dim = latent_dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for conv in self.convs:
            x = torch.relu(conv(x))
        x = torch.relu(self.lin2(torch.relu(self.lin1(x.reshape(x.shape[0], -1)))))
        mean, logvar = self.mean_logvar(x).chunk(2, dim=-1)
        return mean, logvar


class BurgessDecoder(nn.Module):
    """``[B, latent_dim]`` -> ``[B, C, 64, 64]`` Bernoulli means (after a sigmoid)."""

    def __init__(self, channels: int = 3, latent_dim: int = 32, hidden: int = 32, dense: int = 256) -> None:
        super().__init__()
        self.lin1 = nn.Linear(latent_dim, dense)
        self.lin2 = nn.Linear(dense, dense)
        self.lin3 = nn.Linear(dense, hidden * 4 * 4)
        self.deconvs = nn.ModuleList([
            nn.ConvTranspose2d(hidden, hidden, 4, 2, 1), nn.ConvTranspose2d(hidden, hidden, 4, 2, 1),
            nn.ConvTranspose2d(hidden, hidden, 4, 2, 1), nn.ConvTranspose2d(hidden, channels, 4, 2, 1),
        ])  # fmt: skip
        self.hidden = hidden

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.lin3(torch.relu(self.lin2(torch.relu(self.lin1(z))))))
        x = x.reshape(z.shape[0], self.hidden, 4, 4)
        for deconv in self.deconvs[:-1]:
            x = torch.relu(deconv(x))
        return torch.sigmoid(self.deconvs[-1](x))


def _log_gaussian(z: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Elementwise log N(z; mean, exp(logvar)) (broadcasting)."""
    return -0.5 * (math.log(2 * math.pi) + logvar + (z - mean) ** 2 * torch.exp(-logvar))


def _mss_log_weights(batch: int, dataset_size: int) -> torch.Tensor:
    """``[B, B]`` log importance weights of minibatch stratified sampling (Chen et al. 2018, App. C.2),
    built exactly as the reference code builds them (its strided writes put 1/N in the first column,
    not on the diagonal; the speed is the same either way, and the anchor times the code as it is)."""
    n, m = dataset_size, batch - 1
    strat_weight = (n - m) / (n * m)
    weights = torch.full((batch, batch), 1 / m)
    weights.view(-1)[:: m + 1] = 1 / n
    weights.view(-1)[1 :: m + 1] = strat_weight
    weights[m - 1, 0] = strat_weight
    return weights.log()


def btcvae_loss(x: torch.Tensor, x_hat: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor,
                z: torch.Tensor, dataset_size: int, *, alpha: float = 1.0, beta: float = 6.0,
                gamma: float = 1.0) -> torch.Tensor:
    """Scalar loss: BCE (sum over pixels, mean over batch) + α·MI + β·TC + γ·dim-wise KL (MSS estimates)."""
    batch = x.shape[0]
    reconstruction = F.binary_cross_entropy(x_hat, x, reduction="sum") / batch
    log_q_z_given_x = _log_gaussian(z, mean, logvar).sum(dim=1)
    log_p_z = _log_gaussian(z, torch.zeros_like(z), torch.zeros_like(z)).sum(dim=1)
    matrix = _log_gaussian(z[:, None, :], mean[None, :, :], logvar[None, :, :])  # [B, B, d]
    log_w = _mss_log_weights(batch, dataset_size).to(x.device)
    log_q_z = torch.logsumexp(log_w + matrix.sum(dim=2), dim=1)
    log_prod_q_zi = torch.logsumexp(log_w[:, :, None] + matrix, dim=1).sum(dim=1)
    mutual_information = (log_q_z_given_x - log_q_z).mean()
    total_correlation = (log_q_z - log_prod_q_zi).mean()
    dimensionwise_kl = (log_prod_q_zi - log_p_z).mean()
    return reconstruction + alpha * mutual_information + beta * total_correlation + gamma * dimensionwise_kl


class AnchorLoop:
    """The reference training step on in-memory uint8 images (data loading is not what is timed).

    ``images``: ``uint8 [N, C, 64, 64]``. ``step()`` draws a batch (its own generator), converts it to
    float NCHW, runs forward, loss, backward and Adam, as the reference's ``Trainer._train_iteration``.
    """

    def __init__(self, images: torch.Tensor, batch_size: int, *, latent_dim: int = 32, lr: float = 5e-4,
                 seed: int = 0) -> None:
        torch.manual_seed(seed)
        channels = images.shape[1]
        self.encoder = BurgessEncoder(channels, latent_dim)
        self.decoder = BurgessDecoder(channels, latent_dim)
        params = [*self.encoder.parameters(), *self.decoder.parameters()]
        self.optimizer = torch.optim.Adam(params, lr=lr)
        self.images = images
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.last_loss = torch.zeros(())

    def step(self) -> None:
        index = torch.randint(0, self.images.shape[0], (self.batch_size,), generator=self.generator)
        x = self.images[index].float() / 255.0
        mean, logvar = self.encoder(x)
        z = mean + torch.randn_like(mean) * torch.exp(0.5 * logvar)
        x_hat = self.decoder(z)
        loss = btcvae_loss(x, x_hat, mean, logvar, z, self.images.shape[0])
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.last_loss = loss.detach()


def train_flops_per_image(module: nn.Module, forward: Callable[[], object], images: int) -> float:
    """Multiply-adds x 2 of the conv/linear layers of ``module`` that ``forward()`` runs, per image, x 3
    for a training step (the backward pass costs about twice the forward: gradients for inputs and
    weights). ``images``: how many images ``forward()`` processes.

    Counted with forward hooks; norms, activations, attention's matmuls and the loss are not counted
    (a few percent of the total for the VAE networks; more for the U-Net's attention)."""
    total = 0.0

    def hook(layer: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(layer, nn.Linear):
            total += 2 * layer.in_features * layer.out_features * (inputs[0].numel() // layer.in_features)
        elif isinstance(layer, nn.Conv2d):
            kernel = layer.kernel_size[0] * layer.kernel_size[1] * layer.in_channels // layer.groups
            total += 2 * kernel * output.numel()
        elif isinstance(layer, nn.ConvTranspose2d):
            kernel = layer.kernel_size[0] * layer.kernel_size[1] * layer.out_channels // layer.groups
            total += 2 * kernel * inputs[0].numel()

    handles = [m.register_forward_hook(hook) for m in module.modules()
               if isinstance(m, nn.Linear | nn.Conv2d | nn.ConvTranspose2d)]
    try:
        with torch.no_grad():
            forward()
    finally:
        for handle in handles:
            handle.remove()
    return 3 * total / images


def anchor_flops_per_image(latent_dim: int = 32, channels: int = 3) -> float:
    """Training FLOPs per 64 px image of the anchor's encoder + decoder (87.4 M at d = 32)."""
    encoder, decoder = BurgessEncoder(channels, latent_dim), BurgessDecoder(channels, latent_dim)
    both = nn.ModuleList([encoder, decoder])
    return train_flops_per_image(both, lambda: decoder(encoder(torch.zeros(2, channels, 64, 64))[0]), 2)
