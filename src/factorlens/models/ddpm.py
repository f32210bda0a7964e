"""``ddpm``: a denoising diffusion model (Ho et al. 2020) with a U-Net (``unet`` network: MONAI's
``DiffusionModelUNet``) predicting ε or v, trained by the one Trainer, sampled and inverted with DDIM.

Objective: images in [0, 1] are mapped to [-1, 1] (and, when ``model.resolution`` is smaller than the
dataset's image size, area-averaged down to it inside ``compute_loss``); t ~ U{0..T-1}, ε ~ N(0, I),
x_t = √ᾱ_t x + √(1-ᾱ_t) ε; ``loss = mean((unet(x_t, t) - target)²)`` with target ε
(``model.prediction: epsilon``) or v = √ᾱ_t ε - √(1-ᾱ_t) x (``v``, Salimans & Ho 2022); the MSE per
element is logged as ``mse``. Sampling, inversion and h-space hooks see ε̂ either way (:meth:`DDPM.to_eps`).

The :class:`~factorlens.models.base.LatentModel` view of a diffusion model: the latent code is the
initial noise ``x_T`` flattened (``latent_dim = C·R·R`` at resolution R); ``decode(z)`` runs the
deterministic DDIM chain (``model.sample_steps`` steps, η = 0) from it and returns images in [0, 1];
``encode(x)`` is DDIM inversion (mean = the inverted x_T, logvar = zeros: a point, not a posterior).
Interpretable directions live in h-space (``factorlens.directions.diffusion``), not in this code.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from factorlens.errors import ConfigError
from factorlens.models.base import LatentModel, StepOutput
from factorlens.models.diffusion import EpsFn, add_noise, alphas_cumprod, ddim_invert, ddim_sample
from factorlens.schema import boolean, choice, integer, number, option


def _int_list(minimum: int = 1) -> Callable[[Any, str], list[int]]:
    def check(value: Any, where: str) -> list[int]:
        if (not isinstance(value, (list, tuple)) or not value
                or any(isinstance(v, bool) or not isinstance(v, int) or v < minimum for v in value)):
            raise ConfigError(f"{where} must be a non-empty list of integers >= {minimum}, got {value!r}")
        return list(value)

    return check


def _bool_list(value: Any, where: str) -> list[bool]:
    if not isinstance(value, (list, tuple)) or not value or any(not isinstance(v, bool) for v in value):
        raise ConfigError(f"{where} must be a non-empty list of true/false, got {value!r}")
    return list(value)


@dataclass(frozen=True)
class DDPMConfig:
    resolution: int = option(0, integer(0), "image size the U-Net works at; 0 = the dataset's; smaller: "
                                            "batches are area-averaged down to it in compute_loss")
    unet_channels: list = option([32, 64, 64], _int_list(1), "U-Net channels per level (MONAI channels)")
    num_res_blocks: int = option(1, integer(1), "residual blocks per U-Net level")
    attention_levels: list = option([False, False, True], _bool_list,
                                    "self-attention per level (same length as unet_channels)")
    norm_num_groups: int = option(32, integer(1), "GroupNorm groups (must divide every channel count)")
    num_head_channels: int = option(32, integer(1), "channels per attention head")
    resblock_updown: bool = option(False, boolean, "residual blocks for up/downsampling (MONAI)")
    norm_eps: float = option(1e-6, number(positive=True), "GroupNorm epsilon")
    include_fc: bool = option(True, boolean, "attention output projection (MONAI include_fc)")
    schedule: str = option("linear", choice("linear", "cosine"),
                           "β schedule: linear 1e-4..0.02 (Ho et al.) or cosine (Nichol & Dhariwal)")
    timesteps: int = option(1000, integer(2), "diffusion timesteps T")
    sample_steps: int = option(50, integer(1), "DDIM steps of decode/encode (sampling, inversion)")
    clip_sample: bool = option(True, boolean, "clamp x̂₀ to [-1, 1] in each DDIM sampling step (MONAI's and "
                                              "diffusers' default); inversion never clips")
    prediction: str = option("epsilon", choice("epsilon", "v"),
                             "what the U-Net predicts: epsilon (Ho et al.) or v = √ᾱ ε - √(1-ᾱ) x₀ "
                             "(Salimans & Ho); sampling converts v to ε̂")

    def unet_args(self) -> dict[str, Any]:
        """The ``DiffusionModelUNet`` constructor arguments (besides spatial_dims and channels in/out)."""
        if len(self.attention_levels) != len(self.unet_channels):
            raise ConfigError(f"model.attention_levels has {len(self.attention_levels)} entries, "
                              f"model.unet_channels {len(self.unet_channels)}; they must match")
        bad = [c for c in self.unet_channels if c % self.norm_num_groups]
        if bad:
            raise ConfigError(f"model.norm_num_groups {self.norm_num_groups} must divide every "
                              f"model.unet_channels entry, not {bad[0]}")
        return {"channels": list(self.unet_channels), "num_res_blocks": self.num_res_blocks,
                "attention_levels": list(self.attention_levels), "norm_num_groups": self.norm_num_groups,
                "num_head_channels": self.num_head_channels, "resblock_updown": self.resblock_updown,
                "norm_eps": self.norm_eps, "include_fc": self.include_fc}


class DDPM(LatentModel):
    """``self.unet``: ``(x_t, t) -> ε̂``; images in [0, 1] outside, [-1, 1] inside."""

    is_diffusion = True  # direction discovery wraps it in factorlens.directions.hspace.DiffusionAdapter
    # encode() (DDIM inversion) works, but there is no posterior: no KL/MI figures, no Table-1 codes and no
    # per-dimension latent traversal over x_T pixels (report shows samples and the h-space directions).
    has_encoder = False
    # Trained in NCHW: in channels_last the U-Net's bf16 training step measured 1.5x slower (GroupNorm and
    # attention reorder their inputs), fp32 the same (docs/performance.md, issue 20).
    channels_last = False

    def __init__(self, config: DDPMConfig, *, unet: nn.Module, channels: int, image_size: int,
                 resolution: int) -> None:
        super().__init__()
        if resolution > image_size or image_size % resolution:
            raise ConfigError(f"model.resolution {resolution} px must divide the data's {image_size} px "
                              "(batches are area-averaged down, never up)")
        self.config = config
        self.unet = unet
        self.channels = channels
        self.image_size = image_size
        self.resolution = resolution
        self.latent_dim = channels * resolution * resolution
        self.register_buffer("alphas_cumprod", alphas_cumprod(config.schedule, config.timesteps),
                             persistent=False)

    # -- training --
    def to_model_space(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] at the data's size -> [-1, 1] at ``resolution`` (area averaging)."""
        if x.shape[-1] != self.resolution:
            x = F.interpolate(x, size=(self.resolution, self.resolution), mode="area")
        return x * 2.0 - 1.0

    def compute_loss(self, x: torch.Tensor, *, dataset_size: int) -> StepOutput:
        x0 = self.to_model_space(x)
        t = torch.randint(0, self.config.timesteps, (x0.shape[0],), device=x0.device)
        noise = torch.randn_like(x0)
        output = self.unet(add_noise(x0, noise, t, self.alphas_cumprod), t)
        if self.config.prediction == "v":
            # v = √ᾱ ε - √(1-ᾱ) x₀: at high t the target is -x₀ itself, so the loss weighs the image's
            # colour and layout there, which an ε target (≈ x_t) leaves almost unweighted (docs/models.md).
            a = self.alphas_cumprod[t].view(-1, 1, 1, 1)
            target = a.sqrt() * noise - (1.0 - a).sqrt() * x0
        else:
            target = noise
        mse = F.mse_loss(output.float(), target.float())
        return StepOutput(loss=mse, terms={"loss": mse.detach(), "mse": mse.detach()})

    # -- sampling --
    def eps_fn(self, shift: torch.Tensor | None = None, *, t_edit: int = 0,
               capture: list[torch.Tensor] | None = None) -> EpsFn:
        """ε̂ as a function ``(x_t, t, step) -> ε̂``. ``shift`` ``[B, *h]`` is added to the middle block's
        output (h-space) at every step with ``t >= t_edit``; ``capture`` collects h (before the shift)."""

        def eps(x: torch.Tensor, t: torch.Tensor, step: int) -> torch.Tensor:
            with self.h_hook(shift if shift is not None and int(t[0]) >= t_edit else None, capture):
                output = self.unet(x, t)
            return self.to_eps(output, x, t)

        return eps

    def to_eps(self, output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The U-Net's ``output`` at ``x_t`` (both ``[B, C, R, R]``), timesteps ``t [B]`` -> ε̂:
        itself for ``epsilon``; ``√ᾱ v̂ + √(1-ᾱ) x_t`` for ``v`` (the identity of Salimans & Ho)."""
        if self.config.prediction != "v":
            return output
        a = self.alphas_cumprod.to(x_t.device)[t].view(-1, 1, 1, 1).to(output.dtype)
        return a.sqrt() * output + (1.0 - a).sqrt() * x_t

    @contextmanager
    def h_hook(self, shift: torch.Tensor | None, capture: list[torch.Tensor] | None = None):
        """A forward hook on ``unet.middle_block`` adding ``shift`` (and/or recording h) while active."""
        if shift is None and capture is None:
            yield
            return

        def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
            if capture is not None:
                capture.append(output.detach())
            return output if shift is None else output + shift.to(output.dtype)

        handle = self.unet.middle_block.register_forward_hook(hook)
        try:
            yield
        finally:
            handle.remove()

    def noise_shape(self, n: int) -> tuple[int, int, int, int]:
        return (n, self.channels, self.resolution, self.resolution)

    def sample(self, x_T: torch.Tensor, *, steps: int | None = None, shift: torch.Tensor | None = None,
               t_edit: int = 0, checkpointed: bool = False, clip: bool | None = None) -> torch.Tensor:
        """DDIM (η = 0) from ``x_T [B, C, R, R]``; images in [0, 1] ``[B, C, R, R]`` (clamped).
        ``clip``: clamp x̂₀ in every step (default ``model.clip_sample``; reconstructing an inversion
        needs ``clip=False``, the inverse of the unclipped inversion)."""
        steps = self.config.sample_steps if steps is None else steps
        clip = self.config.clip_sample if clip is None else clip
        x0 = ddim_sample(self.eps_fn(shift, t_edit=t_edit), x_T, self.alphas_cumprod, steps,
                         checkpointed=checkpointed, clip=clip)
        return ((x0.clamp(-1.0, 1.0) + 1.0) * 0.5)

    def invert(self, images: torch.Tensor, *, steps: int | None = None) -> torch.Tensor:
        """DDIM inversion: images in [0, 1] (data size) -> x_T ``[B, C, R, R]``."""
        steps = self.config.sample_steps if steps is None else steps
        return ddim_invert(self.eps_fn(), self.to_model_space(images), self.alphas_cumprod, steps)

    # -- the LatentModel view --
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.invert(x).flatten(1)
        return z, torch.zeros_like(z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.sample(z.reshape(self.noise_shape(z.shape[0])))

    def first_decoder_layer_weight(self) -> torch.Tensor:
        raise ConfigError("model 'ddpm' has no latent-reading first layer (SeFa does not apply); "
                          "use --method hspace, hspace-pca or random")


def build_denoiser(config: DDPMConfig, networks: Any, model_name: str) -> tuple[nn.Module, int]:
    """``(unet, resolution)``: the network family's denoiser at ``config.resolution`` (0 = data size)."""
    family = networks.family()
    if family.denoiser is None:
        raise ConfigError(f"model {model_name!r} needs a denoiser network (unet), "
                          f"not {networks.family_name!r}")
    resolution = config.resolution or networks.image_size
    return family.denoiser(networks.channels, resolution, **config.unet_args()), resolution


def build_ddpm(config: DDPMConfig, networks: Any) -> DDPM:
    """The ``MODELS`` factory: a ``unet`` family denoiser at ``config.resolution`` (0 = data size)."""
    unet, resolution = build_denoiser(config, networks, "ddpm")
    return DDPM(config, unet=unet, channels=networks.channels, image_size=networks.image_size,
                resolution=resolution)


@torch.no_grad()
def generate(model: DDPM, n: int, *, steps: int | None = None, seed: int = 0,
             batch_size: int = 64) -> torch.Tensor:
    """``n`` DDIM samples ``float32 [n, C, R, R]`` in [0, 1] from ``x_T ~ N(0, I)`` drawn with a
    generator seeded by ``seed`` (the same seed gives the same images)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"number of samples must be a positive integer, got {n!r}")
    noise = torch.randn(model.noise_shape(n), generator=torch.Generator().manual_seed(seed))
    return torch.cat([model.sample(noise[i:i + batch_size], steps=steps) for i in range(0, n, batch_size)])
