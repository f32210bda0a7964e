"""Scoring direction sets without humans, on generators whose factors an oracle can read off the images.

For each direction k, base code z and shift t (posterior sigmas) we decode ``z + t * sigma_k * d_k`` and
read the factors ``y [J]`` with an oracle. From these traversals:

- effect matrix ``E[k, j] = mean_z |y_j(G(z + eps d_k)) - y_j(G(z - eps d_k))| / (2 eps std_j)`` (``std_j``
  = std of ``y_j`` over decoded base codes; units: factor sigmas per posterior sigma);
- direction-MIG: per factor, ``(E[top1, j] - E[top2, j]) / sum_k E[k, j]``, averaged over factors;
- modularity: per direction, ``1 - H(E[k] / sum_j E[k, j]) / log J``, averaged over directions;
- Spearman rho between the shift t and ``y_j`` per base code (averaged over codes), Hungarian-matched
  between directions and factors; coverage = fraction of factors whose matched ``|rho| >= 0.8``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from scipy.stats import spearmanr

from factorlens.directions.adapter import GeneratorAdapter
from factorlens.directions.direction_set import DirectionSet
from factorlens.errors import ConfigError

Oracle = Callable[[np.ndarray], np.ndarray]  # float images [B, C, H, W] in [0, 1] -> factors [B, J]
COVERAGE_RHO = 0.8
DEFAULT_SHIFTS = (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0)


@dataclass
class DirectionScores:
    """Scores of one direction set; matrices are ``[K, J]`` (directions x factors)."""

    factor_names: list[str]
    effect: np.ndarray
    spearman: np.ndarray
    direction_mig: float
    mig_per_factor: np.ndarray
    modularity: float
    matched_rho: np.ndarray  # [J] |rho| of the direction matched to each factor
    matched_direction: np.ndarray  # [J] index of that direction
    coverage: float
    shifts: list[float]
    effect_shift: float
    num_codes: int
    rca: dict[str, float] | None = None
    extras: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, np.ndarray):
                out[key] = value.tolist()
        return out


@torch.no_grad()
def traverse_and_read(
    adapter: GeneratorAdapter,
    directions: DirectionSet,
    oracle: Oracle,
    *,
    shifts: Sequence[float] = DEFAULT_SHIFTS,
    num_codes: int = 32,
    seed: int = 0,
    batch_size: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
    """Oracle readings along every direction.

    Returns ``(readings [K, num_codes, S, J], base_readings [num_codes, J])`` for the ``S`` shifts (in
    posterior sigmas along each direction) applied to ``num_codes`` base codes.
    """
    if directions.latent_dim != adapter.latent_dim:
        raise ConfigError(f"directions have d={directions.latent_dim}, the generator d={adapter.latent_dim}")
    gen = torch.Generator().manual_seed(seed)
    base = adapter.sample_base(num_codes, gen)
    sigma_shifts = torch.as_tensor(directions.shift_vectors())  # [K, d]
    t = torch.tensor(list(shifts), dtype=torch.float32)
    codes = base[None, :, None, :] + t[None, None, :, None] * sigma_shifts[:, None, None, :]  # [K, N, S, d]
    images = adapter.decode_batched(codes.reshape(-1, adapter.latent_dim), batch_size)
    readings = np.asarray(oracle(images.numpy()), dtype=np.float64)
    base_readings = np.asarray(oracle(adapter.decode_batched(base, batch_size).numpy()), dtype=np.float64)
    return readings.reshape(*codes.shape[:3], -1), base_readings


def effect_matrix(
    readings: np.ndarray, shifts: Sequence[float], factor_std: np.ndarray, eps: float = 1.0
) -> np.ndarray:
    """``[K, J]`` interventional effects from ``readings [K, N, S, J]`` at shifts ``+eps`` and ``-eps``."""
    shifts = list(shifts)
    if eps not in shifts or -eps not in shifts:
        raise ConfigError(f"the shifts {shifts} must include +-{eps} for the effect matrix")
    plus, minus = readings[:, :, shifts.index(eps)], readings[:, :, shifts.index(-eps)]
    std = np.where(factor_std > 0, factor_std, 1.0)
    return np.abs(plus - minus).mean(axis=1) / (2 * eps * std)


def direction_mig(effect: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean over factors of the normalised gap between the two directions with the largest effect."""
    if effect.shape[0] < 2:
        return float("nan"), np.full(effect.shape[1], np.nan)
    ordered = -np.sort(-effect, axis=0)
    totals = effect.sum(axis=0)
    gaps = np.where(totals > 0, (ordered[0] - ordered[1]) / np.where(totals > 0, totals, 1.0), 0.0)
    return float(gaps.mean()), gaps


def modularity(effect: np.ndarray) -> float:
    """Mean over directions (with any effect) of ``1 - entropy(row share) / log J``."""
    if effect.shape[1] < 2:
        return 1.0
    totals = effect.sum(axis=1)
    rows = effect[totals > 0] / totals[totals > 0, None]
    if len(rows) == 0:
        return 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.where(rows > 0, rows * np.log(rows), 0.0).sum(axis=1)
    return float((1 - entropy / np.log(effect.shape[1])).mean())


def spearman_matrix(readings: np.ndarray, shifts: Sequence[float]) -> np.ndarray:
    """``[K, J]`` Spearman rho between shift and reading, per base code, averaged over codes (constant
    readings count as rho = 0)."""
    K, N, _, J = readings.shape
    rho = np.zeros((K, J))
    t = np.asarray(shifts, dtype=np.float64)
    for k in range(K):
        for j in range(J):
            values = []
            for n in range(N):
                series = readings[k, n, :, j]
                if np.ptp(series) <= 1e-9:
                    values.append(0.0)
                    continue
                values.append(float(spearmanr(t, series).statistic))
            rho[k, j] = float(np.mean(values))
    return rho


def score_directions(
    adapter: GeneratorAdapter,
    directions: DirectionSet,
    oracle: Oracle,
    factor_names: Sequence[str],
    *,
    shifts: Sequence[float] = DEFAULT_SHIFTS,
    eps: float = 1.0,
    num_codes: int = 32,
    seed: int = 0,
) -> DirectionScores:
    """Effect matrix, direction-MIG, modularity, matched Spearman rho and coverage of ``directions``."""
    readings, base_readings = traverse_and_read(
        adapter, directions, oracle, shifts=shifts, num_codes=num_codes, seed=seed
    )
    if readings.shape[-1] != len(factor_names):
        raise ConfigError(f"oracle gave {readings.shape[-1]} factors for {len(factor_names)} names")
    finite = np.isfinite(readings)
    readings = np.where(finite, readings, np.nanmean(np.where(finite, readings, np.nan), axis=(0, 1, 2)))
    factor_std = np.nanstd(base_readings, axis=0)
    effect = effect_matrix(readings, shifts, factor_std, eps)
    mig, gaps = direction_mig(effect)
    rho = spearman_matrix(readings, shifts)
    rows, cols = linear_sum_assignment(-np.abs(rho))
    matched = np.zeros(len(factor_names))
    matched_dir = np.full(len(factor_names), -1)
    matched[cols] = np.abs(rho[rows, cols])
    matched_dir[cols] = rows
    return DirectionScores(
        factor_names=list(factor_names),
        effect=effect,
        spearman=rho,
        direction_mig=mig,
        mig_per_factor=gaps,
        modularity=modularity(effect),
        matched_rho=matched,
        matched_direction=matched_dir,
        coverage=float((matched >= COVERAGE_RHO).mean()),
        shifts=[float(s) for s in shifts],
        effect_shift=float(eps),
        num_codes=num_codes,
    )


def rca_comparison(
    adapter: GeneratorAdapter,
    directions: DirectionSet,
    *,
    steps: int = 500,
    seed: int = 0,
    batch_size: int = 32,
    pairs: int = 0,
    input_kind: str = "pair",
) -> dict:
    """Post-hoc reconstructor classification accuracy (RCA) of ``directions`` against baselines.

    A fresh reconstructor is trained for ``steps`` steps against each frozen set: the given directions,
    the K highest-variance latent axes, and K random orthonormal directions. ``chance`` = 1 / K.
    ``pairs = 0``: every step decodes fresh pairs, scored on 10 fresh batches (``estimator: online``);
    ``pairs > 0``: one pool of ``pairs`` training and ``max(64, pairs // 4)`` held-out pairs, shared by
    the three sets (:func:`~factorlens.directions.voynov.cached_reconstructor_accuracies`; ``estimator:
    pool``), for generators whose decode is expensive. ``input_kind``: what every reconstructor sees
    (``pair`` or ``difference``, :func:`~factorlens.directions.voynov.reconstructor_input`), named in the
    result as ``input``.
    """
    from factorlens.directions.methods import axes, random_directions
    from factorlens.directions.voynov import (
        FixedDeformator,
        cached_reconstructor_accuracies,
        pool_eval_pairs,
        train_reconstructor,
    )

    K = directions.num_directions
    if K > adapter.latent_dim:
        raise ConfigError(f"RCA baselines need k <= latent dim ({adapter.latent_dim}), got {K}")
    candidates = {
        "directions": directions.matrix,
        "axes": axes(adapter, k=K).matrix,
        "random": random_directions(adapter, k=K, seed=seed + 1).matrix,
    }
    out: dict = {"chance": 1.0 / K, "steps": float(steps), "input": input_kind}
    if pairs > 0:
        eval_pairs = pool_eval_pairs(pairs)
        out.update(cached_reconstructor_accuracies(adapter, candidates, pairs=pairs, eval_pairs=eval_pairs,
                                                   steps=steps, seed=seed, batch_size=batch_size,
                                                   input_kind=input_kind))
        out.update({"estimator": "pool", "pairs": pairs, "eval_pairs": eval_pairs})
        return out
    out["estimator"] = "online"
    for name, matrix in candidates.items():
        result = train_reconstructor(
            adapter, FixedDeformator(matrix), steps=steps, seed=seed, batch_size=batch_size,
            input_kind=input_kind,
        )
        out[name] = result.accuracy
    return out


def _two_alternative_choice(similarity: np.ndarray, references: int) -> float:
    """Probability of the right answer in one simulated trial of Klindt et al.'s task.

    ``similarity [2 * references, 2]``: rows = the top then the bottom references, columns = the top and
    the bottom query. The matrix is z-scored as a whole; the evidence for the right assignment (top query
    with the top references, bottom query with the bottom ones) is compared with the swapped one through
    a two-way softmax of the summed mean similarities.
    """
    std = similarity.std()
    z = (similarity - similarity.mean()) / (std if np.isfinite(std) and std > 0 else 1.0)
    right = z[:references, 0].mean() + z[references:, 1].mean()
    swapped = z[:references, 1].mean() + z[references:, 0].mean()
    return float(1.0 / (1.0 + np.exp(swapped - right)))


@torch.no_grad()
def interpretability_index(
    adapter: GeneratorAdapter,
    directions: DirectionSet,
    *,
    num_samples: int = 2048,
    trials: int = 20,
    references: int = 9,
    quantiles: Sequence[float] = (0.0, 0.25),
    ranking: str | None = None,
    seed: int = 0,
) -> dict:
    """Klindt et al.'s Interpretability Index (II) of each direction: a simulated two-alternative choice.

    ``num_samples`` base codes (distinct rows of the posterior codes, or prior draws) are decoded and
    ranked along each direction — by projection on the unit direction, or by cosine similarity for
    ``ranking="cosine"`` (the default for ``kmeans`` sets, whose directions are centroids of normalised
    codes). For each quantile q the codes outside the central [q, 1 - q] band are set aside (q = 0 keeps
    all; q = 0.25 keeps the middle half, a harder condition). In trial t (of ``trials``) the queries are
    one of the ``trials`` highest- and one of the ``trials`` lowest-ranked codes, and the references are
    the codes at ranks ``trials * (i + 1) + t`` from each end (i < ``references``). The judge's similarity
    is minus the L2 distance between the decoded images (Klindt's ``l2`` metric; no LPIPS: no network
    weights are downloaded). Score = mean probability of the right answer: 0.5 when the two ends of a
    direction do not look different, near 1 when they do.

    Returns ``{"per_direction": [K] scores at quantiles[0], "per_quantile": {q: [K]}, "mean": float,
    "chance": 0.5, ...settings}``.
    """
    ranking = ranking or ("cosine" if directions.method == "kmeans" else "projection")
    if ranking not in ("projection", "cosine"):
        raise ConfigError(
            f"interpretability_index: ranking must be 'projection' or 'cosine', got {ranking!r}"
        )
    quantiles = [float(q) for q in quantiles]
    if not quantiles or any(not 0.0 <= q < 0.5 for q in quantiles):
        raise ConfigError(f"interpretability_index: quantiles must be in [0, 0.5), got {quantiles}")
    generator = torch.Generator().manual_seed(seed)
    if adapter.base_source == "posterior" and adapter.posterior_codes is not None:
        # Distinct codes: a query must not meet its own copy among the references.
        available = len(adapter.posterior_codes)
        rows = torch.randperm(available, generator=generator)[: min(num_samples, available)]
        codes = adapter.posterior_codes[rows]
    else:
        codes = adapter.sample_base(num_samples, generator)
    # Klindt et al. require twice the codes one condition uses, in the narrowest band.
    needed = 2 * 2 * trials * (references + 1)
    narrowest = int(len(codes) * (1 - 2 * max(quantiles)))
    if narrowest <= needed:
        raise ConfigError(
            f"interpretability_index: {narrowest} codes in the central band of quantile {max(quantiles)}, "
            f"need more than {needed} for {trials} trials x {references} references "
            f"(only {len(codes)} base codes; raise num_samples or lower trials)"
        )
    images = adapter.decode_batched(codes).float().flatten(1).numpy().astype(np.float64)
    unit = torch.as_tensor(directions.unit_matrix(), dtype=torch.float64)
    features = codes.double()
    if ranking == "cosine":
        features = features / torch.linalg.vector_norm(features, dim=1, keepdim=True).clamp_min(1e-12)
    activations = (features @ unit.T).numpy()  # [N, K]
    reference_ranks = trials * (np.arange(references) + 1)
    rng = np.random.default_rng(seed)
    per_quantile: dict[str, list[float]] = {str(q): [] for q in quantiles}
    for k in range(activations.shape[1]):
        for q in quantiles:
            values = activations[:, k]
            low, high = np.quantile(values, q), np.quantile(values, 1 - q)
            band = np.flatnonzero((values >= low) & (values <= high))
            ascending = band[np.argsort(values[band], kind="stable")]
            descending = ascending[::-1]
            query_top = descending[:trials][rng.permutation(trials)]
            query_bottom = ascending[:trials][rng.permutation(trials)]
            probabilities = []
            for t in range(trials):
                refs = np.concatenate([descending[reference_ranks + t], ascending[reference_ranks + t]])
                queries = images[[query_top[t], query_bottom[t]]]
                distance = np.sqrt(((images[refs][:, None, :] - queries[None]) ** 2).sum(-1))  # [2R, 2]
                probabilities.append(_two_alternative_choice(-distance, references))
            per_quantile[str(q)].append(float(np.mean(probabilities)))
    scores = per_quantile[str(quantiles[0])]
    return {
        "per_direction": scores,
        "per_quantile": per_quantile,
        "mean": float(np.mean(scores)) if scores else float("nan"),
        "mean_per_quantile": {q: float(np.mean(v)) if v else float("nan") for q, v in per_quantile.items()},
        "chance": 0.5,
        "similarity": "-L2 between decoded images",
        "ranking": ranking,
        "num_samples": len(codes),
        "trials": trials,
        "references": references,
        "quantiles": quantiles,
    }
