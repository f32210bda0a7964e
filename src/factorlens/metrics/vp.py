"""Variation Predictability (VP) score (Zhu et al. 2020, "Learning Disentangled Representations with
Latent Variation Predictability"), as Song et al. evaluate NOG/OLR with it.

Protocol (defaults are the paper's): draw ``n_pairs`` pairs of codes ``c, c'`` uniform in
``[-code_range, code_range]^d`` that differ in exactly one coordinate ``k`` (uniform over the ``d`` axes;
``c'_k`` is a fresh uniform draw), decode ``z = c @ axes`` for both, and train a small CNN on the image
differences ``G(z) - G(z')`` of ``train_fraction`` of the pairs to predict ``k``. The score is the CNN's
accuracy on the other pairs: high when each axis changes the image in its own recognisable way. Chance is
``1 / d``.

``axes``: ``[d, d]`` orthonormal rows; identity = the model's own coordinates. Song et al. first
re-parametrise the generator's first layer by SeFa (``W^T = U S V^T``, coordinates along the right singular
vectors): pass the SeFa direction matrix for that (``factorlens.directions``' ``sefa``, ``k = d``).

Differences from the reference code: the score is the test accuracy after a fixed number of epochs, not the
best test accuracy over epochs (choosing the epoch on the test pairs is optimistic).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

DecodeFn = Callable[[np.ndarray], np.ndarray]  # codes float32 [n, d] -> images float [n, C, H, W] in [0, 1]


@dataclass
class VPResult:
    """VP score (test accuracy, in [0, 1]), chance level, per-axis test accuracy ``[d]``."""

    score: float
    chance: float
    per_axis_accuracy: np.ndarray
    n_pairs: int
    n_train: int
    estimator: str = "vp (Zhu et al. 2020): CNN on image differences, fixed epochs, held-out accuracy"
    params: dict = field(default_factory=dict)


def _cnn(channels: int, classes: int) -> nn.Module:
    """The predictor: three 4x4 stride-2 convs (32, 64, 64) with ReLU, pooled to a 4x4 map (any image
    size; where in the image a change happens is kept, which a global pool would discard), a linear
    layer (the size of Zhu et al.'s small CNN)."""
    return nn.Sequential(
        nn.Conv2d(channels, 32, 4, 2, 1), nn.ReLU(),
        nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(),
        nn.Conv2d(64, 64, 4, 2, 1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(64 * 16, classes),
    )  # fmt: skip


def sefa_axes(weight: np.ndarray) -> np.ndarray:
    """Song et al.'s SeFa re-parametrisation of a latent-reading layer ``W [out, d]``: with
    ``W^T = U S V^T``, codes ``c`` along the columns of ``U`` (``z = U c``). Returns ``U^T`` ``[d, d]``
    (orthonormal rows, by decreasing singular value), the ``axes`` argument of :func:`vp_score`."""
    u, _, _ = np.linalg.svd(np.asarray(weight, dtype=np.float64).T, full_matrices=False)
    return u.T


def sample_pairs(latent_dim: int, n_pairs: int, *, code_range: float,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(c, c_prime, k)``: codes ``float32 [n, d]`` differing only in coordinate ``k [n]``."""
    c = rng.uniform(-code_range, code_range, size=(n_pairs, latent_dim)).astype(np.float32)
    k = rng.integers(0, latent_dim, size=n_pairs)
    c_prime = c.copy()
    c_prime[np.arange(n_pairs), k] = rng.uniform(-code_range, code_range, size=n_pairs).astype(np.float32)
    return c, c_prime, k


def vp_score(
    decode: DecodeFn,
    latent_dim: int,
    *,
    axes: np.ndarray | None = None,
    n_pairs: int = 10_000,
    train_fraction: float = 0.1,
    code_range: float = 2.0,
    epochs: int = 30,
    batch_size: int = 64,
    lr: float = 1e-3,
    decode_batch: int = 256,
    seed: int = 0,
) -> VPResult:
    """VP score of a decoder (see the module docstring).

    Args:
        decode: codes ``float32 [n, d]`` -> images ``[n, C, H, W]`` in [0, 1] (numpy).
        latent_dim: ``d``.
        axes: ``[d, d]`` orthonormal rows along which codes vary (default identity).
        n_pairs, train_fraction, code_range: the protocol's sizes (Zhu et al.: 10,000 pairs, 10 %, [-2, 2]).
        epochs, batch_size, lr: the predictor's Adam training.
        seed: pairs, the train/test split and the predictor's initialisation.
    """
    if latent_dim < 2:
        raise ValueError(f"the VP score needs at least 2 latent dimensions, got {latent_dim}")
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction}")
    axes = np.eye(latent_dim, dtype=np.float32) if axes is None else np.asarray(axes, dtype=np.float32)
    if axes.shape != (latent_dim, latent_dim):
        raise ValueError(f"axes must be [d, d] = [{latent_dim}, {latent_dim}], got {list(axes.shape)}")
    rng = np.random.default_rng(seed)
    c, c_prime, k = sample_pairs(latent_dim, n_pairs, code_range=code_range, rng=rng)
    differences = []
    for start in range(0, n_pairs, decode_batch):
        stop = start + decode_batch
        a = np.asarray(decode(c[start:stop] @ axes), dtype=np.float32)
        b = np.asarray(decode(c_prime[start:stop] @ axes), dtype=np.float32)
        differences.append(a - b)
    x = torch.from_numpy(np.concatenate(differences))
    y = torch.from_numpy(k.astype(np.int64))
    order = rng.permutation(n_pairs)
    n_train = max(int(round(train_fraction * n_pairs)), latent_dim)
    train_idx, test_idx = torch.from_numpy(order[:n_train]), torch.from_numpy(order[n_train:])

    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        cnn = _cnn(x.shape[1], latent_dim)
    optimizer = torch.optim.Adam(cnn.parameters(), lr=lr)
    cnn.train()
    for _ in range(epochs):
        perm = train_idx[torch.randperm(n_train, generator=generator)]
        for start in range(0, n_train, batch_size):
            batch = perm[start:start + batch_size]
            loss = nn.functional.cross_entropy(cnn(x[batch]), y[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    cnn.eval()
    with torch.no_grad():
        predicted = torch.cat([cnn(x[test_idx[s:s + 512]]).argmax(1) for s in range(0, len(test_idx), 512)])
    correct = (predicted == y[test_idx]).numpy()
    truth = y[test_idx].numpy()
    per_axis = np.array([correct[truth == j].mean() if np.any(truth == j) else np.nan
                         for j in range(latent_dim)])
    return VPResult(
        score=float(correct.mean()),
        chance=1.0 / latent_dim,
        per_axis_accuracy=per_axis,
        n_pairs=n_pairs,
        n_train=n_train,
        params={"train_fraction": train_fraction, "code_range": code_range, "epochs": epochs,
                "batch_size": batch_size, "lr": lr, "seed": seed,
                "axes": "identity" if np.allclose(axes, np.eye(latent_dim)) else "given"},
    )
