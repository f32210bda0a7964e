"""Chen et al. (2018)'s MIG estimator for a dataset that is a full factorial grid of its factors.

Latents stay continuous; factors are the grid axes. One sample z_n ~ q(z|x_n) is drawn per image. The
marginal entropy H(z_j) is under the aggregate posterior q(z_j) = (1/N) sum_n q(z_j | x_n), the exact
mixture over the whole dataset, estimated by Monte Carlo on S of the samples:

    H(z_j) ~= -(1/S) sum_s log (1/N) sum_n N(z_sj; mu_nj, sigma_nj^2).

H(z_j | v_k) averages the same estimator over the values of v_k, with samples and mixture both
restricted to the images that have that value. MI = H(z_j) - H(z_j | v_k), clamped at 0 (Monte Carlo
noise can make it slightly negative), is normalised by H(v_k) = log |V_k| (uniform grid).

Unlike disentangling-vae's port we use posterior *samples* (not the means it gets in eval mode) and we
select the latent dimension by indexing, never by ``.view``-reshaping a [S, D] block into [D, S].
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from factorlens.errors import DataError
from factorlens.metrics.mig import _nan_to_none, gap_from_mi

# Elements of the [samples, mixture components, latents] log-density block evaluated at once.
_BLOCK_ELEMENTS = 1 << 24
_LOG_2PI = math.log(2.0 * math.pi)


@dataclass
class MIGExactResult:
    """Chen-style MIG on a factor grid.

    Attributes:
        score: mean normalised gap over the scored factors.
        per_factor_gap: ``[K_scored]``.
        mi: ``[D, K_scored]`` MI in nats (after clamping at 0).
        marginal_entropy: ``[D]`` H(z_j) in nats.
        conditional_entropy: ``[D, K_scored]`` H(z_j | v_k) in nats.
        factor_entropy: ``[K_scored]`` log |V_k|.
        factors_scored: names of the scored factors (Chen leaves out dSprites' shape).
        n_samples: Monte Carlo samples S for the marginal entropy (each conditional uses
            min(S, images with that value)).
        seed: seed of the posterior samples and of the Monte Carlo subset.
        estimator: ``"chen-exact-S<n_samples>"``, plus ``[factor,...]`` when not every factor is scored.
    """

    score: float
    per_factor_gap: np.ndarray
    mi: np.ndarray
    marginal_entropy: np.ndarray
    conditional_entropy: np.ndarray
    factor_entropy: np.ndarray
    factors_scored: list[str]
    n_samples: int
    seed: int
    estimator: str

    def to_dict(self) -> dict:
        return {
            "score": self.score,
            "estimator": self.estimator,
            "factors_scored": self.factors_scored,
            "per_factor_gap": _nan_to_none(self.per_factor_gap),
            "factor_entropy": self.factor_entropy.tolist(),
            "marginal_entropy": self.marginal_entropy.tolist(),
            "conditional_entropy": self.conditional_entropy.tolist(),
            "mi": self.mi.tolist(),
            "n_samples": self.n_samples,
            "seed": self.seed,
        }


def mixture_entropy(samples, means, logvars, *, n_samples: int, generator=None):
    """Monte Carlo entropy of each latent under the mixture ``(1/M) sum_m N(mu_m, exp(logvar_m))``.

    Args:
        samples: ``torch [M, D]`` one posterior sample per mixture component (the candidates).
        means, logvars: ``torch [M, D]`` the mixture components.
        n_samples: S; ``min(S, M)`` candidates are drawn without replacement (all of them if S >= M).
        generator: ``torch.Generator`` for that draw.

    Returns:
        ``torch float64 [D]`` entropies in nats.
    """
    import torch

    m, d = means.shape
    if m <= n_samples:
        chosen = samples
    else:
        chosen = samples[torch.randperm(m, generator=generator)[:n_samples]]
    inv_var = torch.exp(-logvars)
    # log N(z; mu, var) = -0.5 * (log 2pi + logvar + (z - mu)^2 / var); constant part per component.
    log_norm = -0.5 * (_LOG_2PI + logvars)
    chunk = max(1, _BLOCK_ELEMENTS // max(m * d, 1))
    total = torch.zeros(d, dtype=torch.float64)
    for start in range(0, chosen.shape[0], chunk):
        z = chosen[start : start + chunk]  # [c, D]
        log_density = log_norm[None] - 0.5 * (z[:, None, :] - means[None]) ** 2 * inv_var[None]  # [c, M, D]
        log_mixture = torch.logsumexp(log_density, dim=1) - math.log(m)  # [c, D]
        total -= log_mixture.sum(dim=0).to(torch.float64)
    return total / chosen.shape[0]


def mig_exact(
    means: np.ndarray,
    logvars: np.ndarray,
    factor_sizes: Sequence[int],
    *,
    factor_names: Sequence[str] | None = None,
    factors_scored: Sequence[int | str] | None = None,
    n_samples: int = 10_000,
    seed: int = 0,
    dtype: str = "float32",
) -> MIGExactResult:
    """Chen et al.'s MIG for a dataset laid out as the full factor grid in C order.

    Args:
        means, logvars: ``float [N, D]`` posterior parameters, row ``n`` being grid cell ``n`` in C order
            (the last factor varies fastest, as in dSprites' npz), ``N = prod(factor_sizes)``.
        factor_sizes: number of values of each factor, e.g. dSprites ``[3, 6, 40, 32, 32]``.
        factor_names: names for the factors (default ``factor_<k>``).
        factors_scored: indices or names of the factors to score (default all; Chen scores dSprites'
            scale, orientation, posX, posY and leaves out shape).
        n_samples: Monte Carlo samples S per entropy (Chen: 10,000).
        seed: seeds the posterior samples and the Monte Carlo subsets.
        dtype: ``"float32"`` (fast) or ``"float64"`` for the log-density evaluation.

    Cost is O(S * N * D * (1 + #scored factors)) log-density evaluations.
    """
    import torch

    means = np.asarray(means)
    logvars = np.asarray(logvars)
    if means.ndim != 2 or means.shape != logvars.shape:
        raise DataError(f"means and logvars must both be [N, D], got {means.shape} and {logvars.shape}")
    sizes = [int(s) for s in factor_sizes]
    if any(s < 1 for s in sizes) or math.prod(sizes) != means.shape[0]:
        raise DataError(
            f"mig_exact needs the full factor grid: prod(factor_sizes={sizes}) = "
            f"{math.prod(sizes)} but there are {means.shape[0]} codes"
        )
    if not (np.isfinite(means).all() and np.isfinite(logvars).all()):
        raise DataError("means/logvars contain non-finite entries")
    if n_samples < 1:
        raise DataError(f"n_samples must be >= 1, got {n_samples}")
    names = list(factor_names) if factor_names is not None else [f"factor_{k}" for k in range(len(sizes))]
    if len(names) != len(sizes):
        raise DataError(f"{len(names)} factor names given for {len(sizes)} factors")
    scored = _resolve_scored(factors_scored, names)
    torch_dtype = {"float32": torch.float32, "float64": torch.float64}.get(dtype)
    if torch_dtype is None:
        raise DataError(f"dtype must be 'float32' or 'float64', got {dtype!r}")

    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(means.shape)
    samples_np = means + np.exp(0.5 * logvars) * noise
    mu = torch.as_tensor(means, dtype=torch_dtype)
    logvar = torch.as_tensor(logvars, dtype=torch_dtype)
    samples = torch.as_tensor(samples_np, dtype=torch_dtype)
    generator = torch.Generator().manual_seed(seed)

    marginal = mixture_entropy(samples, mu, logvar, n_samples=n_samples, generator=generator).numpy()
    grid_index = np.arange(means.shape[0]).reshape(sizes)
    conditional = np.zeros((means.shape[1], len(scored)))
    for column, k in enumerate(scored):
        for value in range(sizes[k]):
            rows = torch.as_tensor(np.take(grid_index, value, axis=k).ravel())
            conditional[:, column] += (
                mixture_entropy(
                    samples[rows], mu[rows], logvar[rows], n_samples=n_samples, generator=generator
                ).numpy()
                / sizes[k]
            )
    mi = np.maximum(marginal[:, None] - conditional, 0.0)
    factor_entropy = np.log(np.array([sizes[k] for k in scored], dtype=np.float64))
    score, gap, _ = gap_from_mi(mi, factor_entropy)
    return MIGExactResult(
        score=score,
        per_factor_gap=gap,
        mi=mi,
        marginal_entropy=marginal,
        conditional_entropy=conditional,
        factor_entropy=factor_entropy,
        factors_scored=[names[k] for k in scored],
        n_samples=n_samples,
        seed=seed,
        # The name says which factors were scored whenever it is not all of them (e.g. Chen's dSprites
        # MIG leaves out shape), so two numbers with different factor sets are never confused.
        estimator=f"chen-exact-S{n_samples}"
        + ("" if len(scored) == len(names) else f"[{','.join(names[k] for k in scored)}]"),
    )


def _resolve_scored(factors_scored: Sequence[int | str] | None, names: list[str]) -> list[int]:
    if factors_scored is None:
        return list(range(len(names)))
    resolved = []
    for item in factors_scored:
        if isinstance(item, str):
            if item not in names:
                raise DataError(f"factors_scored names unknown factor {item!r}; factors: {', '.join(names)}")
            resolved.append(names.index(item))
        elif 0 <= int(item) < len(names):
            resolved.append(int(item))
        else:
            raise DataError(f"factors_scored index {item} out of range 0..{len(names) - 1}")
    if not resolved:
        raise DataError("factors_scored is empty")
    return resolved
