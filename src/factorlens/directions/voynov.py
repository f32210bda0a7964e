"""Voynov & Babenko (2020): a deformator and a reconstructor trained jointly against a frozen generator.

Each step draws base codes z, a direction index k ~ U{K} and a shift eps ~ U[-s, s] with |eps| >= eps_min
(in posterior sigmas along the direction), decodes z and z + eps * shift_k, and a small CNN on the
channel-stacked pair predicts k (cross-entropy) and eps (L1, weight 0.25). Directions that the
reconstructor can tell apart are the ones that change the image in distinct ways. The same loop with a
frozen deformator gives the post-hoc reconstructor classification accuracy (RCA) of any direction set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from factorlens.directions.adapter import GeneratorAdapter
from factorlens.directions.direction_set import DirectionSet
from factorlens.directions.methods import direction_method, fraction, random_orthonormal
from factorlens.errors import ConfigError, TrainingError
from factorlens.registry import Registry
from factorlens.schema import boolean, choice, integer, number, option

DEFORMATORS: Registry[type[nn.Module]] = Registry("deformator type")
TRAINED_DEFORMATORS = ("linear", "proj", "ortho")


class Deformator(nn.Module):
    """Base: ``directions() -> [K, d]`` rows (differentiable for the trained types)."""

    def __init__(self, latent_dim: int, num_directions: int, generator: torch.Generator) -> None:
        super().__init__()
        self.latent_dim, self.num_directions = latent_dim, num_directions

    def directions(self) -> torch.Tensor:
        raise NotImplementedError

    #: whether shifts are ``eps * sigma_k * unit_k`` (True) or ``eps * sigma_bar * A e_k`` (False)
    unit_norm = True


@DEFORMATORS.register("linear")
class LinearDeformator(Deformator):
    """Unconstrained columns: their norm is learned (shift = eps * mean posterior sigma * A e_k)."""

    unit_norm = False

    def __init__(self, latent_dim: int, num_directions: int, generator: torch.Generator) -> None:
        super().__init__(latent_dim, num_directions, generator)
        init = torch.randn(num_directions, latent_dim, generator=generator) / np.sqrt(latent_dim)
        self.weight = nn.Parameter(init)

    def directions(self) -> torch.Tensor:
        return self.weight


@DEFORMATORS.register("proj")
class ProjDeformator(LinearDeformator):
    """Columns rescaled to unit norm, any K."""

    unit_norm = True

    def directions(self) -> torch.Tensor:
        return F.normalize(self.weight, dim=1)


@DEFORMATORS.register("ortho")
class OrthoDeformator(Deformator):
    """``matrix_exp(P - P^T)``: an orthogonal matrix at every step; K must equal d."""

    def __init__(self, latent_dim: int, num_directions: int, generator: torch.Generator) -> None:
        super().__init__(latent_dim, num_directions, generator)
        if num_directions != latent_dim:
            raise ConfigError(
                f"the ortho deformator needs k = active latent dim ({latent_dim}), got k={num_directions}"
            )
        self.log_half = nn.Parameter(0.1 * torch.randn(latent_dim, latent_dim, generator=generator))

    def directions(self) -> torch.Tensor:
        return torch.linalg.matrix_exp(self.log_half - self.log_half.T)


class FixedDeformator(Deformator):
    """Frozen rows given by the caller (baselines and post-hoc RCA)."""

    def __init__(self, matrix: np.ndarray | torch.Tensor) -> None:
        matrix = torch.as_tensor(np.asarray(matrix), dtype=torch.float32)
        super().__init__(matrix.shape[1], matrix.shape[0], torch.Generator())
        self.register_buffer("fixed", F.normalize(matrix, dim=1))

    def directions(self) -> torch.Tensor:
        return self.fixed


@DEFORMATORS.register("random")
class RandomDeformator(FixedDeformator):
    """Baseline: random orthonormal directions (K <= d), not trained."""

    def __init__(self, latent_dim: int, num_directions: int, generator: torch.Generator) -> None:
        if num_directions > latent_dim:
            raise ConfigError(
                f"the random deformator needs k <= latent dim ({latent_dim}), got k={num_directions}"
            )
        seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
        super().__init__(random_orthonormal(num_directions, latent_dim, seed))


@DEFORMATORS.register("identity")
class IdentityDeformator(FixedDeformator):
    """Baseline: the first K latent axes, not trained."""

    def __init__(self, latent_dim: int, num_directions: int, generator: torch.Generator) -> None:
        if num_directions > latent_dim:
            raise ConfigError(
                f"the identity deformator needs k <= latent dim ({latent_dim}), got k={num_directions}"
            )
        super().__init__(np.eye(latent_dim)[:num_directions])


class SubspaceDeformator(Deformator):
    """A deformator over the active subspace: ``inner`` rows ``[K, m]`` times ``basis [m, d]``."""

    def __init__(self, inner: Deformator, basis: torch.Tensor) -> None:
        super().__init__(basis.shape[1], inner.num_directions, torch.Generator())
        self.inner = inner
        self.unit_norm = inner.unit_norm
        self.register_buffer("basis", basis)

    def directions(self) -> torch.Tensor:
        return self.inner.directions() @ self.basis


def active_basis(adapter: GeneratorAdapter, threshold: float) -> torch.Tensor:
    """``[m, d]`` orthonormal rows spanning the base codes' principal axes with variance at least
    ``threshold`` times the largest one (all d axes under the prior).

    A shift along an inactive axis (KL ~ 0 in a beta-TCVAE) leaves the image unchanged, so learned
    directions only pick up a harmless but misleading null-space component there; we exclude it.
    """
    covariance = adapter.base_covariance().double()
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
    order = torch.argsort(eigenvalues, descending=True)
    keep = eigenvalues[order] >= threshold * eigenvalues[order[0]]
    return eigenvectors[:, order[keep]].T.float().contiguous()


class Reconstructor(nn.Module):
    """A LeNet-sized CNN: ``[B, 2C + extra_channels, H, W]`` image pair (plus any extra input planes) ->
    (``[B, K]`` direction logits, ``[B]`` shift)."""

    def __init__(self, channels: int, num_directions: int, width: int = 32, extra_channels: int = 0) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(2 * channels + extra_channels, width, 4, 2, 1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 4, 2, 1),
            nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 4, 2, 1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(2 * width * 16, 128),
            nn.ReLU(),
        )
        self.direction_head = nn.Linear(128, num_directions)
        self.shift_head = nn.Linear(128, 1)

    @classmethod
    def for_input(cls, channels: int, num_directions: int, kind: str) -> Reconstructor:
        """A reconstructor for the input ``kind`` of :func:`reconstructor_input` (pair or difference)."""
        return cls(channels, num_directions, extra_channels=int(_checked_input(kind) == "difference"))

    def forward(self, pair: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(pair)
        return self.direction_head(h), self.shift_head(h).squeeze(1)


RECONSTRUCTOR_INPUTS = ("pair", "difference")


def _checked_input(kind: str) -> str:
    if kind not in RECONSTRUCTOR_INPUTS:
        raise ConfigError(f"unknown reconstructor input {kind!r}; choose one of: "
                          f"{', '.join(RECONSTRUCTOR_INPUTS)}")
    return kind


def reconstructor_input(original: torch.Tensor, shifted: torch.Tensor, kind: str) -> torch.Tensor:
    """The reconstructor's input from ``[B, C, R, R]`` sample pairs: ``pair`` -> ``[B, 2C, R, R]`` (Voynov &
    Babenko); ``difference`` -> ``[B, 2C + 1, R, R]``: the unshifted sample, the difference divided by its
    per-sample RMS, and a constant plane holding log RMS. Why: a diffusion model's h-space edits at
    t >= t_edit move pixels by ~0.003 (docs/results.md), far below the image's own contrast, and a
    reconstructor on raw pairs stayed at chance; the normalised difference shows the pattern of the edit
    at unit scale whatever its size, and the log-RMS plane keeps the magnitude for the shift regression."""
    if _checked_input(kind) == "pair":
        return torch.cat([original, shifted], dim=1)
    difference = shifted - original
    rms = difference.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt().clamp_min(1e-12)
    log_rms = torch.log(rms).expand(-1, 1, *difference.shape[2:])
    return torch.cat([original, difference / rms, log_rms], dim=1)


def pool_eval_pairs(pairs: int) -> int:
    """Held-out pairs of a pooled RCA with ``pairs`` training pairs: a quarter of them, at least 64."""
    return max(64, pairs // 4)


@dataclass
class ReconstructorResult:
    """Training record of one deformator/reconstructor run."""

    directions: np.ndarray  # [K, d] rows after training
    accuracy: float  # direction classification accuracy on fresh held-out batches
    shift_error: float  # mean |eps_hat - eps| on the held-out batches, in sigmas
    final_loss: float  # mean total loss over the last 10% of steps


def mean_sigma(covariance: torch.Tensor) -> float:
    """Root mean variance of the base codes (``covariance [d, d]``): the step unit of a `linear`
    deformator, whose columns carry their own norm."""
    return float(torch.sqrt(torch.diagonal(covariance).mean()))


class ShiftSampler:
    """Draws (k, eps) and turns them into latent shifts in posterior-sigma units."""

    def __init__(self, adapter: GeneratorAdapter, shift_max: float, shift_min: float) -> None:
        if not 0 <= shift_min < shift_max:
            raise ConfigError(f"need 0 <= shift_min < shift_max, got {shift_min} and {shift_max}")
        self.shift_max, self.shift_min = shift_max, shift_min
        self.covariance = adapter.base_covariance()
        self.mean_sigma = mean_sigma(self.covariance)

    def sigma_shifts(self, deformator: Deformator) -> torch.Tensor:
        """``[K, d]``: one posterior sigma along each direction (differentiable in the deformator)."""
        rows = deformator.directions()
        if not deformator.unit_norm:
            return rows * self.mean_sigma
        sigma = torch.sqrt(torch.einsum("kd,de,ke->k", rows, self.covariance, rows).clamp_min(1e-12))
        return rows * sigma[:, None]

    def draw(
        self, n: int, num_directions: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return draw_shifts(n, num_directions, self.shift_min, self.shift_max, generator)


def draw_shifts(n: int, num_directions: int, shift_min: float, shift_max: float,
                generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``(k [n] direction indices ~ U{K}, eps [n])``: |eps| ~ U[shift_min, shift_max], random sign."""
    k = torch.randint(num_directions, (n,), generator=generator)
    magnitude = shift_min + (shift_max - shift_min) * torch.rand(n, generator=generator)
    sign = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    return k, sign * magnitude


def reconstructor_loss(logits: torch.Tensor, eps_hat: torch.Tensor, k: torch.Tensor, eps: torch.Tensor,
                       shift_weight: float) -> torch.Tensor:
    """Voynov & Babenko's objective: cross-entropy on the direction ``k [B]`` from ``logits [B, K]`` plus
    ``shift_weight`` times the mean L1 error of the predicted shift ``eps_hat [B]``."""
    return F.cross_entropy(logits, k) + shift_weight * (eps_hat - eps).abs().mean()


def train_reconstructor(
    adapter: GeneratorAdapter,
    deformator: Deformator,
    *,
    steps: int,
    seed: int,
    batch_size: int = 32,
    shift_max: float = 3.0,
    shift_min: float = 0.3,
    lr: float = 1e-3,
    shift_weight: float = 0.25,
    realism_weight: float = 0.0,
    eval_batches: int = 10,
    progress: bool = False,
    input_kind: str = "pair",
) -> ReconstructorResult:
    """Train a fresh reconstructor (and the deformator if it has parameters) for ``steps`` steps; it sees
    the pairs as :func:`reconstructor_input` ``input_kind`` makes them."""
    torch.manual_seed(seed)  # reconstructor initialisation
    gen = torch.Generator().manual_seed(seed)
    sampler = ShiftSampler(adapter, shift_max, shift_min)
    K = deformator.num_directions
    with torch.no_grad():
        probe = adapter.decode(adapter.sample_base(1, gen))
    reconstructor = Reconstructor.for_input(int(probe.shape[1]), K, input_kind)
    params = list(reconstructor.parameters()) + list(deformator.parameters())
    optimizer = torch.optim.Adam(params, lr=lr)
    if realism_weight > 0 and adapter.discriminator is None:
        raise ConfigError("realism_weight > 0 needs a discriminator (e.g. the btcvae-adv adversary)")
    losses: list[float] = []
    from tqdm.auto import tqdm

    from factorlens.directions.progress import progress_enabled

    with adapter.frozen():
        for _ in tqdm(range(steps), desc="directions", disable=not (progress and progress_enabled())):
            z = adapter.sample_base(batch_size, gen)
            k, eps = sampler.draw(batch_size, K, gen)
            shifts = sampler.sigma_shifts(deformator)[k] * eps[:, None]
            with torch.no_grad():
                original = adapter.decode(z)
            shifted = adapter.decode(z + shifts)
            logits, eps_hat = reconstructor(reconstructor_input(original, shifted, input_kind))
            loss = reconstructor_loss(logits, eps_hat, k, eps, shift_weight)
            if realism_weight > 0:
                loss = loss + realism_weight * F.softplus(-adapter.discriminator(shifted)).mean()
            if not torch.isfinite(loss):
                raise TrainingError(f"non-finite direction loss at step {len(losses)}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        correct, shift_error, total = 0, 0.0, 0
        with torch.no_grad():
            for _ in range(eval_batches):
                z = adapter.sample_base(batch_size, gen)
                k, eps = sampler.draw(batch_size, K, gen)
                shifts = sampler.sigma_shifts(deformator)[k] * eps[:, None]
                logits, eps_hat = reconstructor(
                    reconstructor_input(adapter.decode(z), adapter.decode(z + shifts), input_kind)
                )
                correct += int((logits.argmax(1) == k).sum())
                shift_error += float((eps_hat - eps).abs().sum())
                total += batch_size
    tail = losses[-max(1, steps // 10) :]
    return ReconstructorResult(
        directions=deformator.directions().detach().double().numpy(),
        accuracy=correct / max(total, 1),
        shift_error=shift_error / max(total, 1),
        final_loss=float(np.mean(tail)),
    )


def cached_reconstructor_accuracies(
    adapter: GeneratorAdapter,
    matrices: dict[str, np.ndarray],
    *,
    pairs: int,
    eval_pairs: int,
    steps: int,
    seed: int,
    batch_size: int = 32,
    shift_max: float = 3.0,
    shift_min: float = 0.3,
    lr: float = 1e-3,
    shift_weight: float = 0.25,
    input_kind: str = "pair",
) -> dict[str, float]:
    """RCA of frozen direction sets from a fixed pool of decoded pairs (for generators whose decode is
    expensive: a diffusion run's decode is a DDIM chain).

    ``pairs + eval_pairs`` base codes z and draws (k, ε) are made once from ``seed`` and shared by every
    set in ``matrices`` (name -> ``[K, d]`` rows; all the same K), so the sets are compared on the same
    codes and labels; the unshifted images are decoded once. Per set, a fresh reconstructor (initialised
    from ``seed``) trains ``steps`` minibatches of ``batch_size`` drawn from the ``pairs`` training pairs
    and is scored on the ``eval_pairs`` held-out ones. Returns name -> accuracy. Unlike
    :func:`train_reconstructor`, which decodes fresh pairs every step, a reconstructor here can overfit the
    pool; the held-out accuracy says how far it generalises. The reconstructor sees the pairs as
    :func:`reconstructor_input` ``input_kind`` makes them.
    """
    if pairs < 1 or eval_pairs < 1:
        raise ConfigError(f"RCA pairs must be positive, got {pairs} training and {eval_pairs} held-out")
    sizes = {np.asarray(m).shape[0] for m in matrices.values()}
    if len(sizes) != 1:
        raise ConfigError(f"RCA sets must have the same number of directions, got {sorted(sizes)}")
    K = sizes.pop()
    gen = torch.Generator().manual_seed(seed)
    sampler = ShiftSampler(adapter, shift_max, shift_min)
    n = pairs + eval_pairs
    z = adapter.sample_base(n, gen)
    k, eps = sampler.draw(n, K, gen)
    with adapter.frozen(), torch.no_grad():
        original = adapter.decode_batched(z, 64)
        accuracies = {}
        for name, matrix in matrices.items():
            shifts = sampler.sigma_shifts(FixedDeformator(matrix))[k] * eps[:, None]
            shifted = adapter.decode_batched(z + shifts, 64)
            stacked = reconstructor_input(original, shifted, input_kind)
            with torch.enable_grad():
                torch.manual_seed(seed)  # the same initial reconstructor for every set
                reconstructor = Reconstructor.for_input(int(original.shape[1]), K, input_kind)
                optimizer = torch.optim.Adam(reconstructor.parameters(), lr=lr)
                batches = torch.Generator().manual_seed(seed + 1)
                for _ in range(steps):
                    rows = torch.randint(pairs, (batch_size,), generator=batches)
                    logits, eps_hat = reconstructor(stacked[rows])
                    loss = reconstructor_loss(logits, eps_hat, k[rows], eps[rows], shift_weight)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
            logits, _ = reconstructor(stacked[pairs:])
            accuracies[name] = float((logits.argmax(1) == k[pairs:]).float().mean())
    return accuracies


@dataclass(frozen=True)
class VoynovOptions:
    deformator: str = option("proj", choice(*DEFORMATORS.names()),
                             "linear, proj, ortho (trained) or random, identity (fixed baselines)")
    batch_size: int = option(32, integer(1), "base codes per training step")
    shift_max: float = option(3.0, number(positive=True), "largest shift magnitude, in posterior sigmas")
    shift_min: float = option(0.3, number(lo=0),
                              "smallest shift magnitude, in posterior sigmas (< shift_max)")
    lr: float = option(1e-3, number(positive=True), "Adam learning rate")
    shift_weight: float = option(0.25, number(lo=0), "weight of the L1 shift-regression loss")
    realism_weight: float = option(0.0, number(lo=0),
                                   "weight of a generator loss from the model's discriminator (needs one)")
    active_threshold: float = option(0.01, fraction(),
                                     "trained deformators use the axes with variance >= this x the largest")
    progress: bool = option(False, boolean, "show a progress bar")

    def validate(self) -> None:
        if self.shift_min >= self.shift_max:
            raise ConfigError(f"option.shift_min must be < option.shift_max, got {self.shift_min} and "
                              f"{self.shift_max}")


@direction_method("voynov", VoynovOptions, "Voynov & Babenko (2020): a deformator and a reconstructor "
                  "trained against the frozen generator")
def voynov(
    adapter: GeneratorAdapter,
    options: VoynovOptions | None = None,
    *,
    k: int | None = None,
    seed: int = 0,
    steps: int | None = None,
) -> DirectionSet:
    """Learned directions (Voynov & Babenko 2020), defaults as recommended for 64x64, d=32 on CPU.

    ``deformator`` is one of ``linear``, ``proj``, ``ortho`` (trained) or ``random``, ``identity``
    (baselines in the full latent space: only the reconstructor is trained, which measures their RCA).
    Trained deformators live in the active subspace (:func:`active_basis` with ``active_threshold``), and
    ``k`` defaults to its dimension. ``realism_weight`` adds a non-saturating generator loss from the
    adapter's discriminator on the shifted images.
    """
    options = options or VoynovOptions()
    deformator, batch_size, lr = options.deformator, options.batch_size, options.lr
    shift_max, shift_min, shift_weight = options.shift_max, options.shift_min, options.shift_weight
    realism_weight, active_threshold = options.realism_weight, options.active_threshold
    steps = 2000 if steps is None else steps
    gen = torch.Generator().manual_seed(seed)
    deformator_class = DEFORMATORS.get(deformator)
    if deformator in TRAINED_DEFORMATORS:
        basis = active_basis(adapter, active_threshold)
        k = len(basis) if k is None else k
        deformator_module: Deformator = SubspaceDeformator(deformator_class(len(basis), k, gen), basis)
    else:
        k = adapter.latent_dim if k is None else k
        deformator_module = deformator_class(adapter.latent_dim, k, gen)
    result = train_reconstructor(
        adapter,
        deformator_module,
        steps=steps,
        seed=seed,
        batch_size=batch_size,
        shift_max=shift_max,
        shift_min=shift_min,
        lr=lr,
        shift_weight=shift_weight,
        realism_weight=realism_weight,
        progress=options.progress,
    )
    if deformator_class.unit_norm:
        scales = adapter.direction_scales(result.directions)
    else:
        # A `linear` deformator learned its columns' norms: it was trained with shifts of
        # eps * mean posterior sigma * A e_k, so one unit of shift is that vector, not one sigma along it.
        scales = mean_sigma(adapter.base_covariance()) * np.linalg.norm(result.directions, axis=1)
    return DirectionSet(
        matrix=result.directions,
        scales=scales,
        method="voynov",
        params={
            "deformator": deformator,
            "steps": steps,
            "batch_size": batch_size,
            "shift_max": shift_max,
            "shift_min": shift_min,
            "lr": lr,
            "shift_weight": shift_weight,
            "realism_weight": realism_weight,
            "active_threshold": active_threshold,
            "base_source": adapter.base_source,
        },
        seed=seed,
        extras={"rca": result.accuracy, "shift_error": result.shift_error, "final_loss": result.final_loss},
    )
