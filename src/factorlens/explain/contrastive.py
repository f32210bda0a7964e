"""K contrastive latent directions, LatentCLR / DiffEx style.

Edit of code ``z`` along direction k: ``z + alpha * sigma_k * f_k(z) / |f_k(z)|`` with ``f_k`` a fixed
vector, a linear map or a small MLP; ``sigma_k`` is the std of the aggregate posterior along the direction
(posterior-sigma units, so training and use share one edit size). Features of an edit: the projector's
``normalize(P(h(z + dz)) - P(h(z)))`` with ``h`` the code itself (DiffEx) or the decoder's output
activations (LatentCLR projects generator activations). Loss on ``|cos|`` with a temperature: positives
are edits with the same k (self excluded), negatives edits with another k;
``loss = -log(mean_pos exp(|cos|/tau) / mean_neg exp(|cos|/tau))``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from factorlens.directions.adapter import GeneratorAdapter
from factorlens.schema import choice, integer, number, option

EDIT_KINDS = ("fixed", "linear", "mlp")
FEATURE_KINDS = ("latent", "decoder")


@dataclass(frozen=True)
class ContrastiveOptions:
    """How the K directions are trained (``explain --option KEY=VALUE``)."""

    edit: str = option("fixed", choice(*EDIT_KINDS), "f_k: fixed vector, linear map or MLP (3 layers)")
    features: str = option(
        "latent",
        choice(*FEATURE_KINDS),
        "projector input: the code (DiffEx) or the decoder's output activations (LatentCLR)",
    )
    temperature: float = option(
        2.0, number(positive=True), "tau of exp(|cos| / tau) (DiffEx's 0.5 factor = 2)"
    )
    batch_size: int = option(64, integer(2), "base codes per step (each edited along all K directions)")
    lr: float = option(1e-3, number(positive=True), "Adam learning rate")
    weight_decay: float = option(1e-3, number(lo=0), "Adam weight decay")
    hidden: int = option(256, integer(8), "width of the MLP edit and of the projector's hidden layer")
    projection: int = option(128, integer(2), "projector output dimension")
    pool: int = option(16, integer(1), "decoder features: activations average-pooled to pool x pool")
    active_threshold: float = option(
        0.01,
        number(lo=0, hi=1.0001),
        "directions live in the aggregate posterior's principal axes with variance >= this x the largest "
        "(0 = the whole code space), as voynov's",
    )


class EditModels(nn.Module):
    """``K`` edit functions ``f_k: [B, d] -> [B, d]``; :meth:`unit` returns their normalised edits."""

    def __init__(
        self, k: int, dim: int, kind: str, hidden: int = 256, basis: torch.Tensor | None = None
    ) -> None:
        super().__init__()
        self.kind, self.k, self.dim = kind, k, dim
        # [m, d] orthonormal rows: edits are projected onto their span (the active subspace)
        self.register_buffer("basis", torch.eye(dim) if basis is None else basis.float().clone())
        if kind == "fixed":
            self.vectors = nn.Parameter(torch.randn(k, dim))
        elif kind == "linear":
            self.maps = nn.ModuleList(nn.Linear(dim, dim) for _ in range(k))
        else:
            self.maps = nn.ModuleList(
                nn.Sequential(
                    nn.Linear(dim, hidden),
                    nn.BatchNorm1d(hidden),
                    nn.ReLU(),
                    nn.Linear(hidden, hidden),
                    nn.BatchNorm1d(hidden),
                    nn.ReLU(),
                    nn.Linear(hidden, dim),
                )
                for _ in range(k)
            )

    def unit(self, z: torch.Tensor) -> torch.Tensor:
        """``[K, B, d]`` unit edit directions at ``z [B, d]``."""
        if self.kind == "fixed":
            raw = self.vectors[:, None, :].expand(self.k, len(z), self.dim)
        else:
            raw = torch.stack([f(z) for f in self.maps])
        raw = (raw @ self.basis.T) @ self.basis
        return raw / raw.norm(dim=-1, keepdim=True).clamp_min(1e-8)


def contrastive_loss(features: torch.Tensor, temperature: float) -> torch.Tensor:
    """DiffEx/LatentCLR loss of ``features [K, B, F]`` (unit rows; row (k, b) = edit k of code b).

    Similarities ``exp(|cos| / tau)`` between all ``K * B`` rows; positives share k (self excluded),
    negatives differ in k; returns ``-log(mean positive / mean negative)``.
    """
    k, b, _ = features.shape
    flat = features.reshape(k * b, -1)
    sim = torch.exp((flat @ flat.T).abs() / temperature)
    ids = torch.arange(k).repeat_interleave(b)
    same = ids[:, None] == ids[None, :]
    positive = same & ~torch.eye(k * b, dtype=torch.bool)
    return -torch.log(sim[positive].mean() / sim[~same].mean())


def _projector(inputs: int, hidden: int, out: int) -> nn.Module:
    return nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, out))


def train_directions(
    adapter: GeneratorAdapter,
    options: ContrastiveOptions,
    *,
    k: int,
    steps: int,
    alpha: float,
    seed: int = 0,
    progress: bool = True,
) -> tuple[EditModels, list[float]]:
    """Train ``k`` edit models through ``adapter`` (its generator frozen) at edit sizes
    ``U[alpha / 2, alpha]`` posterior sigmas (:func:`edit_codes`' units).

    Returns the edit models (eval mode) and the loss per step.
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    dim = adapter.latent_dim
    from factorlens.directions.voynov import active_basis

    edits = EditModels(
        k, dim, options.edit, options.hidden, basis=active_basis(adapter, options.active_threshold)
    )
    covariance = adapter.base_covariance()
    if options.features == "latent":
        feature_dim = dim

        def features(z: torch.Tensor) -> torch.Tensor:
            return z
    else:
        probe = adapter.decode_batched(adapter.sample_base(1, gen))
        feature_dim = probe.shape[1] * min(options.pool, probe.shape[-1]) ** 2

        def features(z: torch.Tensor) -> torch.Tensor:
            images = adapter.decode(z)
            pooled = nn.functional.adaptive_avg_pool2d(images, min(options.pool, images.shape[-1]))
            return pooled.reshape(len(z), -1)

    projector = _projector(feature_dim, options.hidden, options.projection)
    params = list(edits.parameters()) + list(projector.parameters())
    optimiser = torch.optim.Adam(params, lr=options.lr, weight_decay=options.weight_decay)
    losses: list[float] = []
    edits.train()
    with adapter.frozen():
        for _ in tqdm(range(steps), desc="directions", unit="step", disable=not progress):
            z = adapter.sample_base(options.batch_size, gen)
            size = alpha * (0.5 + 0.5 * torch.rand(k, len(z), generator=gen))
            shifted = edit_codes(edits, z, size, covariance)
            base_feat = projector(features(z))  # [B, P]
            edited = projector(features(shifted.reshape(-1, dim))).reshape(k, len(z), -1)
            diff = edited - base_feat[None]
            loss = contrastive_loss(
                diff / diff.norm(dim=-1, keepdim=True).clamp_min(1e-8), options.temperature
            )
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(float(loss.item()))
    edits.eval()
    return edits, losses


def posterior_sigma(unit: torch.Tensor, covariance: torch.Tensor) -> torch.Tensor:
    """``sqrt(u^T Sigma u)`` for unit directions ``unit [..., d]``: the std of the aggregate posterior
    (covariance ``Sigma``, identity for a prior) along each direction."""
    return torch.sqrt(torch.einsum("...d,de,...e->...", unit, covariance, unit).clamp_min(1e-12))


def edit_codes(
    edits: EditModels, z: torch.Tensor, alpha: torch.Tensor | float, covariance: torch.Tensor
) -> torch.Tensor:
    """``[K, B, d]``: ``z + alpha * sigma_k(z) * u_k(z)``, edits of ``alpha`` posterior sigmas along every
    direction (``alpha`` a number or ``[K, B]``; a negative alpha edits the other way)."""
    unit = edits.unit(z)
    return (
        z[None]
        + (torch.as_tensor(alpha, dtype=z.dtype) * posterior_sigma(unit, covariance))[..., None] * unit
    )


def mean_directions(edits: EditModels, codes: torch.Tensor) -> np.ndarray:
    """``float32 [K, d]``: the unit mean of each direction's unit edits over ``codes`` (the fixed vectors
    themselves for ``edit=fixed``): the rows of the saved :class:`DirectionSet`."""
    with torch.no_grad():
        mean = edits.unit(codes).mean(dim=1)
    return (mean / mean.norm(dim=-1, keepdim=True).clamp_min(1e-8)).numpy().astype(np.float32)
