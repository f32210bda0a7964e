"""The β-TCVAE decomposition of the KL term (Chen et al. 2018), with both estimators of log q(z).

For a batch of B codes ``z_i ~ q(z|x_i)`` from a training set of N images, with
``l_ijd = log N(z_id; mu_jd, sigma_jd^2)`` (one ``[B, B, d]`` tensor):

- MWS (minibatch weighted sampling):
  ``log q(z_i) = logsumexp_j sum_d l_ijd - log(N B)`` and ``log q(z_id) = logsumexp_j l_ijd - log(N B)``.
- MSS (minibatch stratified sampling, Chen et al. App. C): ``log q(z_i) = logsumexp_j (log w_ij +
  sum_d l_ijd)`` with, per row i, ``w_ii = 1/N``, one off-diagonal entry ``(N - M)/(N M)`` and the other
  ``M - 1`` entries ``1/M`` (``M = B - 1``), so every row sums to 1. We put the special entry at column
  ``(i + 1) mod B``. The implementation copied across the field writes 1/N into *column 0*
  (``W.view(-1)[::M+1]``), not the diagonal; that matrix does not have rows summing to 1 and
  overestimates TC by several nats (see docs/models.md).

Constants are kept in every estimate, so logged MI/TC/DWKL are comparable across runs and batch sizes:
``MI + TC + DWKL = E[log q(z|x) - log p(z)]`` holds exactly for either estimator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from factorlens.errors import ConfigError
from factorlens.objectives.gaussian import gaussian_log_density

TC_ESTIMATORS = ("mss", "mws")


@dataclass
class KLDecomposition:
    """Per-sample log densities ``[B]`` (nats) and the batch-mean terms (scalars)."""

    log_qz_given_x: torch.Tensor
    log_qz: torch.Tensor
    log_prod_qzd: torch.Tensor
    log_pz: torch.Tensor

    @property
    def mi(self) -> torch.Tensor:
        return (self.log_qz_given_x - self.log_qz).mean()

    @property
    def tc(self) -> torch.Tensor:
        return (self.log_qz - self.log_prod_qzd).mean()

    @property
    def dwkl(self) -> torch.Tensor:
        return (self.log_prod_qzd - self.log_pz).mean()


def mss_weight_matrix(batch_size: int, dataset_size: int, *, dtype=torch.float64, device=None) -> torch.Tensor:
    """The ``[B, B]`` MSS importance weights: diagonal 1/N, entry ``(i, i+1 mod B)`` (N-M)/(NM), rest 1/M."""
    _check_sizes(batch_size, dataset_size)
    n, m = float(dataset_size), float(batch_size - 1)
    weights = torch.full((batch_size, batch_size), 1.0 / m, dtype=dtype, device=device)
    rows = torch.arange(batch_size, device=device)
    weights[rows, (rows + 1) % batch_size] = (n - m) / (n * m)
    weights[rows, rows] = 1.0 / n
    return weights


def _check_sizes(batch_size: int, dataset_size: int) -> None:
    if batch_size < 2:
        raise ConfigError(
            f"train.batch_size is {batch_size}: the β-TCVAE estimator of log q(z) needs at least 2 images per batch"
        )
    if dataset_size < batch_size:
        raise ConfigError(
            f"dataset_size {dataset_size} is smaller than the batch size {batch_size}: "
            "N must be the number of training images"
        )


def decompose_kl(
    z: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    *,
    dataset_size: int,
    estimator: str = "mss",
) -> KLDecomposition:
    """Estimate log q(z|x), log q(z), sum_d log q(z_d) and log p(z) for a batch.

    Args:
        z, mu, logvar: ``[B, d]``; ``z`` are reparameterised samples of q(z|x_i) (not the means).
        dataset_size: N, the number of images in the training set (global under data parallelism).
            Required: using the batch size here (a common default elsewhere) biases every term.
        estimator: ``"mss"`` or ``"mws"``.

    Computed in the input dtype (callers pass fp32 or fp64) with autocast disabled: the logsumexp over
    ``[B, B, d]`` loses too much precision in bf16.
    """
    if estimator not in TC_ESTIMATORS:
        raise ConfigError(f"model.estimator must be one of {', '.join(TC_ESTIMATORS)}, not {estimator!r}")
    batch_size = z.shape[0]
    _check_sizes(batch_size, dataset_size)
    with torch.autocast(device_type=z.device.type, enabled=False):
        # l[i, j, d] = log q(z_id | x_j)
        log_density = gaussian_log_density(z.unsqueeze(1), mu.unsqueeze(0), logvar.unsqueeze(0))
        log_qz_given_x = log_density.diagonal(dim1=0, dim2=1).sum(dim=0)  # [B]
        log_pz = gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z)).sum(dim=1)
        joint = log_density.sum(dim=2)  # [B, B]
        if estimator == "mws":
            log_norm = math.log(dataset_size * batch_size)
            log_qz = torch.logsumexp(joint, dim=1) - log_norm
            log_prod_qzd = (torch.logsumexp(log_density, dim=1) - log_norm).sum(dim=1)
        else:
            log_w = mss_weight_matrix(batch_size, dataset_size, dtype=z.dtype, device=z.device).log()
            log_qz = torch.logsumexp(joint + log_w, dim=1)
            log_prod_qzd = torch.logsumexp(log_density + log_w.unsqueeze(2), dim=1).sum(dim=1)
    return KLDecomposition(log_qz_given_x, log_qz, log_prod_qzd, log_pz)
