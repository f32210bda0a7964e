"""Directions in the h-space of a diffusion U-Net: the diffusion adapter and the ``hspace`` (Zhang et al.,
arXiv 2310.09912) and ``hspace-pca`` (Haas et al.) methods.

**Codes.** A diffusion model has no low-dimensional latent; its direction space is h-space, the output of
the U-Net's middle block (``[C_h, H_h, W_h]``, 64x8x8 for ``cpu/ddpm``), and a sample is fixed by its
initial noise x_T. :class:`DiffusionAdapter` therefore uses codes ``z = [x_T (C·R·R), Δh (C_h·H_h·W_h)]``:
``decode(z)`` runs the deterministic DDIM chain from x_T with a forward hook that adds Δh to the middle
block's output at every step with t >= ``t_edit``. Base codes are ``[x_T, 0]`` with x_T ~ N(0, I)
(``prior``) or DDIM inversions of training images (``posterior``); every direction has zeros in the x_T
part (``embed_directions``), so the shared machinery (``DirectionSet``, traversal grids, oracle scoring,
RCA, the random baseline) works unchanged.

**Units.** A shift of 1 along a unit direction v is ``r v``, with ``r² = E‖h - h̄_t‖²`` the mean squared
distance of a sample's h from the mean h of its timestep, over sampled trajectories (all steps with
t >= t_edit): one unit moves h as far as one sample's h typically lies from another's, whatever the
direction. (A first version used h's per-channel standard deviation along v: one such unit is ~1/64 of r
on ``cpu/ddpm``'s 64x8x8 h-space, and shifts of 3 of them moved the decoded pixels by < 0.001 on average,
too little for any reconstructor to tell directions apart; docs/results.md.)

**hspace** (choices where the paper is silent, documented in docs/directions.md): the shift module is a
``proj`` matrix (unit columns) or ``ortho`` (orthonormal columns, ``torch.nn.utils.parametrizations.
orthogonal``); a Voynov-style reconstructor (the same CNN as ``voynov``) sees (unshifted, shifted) sample
pairs and predicts the direction (cross-entropy) and the shift (L1, weight 0.25); a discriminator (the
``conv`` family's, at the sample size) is trained to tell shifted from unshifted samples of the same x_T
and the shift module gets its non-saturating loss with weight ``realism_weight``; gradients flow through
the whole DDIM chain, each step optionally under ``torch.utils.checkpoint``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from factorlens.directions.adapter import GeneratorAdapter
from factorlens.directions.direction_set import DirectionSet
from factorlens.directions.methods import direction_method
from factorlens.directions.voynov import (
    RECONSTRUCTOR_INPUTS,
    Reconstructor,
    draw_shifts,
    reconstructor_input,
    reconstructor_loss,
)
from factorlens.errors import ConfigError, TrainingError
from factorlens.schema import boolean, choice, integer, number, option

DEFAULT_DDIM_STEPS = 10


class DiffusionAdapter(GeneratorAdapter):
    """A :class:`GeneratorAdapter` over a diffusion model (``model.is_diffusion``, e.g. ``ddpm``).

    Args:
        model: a :class:`~factorlens.models.ddpm.DDPM` (eval mode; frozen while methods train).
        images: optional ``[N, C, S, S]`` training images (``uint8`` or float in [0, 1]) for inverted base
            codes (``base_source="posterior"``); inversion runs on the first ``max_inversions``.
        base_source: ``"prior"`` (x_T ~ N(0, I), the default) or ``"posterior"`` (DDIM inversions).
        ddim_steps: DDIM steps of ``decode`` (and of the inversion).
        t_edit: Δh is added at steps with timestep >= ``t_edit`` (0 = every step).
        checkpointed: run each DDIM step of ``decode`` under ``torch.utils.checkpoint``.
        h_samples: trajectories sampled to estimate the unit ``h_unit`` (r above).
    """

    # Each decode is a DDIM chain: RCA trains on one pool of decoded pairs (300 online steps of 32 fresh
    # pairs would decode 19,200 pairs per set).
    default_rca_pairs = 1024

    def __init__(self, model: nn.Module, images: np.ndarray | torch.Tensor | None = None, *,
                 base_source: str | None = None, ddim_steps: int = DEFAULT_DDIM_STEPS, t_edit: int = 0,
                 checkpointed: bool = False, h_samples: int = 16, max_inversions: int = 256,
                 seed: int = 0) -> None:
        from factorlens.networks.unet import h_shape

        model.eval()
        self.model = model
        self.noise_shape = tuple(model.noise_shape(1)[1:])
        self.noise_dim = int(np.prod(self.noise_shape))
        self.h_shape = h_shape(model.unet, model.channels, model.resolution)
        self.h_dim = int(np.prod(self.h_shape))
        self.images = images
        self.max_inversions = max_inversions
        self.checkpointed = checkpointed
        self._h_seed = seed
        self._h_samples = h_samples
        self.ddim_steps, self.t_edit = ddim_steps, t_edit
        source = base_source or "prior"
        if source not in ("prior", "posterior"):
            raise ConfigError(f"unknown base source {source!r}; choose one of: prior, posterior")
        super().__init__(self._decode_codes, self.noise_dim + self.h_dim, base_source="prior",
                         frozen_modules=[model])
        self.configure(ddim_steps=ddim_steps, t_edit=t_edit, base_source=source)

    # ------------------------------------------------------------------ settings
    def configure(self, *, ddim_steps: int | None = None, t_edit: int | None = None,
                  base_source: str | None = None) -> None:
        """Change the DDIM steps, t_edit or base source (h statistics and inversions are recomputed)."""
        from factorlens.models.diffusion import ddim_timesteps

        steps = self.ddim_steps if ddim_steps is None else ddim_steps
        ddim_timesteps(self.model.config.timesteps, steps)  # checks steps
        t_edit = self.t_edit if t_edit is None else t_edit
        if not 0 <= t_edit < self.model.config.timesteps:
            raise ConfigError(f"t_edit must be in [0, {self.model.config.timesteps - 1}], got {t_edit}")
        changed = (steps, t_edit) != (getattr(self, "_stats_key", None) or (None, None))
        self.ddim_steps, self.t_edit = steps, t_edit
        if changed:
            self.h_unit = self._h_deviation_norm()
            self._stats_key = (steps, t_edit)
        if base_source == "posterior":
            if self.images is None or len(self.images) == 0:
                raise ConfigError("base source 'posterior' (DDIM inversions) needs training images")
            codes = self.invert(self.images[: self.max_inversions])
            self.posterior_codes = torch.cat([codes, torch.zeros(len(codes), self.h_dim)], dim=1)
            self.base_source = "posterior"
        elif base_source == "prior":
            self.posterior_codes, self.base_source = None, "prior"

    @torch.no_grad()
    def invert(self, images: np.ndarray | torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """``[N, noise_dim]`` DDIM inversions (``ddim_steps`` steps) of images in [0, 1] or uint8."""
        x = torch.as_tensor(np.asarray(images))
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        return torch.cat([self.model.invert(chunk, steps=self.ddim_steps).flatten(1)
                          for chunk in torch.split(x, batch_size)])

    # ------------------------------------------------------------------ h statistics
    @torch.no_grad()
    def collect_h(self, n: int, *, seed: int, batch_size: int = 16) -> torch.Tensor:
        """``[n, steps_kept, h_dim]``: h along the DDIM trajectories of ``n`` noises (steps t >= t_edit)."""
        from factorlens.models.diffusion import ddim_sample, ddim_timesteps

        noise = torch.randn(self.model.noise_shape(n), generator=torch.Generator().manual_seed(seed))
        kept = [t >= self.t_edit for t in ddim_timesteps(self.model.config.timesteps, self.ddim_steps)]
        out = []
        for chunk in torch.split(noise, batch_size):
            captured: list[torch.Tensor] = []
            ddim_sample(self.model.eps_fn(capture=captured), chunk, self.model.alphas_cumprod,
                        self.ddim_steps, clip=self.model.config.clip_sample)
            steps = [h.flatten(1) for h, keep in zip(captured, kept, strict=True) if keep]
            out.append(torch.stack(steps, dim=1))
        return torch.cat(out)

    def _h_deviation_norm(self) -> torch.Tensor:
        """r (a 0-d float32 tensor): the RMS over samples and kept steps of ‖h - the step's mean h‖."""
        h = self.collect_h(self._h_samples, seed=self._h_seed + 7_919).double()  # [n, s, h_dim]
        deviation = h - h.mean(dim=0, keepdim=True)
        # unbiased over the n samples of each step, like a variance
        squared = (deviation**2).sum(dim=(0, 2)) / max(len(h) - 1, 1)  # [s]
        return squared.mean().sqrt().float()

    # ------------------------------------------------------------------ codes
    def split(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``z [B, d]`` -> (x_T ``[B, C, R, R]``, Δh ``[B, C_h, H_h, W_h]``)."""
        x_t = z[:, : self.noise_dim].reshape(len(z), *self.noise_shape)
        return x_t, z[:, self.noise_dim :].reshape(len(z), *self.h_shape)

    def _decode_codes(self, z: torch.Tensor) -> torch.Tensor:
        x_t, shift = self.split(z)
        return self.model.sample(x_t, steps=self.ddim_steps, shift=shift, t_edit=self.t_edit,
                                 checkpointed=self.checkpointed and torch.is_grad_enabled())

    def sample_base(self, n: int, generator: torch.Generator, source: str | None = None) -> torch.Tensor:
        source = source or self.base_source
        if source == "posterior":
            return super().sample_base(n, generator, "posterior")
        x_t = torch.randn(n, self.noise_dim, generator=generator)
        return torch.cat([x_t, torch.zeros(n, self.h_dim)], dim=1)

    def reference_codes(self, n: int = 4096, seed: int = 0) -> np.ndarray:
        return self.sample_base(n, torch.Generator().manual_seed(seed)).double().numpy()

    @property
    def direction_dim(self) -> int:
        return self.h_dim

    def embed_directions(self, matrix: np.ndarray) -> np.ndarray:
        matrix = np.asarray(matrix)
        if matrix.ndim != 2 or matrix.shape[1] != self.h_dim:
            raise ConfigError(f"h-space directions must be [K, {self.h_dim}], got {tuple(matrix.shape)}")
        return np.concatenate([np.zeros((len(matrix), self.noise_dim), matrix.dtype), matrix], axis=1)

    def h_scales(self, rows: torch.Tensor) -> torch.Tensor:
        """``[K]`` the length of one shift unit along unit h-space rows ``[K, h_dim]``: r for every row."""
        return self.h_unit.to(rows.dtype).expand(len(rows))

    def direction_scales(self, matrix: np.ndarray) -> np.ndarray:
        """``[K]`` one shift unit along the rows of ``matrix [K, d]``: r times the norm of the normalised
        row's h part (x_T parts count 0; a pure h-space row gets r)."""
        rows = torch.as_tensor(np.asarray(matrix), dtype=torch.float64)
        norm = torch.linalg.vector_norm(rows, dim=1, keepdim=True).clamp_min(1e-12)
        h_part = (rows / norm)[:, self.noise_dim :]
        return (torch.linalg.vector_norm(h_part, dim=1) * float(self.h_unit)).float().numpy()

    def base_covariance(self) -> torch.Tensor:
        """Diagonal: 0 on x_T (directions never move it), r² on h (isotropic: one shift unit along any unit
        h-space direction is r)."""
        return torch.diag(torch.cat([torch.zeros(self.noise_dim), self.h_unit.expand(self.h_dim) ** 2]))


def require_diffusion(adapter: GeneratorAdapter, method: str) -> DiffusionAdapter:
    if not isinstance(adapter, DiffusionAdapter):
        raise ConfigError(f"method {method} needs a diffusion run (model ddpm or an imported U-Net); this "
                          "run's model has a latent code: use voynov, sefa or pca")
    return adapter


def _check_k(k: int, adapter: DiffusionAdapter) -> int:
    if k > adapter.h_dim:
        raise ConfigError(f"k={k} directions exceed h's dimension {adapter.h_dim} "
                          f"({'x'.join(map(str, adapter.h_shape))})")
    return k


# ---------------------------------------------------------------------------------------------- hspace


@dataclass(frozen=True)
class HspaceOptions:
    deformator: str = option("proj", choice("proj", "ortho"),
                             "shift module: proj (unit columns) or ortho (orthonormal columns)")
    batch_size: int = option(4, integer(1), "initial noises per training step")
    shift_max: float = option(3.0, number(positive=True), "largest shift, in units of r (h's RMS deviation)")
    shift_min: float = option(0.5, number(lo=0), "smallest shift magnitude (< shift_max)")
    lr: float = option(1e-3, number(positive=True), "Adam learning rate (shift module, reconstructor)")
    shift_lr: float = option(0.0, number(lo=0),
                             "Adam learning rate of the shift module alone (0 = lr); a smaller one keeps "
                             "the directions near their start (init) while the reconstructor learns")
    shift_weight: float = option(0.25, number(lo=0), "weight of the L1 shift regression (Voynov & Babenko)")
    realism_weight: float = option(0.1, number(lo=0),
                                   "weight of the discriminator's non-saturating loss; 0 = no discriminator")
    realism_start: int = option(0, integer(0),
                                "step from which the discriminator's loss reaches the shift module "
                                "(0 = from the first); the discriminator itself trains from the first")
    disc_lr: float = option(2e-4, number(positive=True), "Adam learning rate of the discriminator")
    ddim_steps: int = option(DEFAULT_DDIM_STEPS, integer(1), "DDIM steps of every decode (training, scoring)")
    t_edit: int = option(0, integer(0), "Δh is added at steps with t >= t_edit (0 = every step)")
    checkpoint: bool = option(True, boolean, "gradient checkpointing per DDIM step")
    base: str = option("prior", choice("prior", "posterior"),
                       "base codes: x_T ~ N(0, I) (prior) or DDIM inversions of training images")
    init: str = option("random", choice("random", "pca"),
                       "initial directions: random unit rows, or the top-K hspace-pca directions "
                       "(h of init_samples trajectories at t >= t_edit)")
    init_samples: int = option(64, integer(2), "init=pca: sampled trajectories whose h is analysed")
    reconstructor_input: str = option("pair", choice(*RECONSTRUCTOR_INPUTS),
                                      "what the reconstructor sees: the (unshifted, shifted) pair, or the "
                                      "unshifted sample with the RMS-normalised difference and its log RMS")

    def validate(self) -> None:
        if self.shift_min >= self.shift_max:
            raise ConfigError(f"option.shift_min must be < option.shift_max, got {self.shift_min} and "
                              f"{self.shift_max}")


class ShiftModule(nn.Module):
    """``K`` h-space directions ``[K, h_dim]``: unit rows (``proj``) or orthonormal rows (``ortho``)."""

    def __init__(self, h_dim: int, k: int, kind: str, generator: torch.Generator,
                 initial: torch.Tensor | None = None) -> None:
        super().__init__()
        self.kind = kind
        self.linear = nn.Linear(h_dim, k, bias=False)
        with torch.no_grad():
            # the random draw happens either way, so init=pca consumes the generator like init=random
            # and the rest of training (x_T, shifts) sees the same stream
            start = torch.randn(k, h_dim, generator=generator) / math.sqrt(h_dim)
            self.linear.weight.copy_(start if initial is None else initial)
        if kind == "ortho":
            nn.utils.parametrizations.orthogonal(self.linear)

    def directions(self) -> torch.Tensor:
        weight = self.linear.weight
        return weight if self.kind == "ortho" else F.normalize(weight, dim=1)


def _discriminator(channels: int, size: int) -> nn.Module:
    from factorlens.networks import NETWORKS

    return NETWORKS.get("conv").discriminator(channels, size)


def hspace_loss_step(adapter: DiffusionAdapter, shift_module: ShiftModule, x_t: torch.Tensor,
                     k: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(unshifted, shifted) samples of ``x_t [B, C, R, R]`` for directions ``k`` and shifts ``eps`` (units
    of r); the shifted ones keep the graph to the shift module (through the whole DDIM chain)."""
    rows = shift_module.directions()
    delta = (rows * adapter.h_scales(rows)[:, None])[k] * eps[:, None]  # [B, h_dim]
    with torch.no_grad():
        original = adapter.model.sample(x_t, steps=adapter.ddim_steps)
    shifted = adapter.model.sample(x_t, steps=adapter.ddim_steps,
                                   shift=delta.reshape(len(k), *adapter.h_shape), t_edit=adapter.t_edit,
                                   checkpointed=adapter.checkpointed)
    return original, shifted


@direction_method("hspace", HspaceOptions, "Zhang et al. (2023): h-space shift module + reconstructor + "
                  "discriminator, trained through the DDIM chain (diffusion runs)")
def hspace(adapter: GeneratorAdapter, options: HspaceOptions | None = None, *, k: int | None = None,
           seed: int = 0, steps: int | None = None) -> DirectionSet:
    """Learned h-space directions (default K = 6, 200 steps)."""
    options = options or HspaceOptions()
    options.validate()
    diffusion = require_diffusion(adapter, "hspace")
    k = _check_k(6 if k is None else k, diffusion)
    steps = 200 if steps is None else steps
    diffusion.configure(ddim_steps=options.ddim_steps, t_edit=options.t_edit, base_source=options.base)
    diffusion.checkpointed = options.checkpoint
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    initial = (None if options.init == "random" else
               torch.from_numpy(principal_h_directions(diffusion, k, options.init_samples, seed)[0]).float())
    shift_module = ShiftModule(diffusion.h_dim, k, options.deformator, gen, initial=initial)
    size = diffusion.model.resolution
    reconstructor = Reconstructor.for_input(diffusion.model.channels, k, options.reconstructor_input)
    optimizer = torch.optim.Adam([{"params": shift_module.parameters(), "lr": options.shift_lr or options.lr},
                                  {"params": reconstructor.parameters()}], lr=options.lr)
    discriminator = _discriminator(diffusion.model.channels, size) if options.realism_weight > 0 else None
    disc_optimizer = (torch.optim.Adam(discriminator.parameters(), lr=options.disc_lr, betas=(0.5, 0.9))
                      if discriminator is not None else None)
    losses: list[float] = []
    hits = np.zeros(steps)  # correct direction guesses per step, for the accuracy by tenth of training
    from tqdm.auto import tqdm

    from factorlens.directions.progress import progress_enabled

    bar = tqdm(range(steps), desc="hspace", disable=not progress_enabled())
    with diffusion.frozen():
        for step in bar:
            x_t = diffusion.split(diffusion.sample_base(options.batch_size, gen))[0]
            kk, eps = draw_shifts(options.batch_size, k, options.shift_min, options.shift_max, gen)
            original, shifted = hspace_loss_step(diffusion, shift_module, x_t, kk, eps)
            pair = reconstructor_input(original, shifted, options.reconstructor_input)
            logits, eps_hat = reconstructor(pair)
            loss = reconstructor_loss(logits, eps_hat, kk, eps, options.shift_weight)
            # a delayed start lets the reconstructor learn to tell directions apart before realism
            # pulls the shifts back towards the unshifted sample (at t_edit >= 500 it never did
            # otherwise: docs/results.md, sixth session)
            if discriminator is not None and step >= options.realism_start:
                loss = loss + options.realism_weight * F.softplus(-discriminator(shifted).flatten()).mean()
            if not torch.isfinite(loss):
                raise TrainingError(f"non-finite hspace loss at step {step}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if discriminator is not None:
                d_loss = (F.softplus(-discriminator(original).flatten()).mean()
                          + F.softplus(discriminator(shifted.detach()).flatten()).mean())
                disc_optimizer.zero_grad(set_to_none=True)
                d_loss.backward()
                disc_optimizer.step()
            losses.append(float(loss.detach()))
            hits[step] = int((logits.argmax(1) == kk).sum())
            if step % 25 == 24:  # a run takes an hour on CPU: show whether the reconstructor is learning
                recent = hits[max(0, step - 99): step + 1]
                bar.set_postfix(accuracy_last_100=f"{recent.sum() / (len(recent) * options.batch_size):.2f}",
                                refresh=False)
    rows = shift_module.directions().detach().double().numpy()
    matrix = diffusion.embed_directions(rows)
    tail = max(1, steps // 10)
    return DirectionSet(
        matrix=matrix, scales=diffusion.direction_scales(matrix), method="hspace",
        params={"deformator": options.deformator, "steps": steps, "batch_size": options.batch_size,
                "shift_max": options.shift_max, "shift_min": options.shift_min, "lr": options.lr,
                "shift_lr": options.shift_lr or options.lr,
                "shift_weight": options.shift_weight, "realism_weight": options.realism_weight,
                "realism_start": options.realism_start, "ddim_steps": options.ddim_steps,
                "t_edit": options.t_edit, "checkpoint": options.checkpoint,
                "base_source": diffusion.base_source, "h_shape": list(diffusion.h_shape),
                "init": options.init, "init_samples": options.init_samples,
                "reconstructor_input": options.reconstructor_input},
        seed=seed,
        extras={"train_accuracy_last_10pct": float(hits[-tail:].sum() / (tail * options.batch_size)),
                "train_accuracy_by_tenth": [float(part.sum() / (len(part) * options.batch_size))
                                            for part in np.array_split(hits, min(10, steps))],
                "final_loss": float(np.mean(losses[-tail:]))},
    )


# ------------------------------------------------------------------------------------------ hspace-pca


def principal_h_directions(diffusion: DiffusionAdapter, k: int, num_samples: int,
                           seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` principal directions of h (rows ``[k, h_dim]``, float64, unit norm) over ``num_samples``
    DDIM trajectories at the adapter's configured steps (t >= t_edit), and their explained variance
    ratios ``[k]``. Used by ``hspace-pca`` and by ``hspace`` with ``init=pca``."""
    h = diffusion.collect_h(num_samples, seed=seed).reshape(-1, diffusion.h_dim).double()
    if k > min(h.shape):
        raise ConfigError(f"k={k} exceeds the {min(h.shape)} h samples of the principal directions; "
                          "raise num_samples (init_samples for hspace)")
    _, singular, vt = torch.linalg.svd(h - h.mean(dim=0), full_matrices=False)
    return vt[:k].numpy(), (singular**2 / (singular**2).sum())[:k].numpy()


@dataclass(frozen=True)
class HspacePcaOptions:
    num_samples: int = option(64, integer(2), "sampled trajectories whose h (every kept step) is analysed")
    ddim_steps: int = option(DEFAULT_DDIM_STEPS, integer(1), "DDIM steps of sampling and decoding")
    t_edit: int = option(0, integer(0), "use (and later shift) h at steps with t >= t_edit")
    base: str = option("prior", choice("prior", "posterior"), "base codes of scoring and figures")


@direction_method("hspace-pca", HspacePcaOptions, "Haas et al. (2023): principal directions of h over "
                  "sampled DDIM trajectories (diffusion runs)")
def hspace_pca(adapter: GeneratorAdapter, options: HspacePcaOptions | None = None, *, k: int | None = None,
               seed: int = 0, steps: int | None = None) -> DirectionSet:
    """Closed form: the top-K right singular vectors of the centred h samples (default K = 6)."""
    options = options or HspacePcaOptions()
    diffusion = require_diffusion(adapter, "hspace-pca")
    k = _check_k(6 if k is None else k, diffusion)
    diffusion.configure(ddim_steps=options.ddim_steps, t_edit=options.t_edit, base_source=options.base)
    rows, explained = principal_h_directions(diffusion, k, options.num_samples, seed)
    matrix = diffusion.embed_directions(rows)
    return DirectionSet(
        matrix=matrix, scales=diffusion.direction_scales(matrix), method="hspace-pca",
        params={"num_samples": options.num_samples, "ddim_steps": options.ddim_steps,
                "t_edit": options.t_edit, "base_source": diffusion.base_source,
                "h_shape": list(diffusion.h_shape)},
        seed=seed, extras={"explained_variance_ratio": [float(v) for v in explained]},
    )


# -------------------------------------------------------------------------------------- run figures


def save_direction_traversals(run, out: str | Path, *, seed: int = 0) -> list[Path]:
    """``factorlens traverse`` on a diffusion run: one traversal grid per direction set found in
    ``RUN/directions/<method>/`` (rows: directions, columns: -3..3 units of r of one base x_T), decoded
    with the DDIM steps and t_edit the set was discovered with. Writes ``out/traversal_<method>.png``."""
    from factorlens.directions.figures import save_traversal_grid

    sets = sorted(p.parent for p in (Path(run.path) / "directions").glob("*/directions.json"))
    if not sets:
        raise ConfigError(f"{run.path} is a diffusion run: it is traversed along discovered h-space "
                          f"directions, and it has none; run `factorlens discover {run.path} --method "
                          "hspace-pca` (or hspace) first")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for folder in sets:
        directions = DirectionSet.load(folder)
        adapter = DiffusionAdapter(run.model, ddim_steps=int(directions.params.get("ddim_steps",
                                                                                    DEFAULT_DDIM_STEPS)),
                                   t_edit=int(directions.params.get("t_edit", 0)), seed=seed)
        if directions.latent_dim != adapter.latent_dim:
            raise ConfigError(f"{folder}: directions of a {directions.latent_dim}-d code space, the run's "
                              f"is {adapter.latent_dim}-d")
        path = out / f"traversal_{folder.name}.png"
        save_traversal_grid(adapter, directions, path, seed=seed)
        written.append(path)
    return written
