"""The ``unet`` network family: MONAI's ``DiffusionModelUNet`` (2-D) as an ε-prediction denoiser.

``denoiser(channels, image_size, **args)`` builds ``DiffusionModelUNet(spatial_dims=2, in_channels=C,
out_channels=C, **args)``; ``forward(x_t [B, C, S, S], t [B] long) -> ε̂ [B, C, S, S]``. Its h-space is
the output of ``middle_block`` (``h_shape`` gives its shape for an image size). The family builds no
encoder, decoder or discriminator: VAE/GAN objectives cannot take it (a one-line ConfigError).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from factorlens.errors import ConfigError
from factorlens.networks.common import check_image_size

# The constructor arguments factorlens passes through (``import-unet`` reads the same keys from JSON).
UNET_ARGS = ("channels", "num_res_blocks", "attention_levels", "norm_num_groups", "num_head_channels",
             "resblock_updown", "norm_eps", "include_fc", "use_combined_linear", "upcast_attention",
             "dropout_cattn", "transformer_num_layers")


def require_monai():
    """The ``monai`` package, or a one-line ConfigError naming the extra that installs it."""
    try:
        import einops  # noqa: F401 - MONAI's attention blocks import it lazily, at build time
        import monai
    except ImportError:
        raise ConfigError("diffusion models need MONAI and einops: "
                          "pip install 'factorlens[diffusion]'") from None
    return monai


def check_unet_size(image_size: int, levels: int) -> int:
    """``image_size`` when it is one of the supported sizes and divisible by the U-Net's
    ``2 ** (levels - 1)`` downsamplings, else a one-line ConfigError."""
    check_image_size(image_size)
    factor = 2 ** (levels - 1)
    if image_size % factor or image_size // factor < 2:
        raise ConfigError(f"image size {image_size} px does not fit a U-Net with {levels} levels "
                          f"(needs a multiple of {factor}, at least {2 * factor} px)")
    return image_size


def build_unet(image_channels: int, image_size: int, /, **args: Any) -> nn.Module:
    """A MONAI ``DiffusionModelUNet`` for ``[B, image_channels, image_size, image_size]`` images."""
    require_monai()
    from monai.networks.nets import DiffusionModelUNet

    unknown = sorted(set(args) - set(UNET_ARGS))
    if unknown:
        raise ConfigError(f"unknown U-Net argument(s) {', '.join(unknown)}; allowed: {', '.join(UNET_ARGS)}")
    levels = len(args.get("channels", (32, 64, 64, 64)))
    check_unet_size(image_size, levels)
    try:
        return DiffusionModelUNet(spatial_dims=2, in_channels=image_channels, out_channels=image_channels,
                                  **{k: (tuple(v) if isinstance(v, list) else v) for k, v in args.items()})
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"U-Net arguments rejected by MONAI: {str(exc).splitlines()[0]}") from None


@torch.no_grad()
def h_shape(unet: nn.Module, channels: int, image_size: int) -> tuple[int, int, int]:
    """``(C_h, H_h, W_h)``: the shape of the U-Net's middle-block output (h-space) for one image."""
    found: list[tuple[int, ...]] = []
    handle = unet.middle_block.register_forward_hook(lambda m, i, o: found.append(tuple(o.shape[1:])))
    try:
        unet(torch.zeros(1, channels, image_size, image_size), torch.zeros(1, dtype=torch.long))
    finally:
        handle.remove()
    return found[0]  # type: ignore[return-value]


def _no(what: str):
    def refuse(*_args: Any, **_kwargs: Any) -> nn.Module:
        raise ConfigError(f"network 'unet' builds diffusion denoisers only, no {what}; "
                          "use model ddpm with it (or another network for this model)")

    return refuse


encoder = _no("encoder")
decoder = _no("decoder")
discriminator = _no("discriminator")
