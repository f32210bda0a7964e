"""``diffae``: a diffusion autoencoder (Preechakul et al. 2022), the generator DiffEx explains through.

A semantic encoder ``Enc: images [B, C, S, S] in [0, 1] -> z_sem [B, semantic_dim]`` (the ``conv`` family's
encoder) conditions the ε-prediction U-Net of :mod:`factorlens.models.ddpm`: ``semantic_proj(z_sem)`` is
added to the U-Net's timestep embedding, which every residual block reads (a forward hook on MONAI's
``time_embed``; Preechakul et al. modulate the GroupNorm of each block with z_sem, which this reaches
through the blocks' own embedding projections). Both are trained by the diffusion loss alone,
``mean((ε̂(x_t, t, Enc(x_0)) - ε)²)``: whatever in x_0 helps to denoise is put into z_sem.

``semantic_proj`` starts at zero, so a new model denoises exactly as its U-Net does unconditionally: a run
can start from a trained ``ddpm`` run's U-Net (``model.init_unet: RUN``; loaded once, when the run is
created) and only learn the conditioning.

The :class:`~factorlens.models.base.LatentModel` view is the semantic code: ``latent_dim = semantic_dim``,
``encode(x) = (Enc(x), 0)`` (a point, not a posterior), ``decode(z)`` = DDIM (η = 0, ``sample_steps``) from
**one fixed x_T** (``decode_seed``) conditioned on z. So decode is a deterministic function of z_sem alone
and every image decoded from a code shares the same stochastic detail; DiffEx instead keeps each image's
DDIM-inverted x_T (``invert`` does that inversion, conditioned on the image's own code), which
reproduces the image more closely but makes the code image-specific. Directions, traversals and
``explain`` work in z_sem through the generic :class:`~factorlens.directions.GeneratorAdapter`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from factorlens.errors import CheckpointError, ConfigError
from factorlens.models.base import StepOutput
from factorlens.models.ddpm import DDPM, DDPMConfig, build_denoiser
from factorlens.schema import integer, option, text


@dataclass(frozen=True)
class DiffAEConfig(DDPMConfig):
    semantic_dim: int = option(32, integer(1), "size of the semantic code z_sem")
    decode_seed: int = option(0, integer(0), "seed of the one x_T every decode(z_sem) starts from")
    init_unet: str = option("", text, "a ddpm run directory whose U-Net (EMA weights when it kept them) "
                                      "starts a new run ('' = random initialisation)")


class DiffAE(DDPM):
    """``self.semantic_encoder``: images -> z_sem; ``self.unet``: ``(x_t, t)`` -> ε̂, conditioned on the
    z_sem set by :meth:`conditioned`."""

    is_diffusion = False  # a LatentModel over z_sem: the generic adapter, not the h-space one
    has_encoder = True

    def __init__(self, config: DiffAEConfig, *, unet: nn.Module, encoder: nn.Module, channels: int,
                 image_size: int, resolution: int) -> None:
        super().__init__(config, unet=unet, channels=channels, image_size=image_size, resolution=resolution)
        self.semantic_encoder = encoder
        embedding = unet.time_embed[-1].out_features
        self.semantic_proj = nn.Linear(config.semantic_dim, embedding)
        nn.init.zeros_(self.semantic_proj.weight)
        nn.init.zeros_(self.semantic_proj.bias)
        self.latent_dim = config.semantic_dim
        self._condition: torch.Tensor | None = None
        self.unet.time_embed.register_forward_hook(self._add_condition)
        noise = torch.randn(self.noise_shape(1), generator=torch.Generator().manual_seed(config.decode_seed))
        self.register_buffer("decode_noise", noise, persistent=False)

    # -- conditioning --
    def _add_condition(self, _module: nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
        if self._condition is None:
            return output
        if self._condition.shape[0] != output.shape[0]:
            raise ValueError(f"semantic code batch {self._condition.shape[0]} != U-Net batch "
                             f"{output.shape[0]}")
        return output + self.semantic_proj(self._condition).to(output.dtype)

    @contextmanager
    def conditioned(self, z_sem: torch.Tensor) -> Iterator[None]:
        """Every U-Net call inside is conditioned on ``z_sem [B, semantic_dim]`` (B = the U-Net's batch)."""
        previous, self._condition = self._condition, z_sem
        try:
            yield
        finally:
            self._condition = previous

    def semantic_code(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] at the data's size ``[B, C, S, S]`` -> z_sem ``[B, semantic_dim]``."""
        return self.semantic_encoder(x)

    # -- training --
    def compute_loss(self, x: torch.Tensor, *, dataset_size: int) -> StepOutput:
        with self.conditioned(self.semantic_code(x)):
            return super().compute_loss(x, dataset_size=dataset_size)

    def on_fresh_run(self) -> None:
        """Start from ``model.init_unet``'s U-Net (called by the trainer once, for a new run only)."""
        source = self.config.init_unet
        if not source:
            return
        from factorlens.training import load_run

        try:
            run = load_run(source)
        except (CheckpointError, ConfigError) as exc:
            raise ConfigError(f"model.init_unet {source}: {exc}") from None
        if run.model_name != "ddpm":
            raise ConfigError(f"model.init_unet {source} is a {run.model_name!r} run; it must be a ddpm run")
        if run.model.config.prediction != self.config.prediction:
            raise ConfigError(f"model.init_unet {source} predicts {run.model.config.prediction!r}, this "
                              f"model model.prediction {self.config.prediction!r}; set them equal")
        try:
            self.unet.load_state_dict(run.model.unet.state_dict())
        except RuntimeError as exc:
            raise ConfigError(f"model.init_unet {source}: its U-Net does not match model.unet_channels / "
                              f"attention_levels / resolution ({str(exc).splitlines()[0]})") from None

    # -- the LatentModel view --
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.semantic_code(x)
        return z, torch.zeros_like(z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z_sem ``[B, semantic_dim]`` -> images in [0, 1] ``[B, C, R, R]`` (DDIM from the fixed x_T)."""
        with self.conditioned(z):
            return self.sample(self.decode_noise.expand(z.shape[0], -1, -1, -1))

    def invert(self, images: torch.Tensor, *, steps: int | None = None) -> torch.Tensor:
        """DDIM inversion conditioned on each image's own z_sem: images -> x_T ``[B, C, R, R]``."""
        with self.conditioned(self.semantic_code(images)):
            return super().invert(images, steps=steps)

    def first_decoder_layer_weight(self) -> torch.Tensor:
        raise NotImplementedError  # no latent-reading linear layer: SeFa does not apply


def build_diffae(config: DiffAEConfig, networks: Any) -> DiffAE:
    """The ``MODELS`` factory: the ``unet`` family's denoiser plus the ``conv`` family's encoder."""
    from factorlens.networks import network_family

    unet, resolution = build_denoiser(config, networks, "diffae")
    encoder = network_family("conv").encoder(networks.channels, config.semantic_dim, networks.image_size)
    return DiffAE(config, unet=unet, encoder=encoder, channels=networks.channels,
                  image_size=networks.image_size, resolution=resolution)
