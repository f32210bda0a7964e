"""DDPM noise schedules and deterministic DDIM sampling / inversion for ε-prediction U-Nets.

The β schedules are MONAI's (``monai.networks.schedulers``: ``linear_beta`` from 1e-4 to 0.02, or
Nichol & Dhariwal's ``cosine``); the DDIM step is written out here (Song et al. 2021, Eq. 12 with η = 0;
x̂₀ optionally clamped to [-1, 1] like MONAI's ``clip_sample``, never in inversion) so that one step is
one plain function of tensors, which per-step gradient checkpointing and the h-space hook need.
``tests/test_ddpm.py`` checks that a whole chain of these steps equals MONAI's ``DDIMScheduler.step`` on
the same timesteps, with and without clipping.

Timesteps ("leading" spacing, as MONAI's ``prev_timestep``): with ``n`` steps out of ``T`` the chain
visits ``t_k = k * (T // n)`` for ``k = n-1 .. 0``; a step goes from ``t`` to ``t - T // n`` and the last
one to ᾱ = 1 (the clean image). Inversion runs the same formula the other way:
``x_{t'} = √ᾱ_{t'} x̂₀ + √(1 − ᾱ_{t'}) ε̂(x_t, t)`` for ``t < t'``, with ε̂ taken at the current
(smaller) timestep.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.checkpoint import checkpoint

from factorlens.errors import ConfigError

SCHEDULES = {"linear": "linear_beta", "cosine": "cosine"}

# eps_fn(x_t, t_batch, step_index) -> ε̂; step_index counts the DDIM steps of one chain from 0.
EpsFn = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]


def alphas_cumprod(schedule: str, timesteps: int) -> torch.Tensor:
    """ᾱ_t for t = 0..T-1 (float32), from MONAI's noise schedules."""
    from factorlens.networks.unet import require_monai

    require_monai()
    from monai.networks.schedulers import DDIMScheduler

    if schedule not in SCHEDULES:
        raise ConfigError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    return DDIMScheduler(num_train_timesteps=timesteps, schedule=SCHEDULES[schedule],
                         clip_sample=False).alphas_cumprod.to(torch.float32).clone()


def ddim_timesteps(num_train: int, steps: int) -> list[int]:
    """The timesteps a DDIM chain of ``steps`` visits, largest first (see the module docstring)."""
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= num_train:
        raise ConfigError(f"DDIM steps must be an integer in [1, {num_train}], got {steps!r}")
    ratio = num_train // steps
    return [k * ratio for k in range(steps - 1, -1, -1)]


def ddim_step(x: torch.Tensor, eps: torch.Tensor, alpha_t: torch.Tensor,
              alpha_next: torch.Tensor, *, clip: bool = False) -> torch.Tensor:
    """One deterministic DDIM update from ᾱ = ``alpha_t`` to ᾱ = ``alpha_next`` (either direction);
    ``clip``: clamp x̂₀ to [-1, 1] first (ε̂ kept as predicted, as MONAI's ``clip_sample``)."""
    x0 = (x - (1.0 - alpha_t).sqrt() * eps) / alpha_t.sqrt()
    if clip:
        x0 = x0.clamp(-1.0, 1.0)
    return alpha_next.sqrt() * x0 + (1.0 - alpha_next).sqrt() * eps


def _alpha(acp: torch.Tensor, t: int) -> torch.Tensor:
    return acp[t] if t >= 0 else torch.ones((), dtype=acp.dtype)


def ddim_sample(eps_fn: EpsFn, x_t: torch.Tensor, acp: torch.Tensor, steps: int, *,
                checkpointed: bool = False, clip: bool = False) -> torch.Tensor:
    """x_T -> x_0 by ``steps`` deterministic DDIM steps (η = 0). ``checkpointed``: each step under
    ``torch.utils.checkpoint`` (activations recomputed in backward; same gradients, less memory);
    ``clip``: x̂₀ clamped to [-1, 1] in every step."""
    num_train = acp.shape[0]
    ratio = num_train // steps
    acp = acp.to(x_t.device)
    x = x_t
    for index, t in enumerate(ddim_timesteps(num_train, steps)):
        def one(x_in: torch.Tensor, t: int = t, index: int = index) -> torch.Tensor:
            tb = torch.full((x_in.shape[0],), t, device=x_in.device, dtype=torch.long)
            eps = eps_fn(x_in, tb, index).to(x_in.dtype)
            return ddim_step(x_in, eps, _alpha(acp, t), _alpha(acp, t - ratio), clip=clip)

        x = checkpoint(one, x, use_reentrant=False) if checkpointed else one(x)
    return x


def ddim_invert(eps_fn: EpsFn, x_0: torch.Tensor, acp: torch.Tensor, steps: int) -> torch.Tensor:
    """x_0 -> x_T: the DDIM chain of :func:`ddim_sample` run backwards (ε̂ at the smaller timestep)."""
    num_train = acp.shape[0]
    acp = acp.to(x_0.device)
    order = ddim_timesteps(num_train, steps)[::-1]  # 0, r, 2r, ...
    x = x_0
    current = -1  # the clean image (ᾱ = 1); its ε̂ is read at t = 0
    for index, t in enumerate(order):
        tb = torch.full((x.shape[0],), max(current, 0), device=x.device, dtype=torch.long)
        eps = eps_fn(x, tb, steps - 1 - index).to(x.dtype)
        x = ddim_step(x, eps, _alpha(acp, current), _alpha(acp, t))
        current = t
    return x


def add_noise(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, acp: torch.Tensor) -> torch.Tensor:
    """q(x_t | x_0): √ᾱ_t x_0 + √(1 − ᾱ_t) ε, with ``t`` a ``[B]`` long tensor."""
    a = acp.to(x0.device)[t].view(-1, *([1] * (x0.dim() - 1))).to(x0.dtype)
    return a.sqrt() * x0 + (1.0 - a).sqrt() * noise
