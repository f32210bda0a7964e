"""Pieces shared by the network families: activations, norms, the stride-2 stage count, and two
operations on trained layers (the SeFa weight view, logits without a parameter gradient)."""

from __future__ import annotations

import math

import torch
from torch import nn

from factorlens.errors import ConfigError

SIZES = (32, 64, 128)  # image sizes every family supports (one stride-2 stage per doubling)


def check_image_size(image_size: int) -> int:
    """``image_size`` if the networks support it, else a one-line ConfigError."""
    if image_size not in SIZES:
        raise ConfigError(f"image size {image_size} px is not supported; the networks take "
                          f"{', '.join(map(str, SIZES))} px")
    return image_size


def stride2_stages(image_size: int, *, down_to: int = 4) -> int:
    """How many stride-2 stages take ``image_size`` to ``down_to`` (4 at 64 px down to 4x4)."""
    return int(math.log2(check_image_size(image_size) // down_to))


def act(leaky: bool, *, inplace: bool = True) -> nn.Module:
    return nn.LeakyReLU(0.2, inplace=inplace) if leaky else nn.ReLU(inplace=inplace)


def norm(channels: int, use_bn: bool) -> nn.Module:
    return nn.BatchNorm2d(channels) if use_bn else nn.Identity()


def transposed_conv_weight_as_matrix(layer: nn.ConvTranspose2d) -> torch.Tensor:
    """``[out_features, d]`` view (not a copy) of a latent -> feature transposed conv's weight.

    The layer maps ``z[:, :, None, None]`` (1x1 input) with weight ``W [d, C_out, k, k]``; its output
    feature ``(c, u, v)`` is ``sum_k z_k W[k, c, u, v]`` plus the bias, so ``W.flatten(1).t()`` maps z to
    the output flattened in ``(c, u, v)`` order. A view shares storage with the parameter, which is how
    the PCA direction method finds the module that owns it.
    """
    return layer.weight.flatten(1).t()


def logits_without_parameter_grad(module: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """``module(images)`` computed with detached copies of the module's parameters.

    Gradients flow into ``images`` (the generator) but never into the module's parameters: the
    generator loss of a GAN-style objective must not move the discriminator. Buffers (BN running
    statistics) are passed as copies: in train mode BatchNorm still normalises with the batch's
    statistics, but the generator step does not write a second batch of fakes into the discriminator's
    running averages (which its eval-mode use, e.g. a realism score, relies on).
    """
    params = {name: p.detach() for name, p in module.named_parameters()}
    buffers = {name: b.clone() for name, b in module.named_buffers()}
    return torch.func.functional_call(module, (params, buffers), (images,))
