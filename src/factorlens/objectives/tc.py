"""The β-TCVAE decomposition of the KL term (Chen et al. 2018), with both estimators of log q(z).

For a batch of B codes ``z_i ~ q(z|x_i)`` from a training set of N images, with
``l_ijd = log N(z_id; mu_jd, sigma_jd^2)`` (one ``[B, B, d]`` tensor, no Python loops):

- MWS (minibatch weighted sampling):
  ``log q(z_i) = logsumexp_j sum_d l_ijd - log(N B)`` and ``log q(z_id) = logsumexp_j l_ijd - log(N B)``.
- MSS (minibatch stratified sampling, Chen et al. App. C): ``log q(z_i) = logsumexp_j (log w_ij +
  sum_d l_ijd)`` and likewise per dimension, with ``M = B - 1`` and, in every row i: ``w_ii = 1/N`` (the
  sample's own posterior), exactly one off-diagonal entry ``(N - M)/(N M)`` and the other ``M - 1``
  entries ``1/M``, so every row sums to 1. We put the special entry at column ``(i + 1) mod B``: which
  off-diagonal entry carries it does not matter in expectation, because the batch is a uniform random
  draw, but it must be one per row and never on the diagonal.

  The implementation copied across the field builds the matrix with ``W.view(-1)[::M+1] = 1/N``; on a
  ``B x B = (M+1) x (M+1)`` matrix that stride walks down *column 0*, not the diagonal (whose stride is
  ``M + 2``), so each z_i's own posterior gets weight 1/M instead of 1/N, and the last special entry
  overwrites a 1/N, leaving row ``M - 1`` not summing to 1. Here the matrix is built explicitly and
  checked by the tests.

Constants (``-0.5 log 2 pi`` per dimension, the normalisers) are kept in every estimate, so logged
MI/TC/DWKL are comparable across runs and batch sizes, and ``MI + TC + DWKL = E[log q(z|x) - log p(z)]``
holds exactly for either estimator.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from factorlens.errors import ConfigError
from factorlens.objectives.gaussian import gaussian_log_density


@dataclass
class KLDecomposition:
    """Per-sample log densities ``[B]`` (nats); ``mi``, ``tc``, ``dwkl`` are their batch means."""

    log_qz_given_x: torch.Tensor  # log q(z_i | x_i)
    log_qz: torch.Tensor  # log q(z_i), the aggregate posterior
    log_prod_qzd: torch.Tensor  # sum_d log q(z_id), the product of its marginals
    log_pz: torch.Tensor  # log p(z_i) under N(0, I)

    @property
    def mi(self) -> torch.Tensor:
        """Index-code mutual information ``E[log q(z|x) - log q(z)]``."""
        return (self.log_qz_given_x - self.log_qz).mean()

    @property
    def tc(self) -> torch.Tensor:
        """Total correlation ``E[log q(z) - sum_d log q(z_d)]``."""
        return (self.log_qz - self.log_prod_qzd).mean()

    @property
    def dwkl(self) -> torch.Tensor:
        """Dimension-wise KL ``E[sum_d log q(z_d) - log p(z)]``."""
        return (self.log_prod_qzd - self.log_pz).mean()


def mss_weight_matrix(
    batch_size: int, dataset_size: int, *, dtype: torch.dtype = torch.float64, device=None
) -> torch.Tensor:
    """The ``[B, B]`` MSS importance weights ``w_ij`` (row i: the weights for estimating q(z_i)).

    Diagonal ``1/N``; entry ``(i, (i + 1) mod B)`` ``(N - M)/(N M)``; every other entry ``1/M``;
    ``M = B - 1``. Rows sum to 1.
    """
    _check_sizes(batch_size, dataset_size)
    n, m = float(dataset_size), float(batch_size - 1)
    eye = torch.eye(batch_size, dtype=dtype, device=device)
    # the one stratum entry per row, on the cyclic super-diagonal (never the diagonal since B >= 2)
    special = torch.roll(eye, shifts=1, dims=1)
    others = 1.0 - eye - special
    return eye / n + special * ((n - m) / (n * m)) + others / m


def _check_sizes(batch_size: int, dataset_size: int) -> None:
    if batch_size < 2:
        raise ConfigError(
            f"train.batch_size is {batch_size}: the β-TCVAE estimate of log q(z) needs >= 2 images per batch"
        )
    if isinstance(dataset_size, bool) or not isinstance(dataset_size, int) or dataset_size < batch_size:
        raise ConfigError(
            f"dataset_size {dataset_size!r} must be an integer >= the batch size {batch_size}: "
            "it is the number of training images"
        )


def mws_log_weight_matrix(
    batch_size: int, dataset_size: int, *, dtype: torch.dtype = torch.float64, device=None
) -> torch.Tensor:
    """``[B, B]`` log-weights of MWS: every entry ``-log(N B)`` (Chen et al.'s minibatch weighted
    sampling, ``log q(z_i) ~ logsumexp_j log q(z_i|x_j) - log(N B)``)."""
    _check_sizes(batch_size, dataset_size)
    log_weight = -math.log(dataset_size * batch_size)
    return torch.full((batch_size, batch_size), log_weight, dtype=dtype, device=device)


def mss_log_weight_matrix(
    batch_size: int, dataset_size: int, *, dtype: torch.dtype = torch.float64, device=None
) -> torch.Tensor:
    """``[B, B]`` log of :func:`mss_weight_matrix` (no zero entries, so all finite)."""
    return mss_weight_matrix(batch_size, dataset_size, dtype=dtype, device=device).log()


# name -> builder of the [B, B] log importance weights log w_ij applied inside the logsumexp over j
TC_ESTIMATORS: dict[str, Callable[..., torch.Tensor]] = {
    "mss": mss_log_weight_matrix,
    "mws": mws_log_weight_matrix,
}


def decompose_kl(
    z: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    *,
    dataset_size: int,
    estimator: str = "mss",
) -> KLDecomposition:
    """Estimate log q(z|x), log q(z), sum_d log q(z_d) and log p(z) for a batch, constants kept.

    Args:
        z, mu, logvar: ``[B, d]``; ``z`` are reparameterised samples of q(z|x_i) (not the means).
        dataset_size: N, the number of images in the training set (global under data parallelism).
            Required, ``>= B``: using the batch size here (a common default elsewhere) biases every term.
        estimator: ``"mss"`` (default) or ``"mws"``.

    Computed in fp32 (fp64 if given fp64) with autocast disabled: the logsumexp over ``[B, B, d]`` of
    log densities of order -1e3 loses too much precision in bf16/fp16.
    """
    if estimator not in TC_ESTIMATORS:
        raise ConfigError(f"model.estimator: must be one of {', '.join(TC_ESTIMATORS)}, got {estimator!r}")
    batch_size = z.shape[0]
    _check_sizes(batch_size, dataset_size)
    dtype = torch.promote_types(z.dtype, torch.float32)
    with torch.autocast(device_type=z.device.type, enabled=False):
        z, mu, logvar = z.to(dtype), mu.to(dtype), logvar.to(dtype)
        # log_density[i, j, d] = log q(z_id | x_j)
        log_density = gaussian_log_density(z.unsqueeze(1), mu.unsqueeze(0), logvar.unsqueeze(0))
        log_qz_given_x = log_density.diagonal(dim1=0, dim2=1).sum(dim=0)  # [B]
        log_pz = gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z)).sum(dim=1)
        joint = log_density.sum(dim=2)  # [B, B]: log q(z_i | x_j)
        log_w = TC_ESTIMATORS[estimator](batch_size, dataset_size, dtype=dtype, device=z.device)
        log_qz = torch.logsumexp(joint + log_w, dim=1)
        log_prod_qzd = torch.logsumexp(log_density + log_w.unsqueeze(2), dim=1).sum(dim=1)
    return KLDecomposition(log_qz_given_x, log_qz, log_prod_qzd, log_pz)
