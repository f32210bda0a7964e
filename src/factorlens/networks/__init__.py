"""Networks apart from objectives: the ``NETWORKS`` registry.

A network family gives the bodies an objective needs, for any image size in ``SIZES`` and any channel
count:

- ``encoder(channels, out, image_size) -> [B, C, S, S] -> [B, out]`` (``out = 2d`` for a VAE encoder);
- ``decoder(latent_dim, channels, image_size) -> [B, d] -> logits [B, C, S, S]``, whose latent-reading
  layer is the attribute ``first`` (a 1x1-input ``ConvTranspose2d``, read by SeFa and the orthogonality
  options);
- ``discriminator(channels, image_size) -> [B, C, S, S] -> [B, 1]`` logits.

Families: ``conv`` (Chen et al.'s conv net, ``conv.py``), ``resnet`` (Sarhan et al.'s bottleneck-residual
nets, ``resnet.py``), ``dcgan`` (Radford et al., ``dcgan.py``),
``unet`` (MONAI's ``DiffusionModelUNet``, ``unet.py``: ``denoiser(channels, size, **args)`` only).
A new family is one file plus one ``NETWORKS.register`` line here. At 64 px every family except unet
is exactly v1's architecture (same layers, same parameter creation order, hence the same initial weights
for a seed); each halving or doubling of the image size removes or adds one stride-2 stage
(``docs/models.md``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from factorlens.networks import conv, dcgan, resnet, unet
from factorlens.networks.common import (
    SIZES,
    check_image_size,
    logits_without_parameter_grad,
    stride2_stages,
    transposed_conv_weight_as_matrix,
)
from factorlens.registry import Registry


@dataclass(frozen=True)
class NetworkFamily:
    """The constructors of one network family (see the module docstring for their shapes)."""

    encoder: Callable[[int, int, int], nn.Module]
    decoder: Callable[[int, int, int], nn.Module]
    discriminator: Callable[[int, int], nn.Module]
    description: str
    denoiser: Callable[..., nn.Module] | None = None  # (channels, size, **args): diffusion families


NETWORKS: Registry[NetworkFamily] = Registry("network")

def _encoder_decoder_family(encoder_class: type, decoder_class: type, description: str) -> NetworkFamily:
    """A family whose discriminator is its encoder with LeakyReLU(0.2), no BN and one logit."""
    return NetworkFamily(
        encoder=lambda channels, out, size: encoder_class(channels, out, image_size=size),
        decoder=lambda latent_dim, channels, size: decoder_class(latent_dim, channels, image_size=size),
        discriminator=lambda channels, size: encoder_class(channels, 1, leaky=True, use_bn=False,
                                                           image_size=size),
        description=description,
    )


NETWORKS.register("conv")(_encoder_decoder_family(
    conv.ConvEncoder, conv.ConvDecoder, "Chen et al. (2018): 4x4 stride-2 convs, BatchNorm + ReLU"))
NETWORKS.register("resnet")(_encoder_decoder_family(
    resnet.ResNetEncoder, resnet.ResNetDecoder,
    "Sarhan et al. (2019): pre-activation bottleneck residual blocks"))


def _dcgan_width(width: int) -> NetworkFamily:
    return NetworkFamily(
        encoder=lambda channels, out, size: dcgan.DCGANDiscriminator(channels, width, image_size=size,
                                                                      out=out),
        decoder=lambda latent_dim, channels, size: dcgan.DCGANGenerator(latent_dim, channels, width,
                                                                         image_size=size),
        discriminator=lambda channels, size: dcgan.DCGANDiscriminator(channels, width, image_size=size),
        description=f"DCGAN (Radford et al. 2016), width {width}",
    )


NETWORKS.register("dcgan")(_dcgan_width(32))
NETWORKS.register("unet")(NetworkFamily(
    encoder=unet.encoder, decoder=unet.decoder, discriminator=unet.discriminator,
    description="MONAI DiffusionModelUNet (ε-prediction denoiser; h-space = middle-block output)",
    denoiser=unet.build_unet))


def network_family(name: str, *, width: int | None = None) -> NetworkFamily:
    """The registered family ``name`` (``dcgan`` takes a ``width``, DCGAN's ngf/ndf)."""
    family = NETWORKS.get(name)
    if name == "dcgan" and width is not None:
        return _dcgan_width(width)
    return family


__all__ = ["NETWORKS", "SIZES", "NetworkFamily", "check_image_size", "logits_without_parameter_grad",
           "network_family", "stride2_stages", "transposed_conv_weight_as_matrix"]
