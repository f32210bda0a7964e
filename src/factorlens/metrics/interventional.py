"""Interventional scores that need a generative model of the data: the FactorVAE score (Kim & Mnih 2018)
and the BetaVAE score (Higgins et al. 2017), following disentanglement_lib's definitions and defaults.

Both draw factor batches from a :class:`~factorlens.data.base.FactorSampler`, fix one factor across a
batch (or a pair of batches), render and encode the images, and train a simple classifier to recover which
factor was fixed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from factorlens.data.base import FactorSampler
from factorlens.errors import DataError

# uint8 images [n, C, 64, 64] -> float codes [n, D] (encoder means)
EncodeFn = Callable[[np.ndarray], np.ndarray]


def _encode(encode: EncodeFn, images: np.ndarray) -> np.ndarray:
    codes = np.asarray(encode(images), dtype=np.float64)
    if codes.ndim != 2 or codes.shape[0] != images.shape[0]:
        raise DataError(f"encode returned shape {codes.shape} for {images.shape[0]} images; expected [n, D]")
    return codes


def _draw_factor_index(sampler: FactorSampler, rng: np.random.Generator) -> int:
    # A factor with one value cannot be identified (and dlib's datasets have none); skip such factors.
    varying = [k for k, size in enumerate(sampler.factor_sizes) if size > 1]
    if not varying:
        raise DataError("the sampler has no factor with more than one value")
    return int(varying[rng.integers(len(varying))])


@dataclass
class FactorVAEResult:
    """Attributes:
    train_accuracy, eval_accuracy: majority-vote classifier accuracy.
    num_active_dims: latents whose global standard deviation is >= ``prune_threshold``.
    votes: ``[K, D]`` training votes (factor fixed, latent with smallest normalised variance).
    global_variance: ``[D]``.
    batch_size, num_train, num_eval, num_variance_estimate, seed: how it was computed.
    """

    train_accuracy: float
    eval_accuracy: float
    num_active_dims: int
    votes: np.ndarray
    global_variance: np.ndarray
    batch_size: int
    num_train: int
    num_eval: int
    num_variance_estimate: int
    prune_threshold: float
    seed: int
    estimator: str = "FactorVAE score (majority vote on argmin normalised variance)"

    def to_dict(self) -> dict:
        return {
            key: (value.tolist() if isinstance(value, np.ndarray) else value)
            for key, value in self.__dict__.items()
        }


def _factor_vae_votes(
    sampler: FactorSampler,
    encode: EncodeFn,
    rng: np.random.Generator,
    n_votes: int,
    batch_size: int,
    global_variance: np.ndarray,
    active: np.ndarray,
) -> np.ndarray:
    votes = np.zeros((len(sampler.factor_sizes), global_variance.size), dtype=np.int64)
    active_index = np.flatnonzero(active)
    for _ in range(n_votes):
        k = _draw_factor_index(sampler, rng)
        factors = np.asarray(sampler.sample_factors(batch_size, rng), dtype=np.int64)
        factors[:, k] = factors[0, k]
        codes = _encode(encode, sampler.render(factors))
        local_variance = np.var(codes, axis=0, ddof=1)
        normalised = local_variance[active] / global_variance[active]
        votes[k, active_index[np.argmin(normalised)]] += 1
    return votes


def factor_vae_score(
    sampler: FactorSampler,
    encode: EncodeFn,
    *,
    batch_size: int = 64,
    num_train: int = 10_000,
    num_eval: int = 5_000,
    num_variance_estimate: int = 10_000,
    prune_threshold: float = 0.05,
    seed: int = 0,
) -> FactorVAEResult:
    """FactorVAE score with dlib's defaults (batch 64, 10,000 train votes, 5,000 eval votes, global
    variance from 10,000 images, latents whose standard deviation is < 0.05 pruned — dlib's
    ``prune_dims.threshold`` compares ``sqrt(variance)``, not the variance).

    Each vote: fix a random factor across a batch of ``batch_size`` images, encode, divide each active
    latent's variance by its global variance, vote (factor -> latent with the smallest ratio). The
    classifier maps each latent to the factor with most training votes; accuracy = share of votes it gets
    right. ``encode``: ``uint8 [n, C, 64, 64] -> float [n, D]``.
    """
    if batch_size < 2:
        raise DataError(f"batch_size must be >= 2 (a variance is needed), got {batch_size}")
    rng = np.random.default_rng(seed)
    reference = _encode(
        encode, sampler.render(np.asarray(sampler.sample_factors(num_variance_estimate, rng)))
    )
    global_variance = np.var(reference, axis=0, ddof=1)
    active = np.sqrt(global_variance) >= prune_threshold
    common = dict(
        votes=np.zeros((len(sampler.factor_sizes), global_variance.size), dtype=np.int64),
        global_variance=global_variance,
        batch_size=batch_size,
        num_train=num_train,
        num_eval=num_eval,
        num_variance_estimate=num_variance_estimate,
        prune_threshold=prune_threshold,
        seed=seed,
    )
    if not active.any():
        # Every latent collapsed: no latent can identify a factor (dlib reports 0 as well).
        return FactorVAEResult(train_accuracy=0.0, eval_accuracy=0.0, num_active_dims=0, **common)
    train_votes = _factor_vae_votes(sampler, encode, rng, num_train, batch_size, global_variance, active)
    eval_votes = _factor_vae_votes(sampler, encode, rng, num_eval, batch_size, global_variance, active)
    latent_to_factor = np.argmax(train_votes, axis=0)
    latents = np.arange(train_votes.shape[1])
    train_accuracy = train_votes[latent_to_factor, latents].sum() / train_votes.sum()
    eval_accuracy = eval_votes[latent_to_factor, latents].sum() / eval_votes.sum()
    common["votes"] = train_votes
    return FactorVAEResult(
        train_accuracy=float(train_accuracy),
        eval_accuracy=float(eval_accuracy),
        num_active_dims=int(active.sum()),
        **common,
    )


@dataclass
class BetaVAEResult:
    """Attributes:
    train_accuracy, eval_accuracy: logistic-regression accuracy at recovering the fixed factor.
    batch_size, num_train, num_eval, seed: how it was computed.
    """

    train_accuracy: float
    eval_accuracy: float
    batch_size: int
    num_train: int
    num_eval: int
    seed: int
    estimator: str = "BetaVAE score (logistic regression on mean |z1 - z2| with one factor shared)"

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _beta_vae_points(
    sampler: FactorSampler, encode: EncodeFn, rng: np.random.Generator, n_points: int, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    features, targets = [], []
    for _ in range(n_points):
        k = _draw_factor_index(sampler, rng)
        first = np.asarray(sampler.sample_factors(batch_size, rng), dtype=np.int64)
        second = np.asarray(sampler.sample_factors(batch_size, rng), dtype=np.int64)
        second[:, k] = first[:, k]
        difference = _encode(encode, sampler.render(first)) - _encode(encode, sampler.render(second))
        features.append(np.mean(np.abs(difference), axis=0))
        targets.append(k)
    return np.stack(features), np.array(targets)


def beta_vae_score(
    sampler: FactorSampler,
    encode: EncodeFn,
    *,
    batch_size: int = 64,
    num_train: int = 10_000,
    num_eval: int = 5_000,
    seed: int = 0,
) -> BetaVAEResult:
    """BetaVAE score with dlib's defaults (batch 64, 10,000 train / 5,000 eval points).

    Each point: two batches sharing one random factor, feature = mean over the batch of |z1 - z2|, target =
    the shared factor; sklearn ``LogisticRegression`` (dlib's ``compute_beta_vae_sklearn``) is trained on
    the training points and scored on both sets.
    """
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    x_train, y_train = _beta_vae_points(sampler, encode, rng, num_train, batch_size)
    x_eval, y_eval = _beta_vae_points(sampler, encode, rng, num_eval, batch_size)
    if np.unique(y_train).size < 2:
        raise DataError(
            f"beta_vae_score: all {num_train} training points fixed the same factor; raise num_train"
        )
    model = LogisticRegression(random_state=seed, max_iter=1000)
    model.fit(x_train, y_train)
    return BetaVAEResult(
        train_accuracy=float(model.score(x_train, y_train)),
        eval_accuracy=float(model.score(x_eval, y_eval)),
        batch_size=batch_size,
        num_train=num_train,
        num_eval=num_eval,
        seed=seed,
    )
