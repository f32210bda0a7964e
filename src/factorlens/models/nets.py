"""Network bodies for 64x64 images: Chen et al.'s conv net, its bottleneck-residual version, the
discriminator with the encoder's architecture, and a DCGAN.

Shapes: images ``[B, C, 64, 64]``; encoders return ``[B, out]`` (``out = 2d`` for a VAE encoder, 1 for a
discriminator); decoders take ``[B, d]`` and return logits ``[B, C, 64, 64]`` (the model applies the
sigmoid).
"""

from __future__ import annotations

import torch
from torch import nn


def _act(leaky: bool, *, inplace: bool = True) -> nn.Module:
    return nn.LeakyReLU(0.2, inplace=inplace) if leaky else nn.ReLU(inplace=inplace)


def _norm(channels: int, use_bn: bool) -> nn.Module:
    return nn.BatchNorm2d(channels) if use_bn else nn.Identity()


class ConvEncoder(nn.Module):
    """Chen et al. (2018) CelebA encoder: 4x4 stride-2 convs 32, 32, 64, 64 (64 -> 4), a 4x4 conv to 512
    (4 -> 1), then a 1x1 conv to ``out``. With ``leaky=True, use_bn=False`` it is the discriminator body."""

    def __init__(self, channels: int, out: int, *, leaky: bool = False, use_bn: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        widths = [channels, 32, 32, 64, 64]
        for c_in, c_out in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1), _norm(c_out, use_bn), _act(leaky)]
        layers += [nn.Conv2d(64, 512, 4, 1, 0), _norm(512, use_bn), _act(leaky), nn.Conv2d(512, out, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x).flatten(1)


class ConvDecoder(nn.Module):
    """Mirror of :class:`ConvEncoder`: 1x1 transposed conv d -> 512, 4x4 to 64 channels at 4x4, then
    4x4 stride-2 transposed convs 64, 32, 32, C (4 -> 64)."""

    def __init__(self, latent_dim: int, channels: int) -> None:
        super().__init__()
        self.first = nn.ConvTranspose2d(latent_dim, 512, 1)
        self.net = nn.Sequential(
            nn.BatchNorm2d(512), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(512, 64, 4, 1, 0), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(64, 64, 4, 2, 1), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(32, 32, 4, 2, 1), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(32, channels, 4, 2, 1),
        )  # fmt: skip

    def forward(self, z):
        return self.net(self.first(z[:, :, None, None]))


class Bottleneck(nn.Module):
    """Pre-activation bottleneck block (He et al. 2016, "Identity mappings"): BN-act-1x1 (reduce to
    ``c_out / 4`` channels, at least 8), BN-act-3x3, BN-act-1x1 (expand), plus a shortcut that is a 1x1
    projection when the shape changes and the identity otherwise.

    ``resample="down"``: stride 2 in the 3x3 (and in the projection). ``resample="up"``: a nearest x2
    upsample of the *reduced* tensor before the 3x3, and of the projected shortcut. Nearest upsampling
    commutes with per-channel BN, the activation and 1x1 convs, so this is the block "upsample, then
    BN-act-1x1-..." computed with its first layer and its shortcut at the low resolution, where they
    cost a quarter (BN batch statistics are equal too, up to the n/(n-1) of the running variance).
    """

    def __init__(
        self, c_in: int, c_out: int, *, resample: str = "none", leaky: bool = False, use_bn: bool = True
    ) -> None:
        super().__init__()
        if resample not in ("none", "down", "up"):
            raise ValueError(f"resample must be 'none', 'down' or 'up', not {resample!r}")
        mid = max(c_out // 4, 8)
        stride = 2 if resample == "down" else 1
        upsample: nn.Module = nn.Identity()
        if resample == "up":
            upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.body = nn.Sequential(
            # not in place: without BN the activation would overwrite the block input the shortcut reads
            _norm(c_in, use_bn), _act(leaky, inplace=use_bn), nn.Conv2d(c_in, mid, 1),
            upsample,
            _norm(mid, use_bn), _act(leaky), nn.Conv2d(mid, mid, 3, stride, 1),
            _norm(mid, use_bn), _act(leaky), nn.Conv2d(mid, c_out, 1),
        )  # fmt: skip
        if c_in == c_out and resample == "none":
            self.shortcut: nn.Module = nn.Identity()
        else:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride), upsample)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.body(x)


class ResNetEncoder(nn.Module):
    """Ours-resnet encoder: the conv encoder's resolutions (64 -> 32 -> 16 -> 8 -> 4 -> 1) with the
    stride-2 convs from 32x32 on replaced by bottleneck blocks. The first 64 -> 32 layer stays a plain
    4x4 stride-2 conv: a bottleneck at full resolution made the encoder's forward+backward 1.5x slower on
    CPU (0.18 s vs 0.12 s, batch 64, one thread; docs/models.md)."""

    def __init__(self, channels: int, out: int, *, leaky: bool = False, use_bn: bool = True) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, 32, 4, 2, 1),  # 64 -> 32
            Bottleneck(32, 32, resample="down", leaky=leaky, use_bn=use_bn),  # 32 -> 16
            Bottleneck(32, 64, resample="down", leaky=leaky, use_bn=use_bn),  # 16 -> 8
            Bottleneck(64, 64, resample="down", leaky=leaky, use_bn=use_bn),  # 8 -> 4
            _norm(64, use_bn), _act(leaky),
            nn.Conv2d(64, 512, 4, 1, 0), _norm(512, use_bn), _act(leaky),  # 4 -> 1
            nn.Conv2d(512, out, 1),
        )  # fmt: skip

    def forward(self, x):
        return self.net(x).flatten(1)


class ResNetDecoder(nn.Module):
    """Mirror of :class:`ResNetEncoder`: 1x1 -> 4x4, three upsampling bottleneck blocks (4 -> 32), and a
    plain 4x4 stride-2 transposed conv for 32 -> 64 (a bottleneck there made the decoder's
    forward+backward 1.6x slower on CPU: 0.25 s vs 0.16 s, batch 64, one thread)."""

    def __init__(self, latent_dim: int, channels: int) -> None:
        super().__init__()
        self.first = nn.ConvTranspose2d(latent_dim, 512, 1)
        self.net = nn.Sequential(
            nn.BatchNorm2d(512), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(512, 64, 4, 1, 0),  # 1 -> 4
            Bottleneck(64, 64, resample="up"),  # 4 -> 8
            Bottleneck(64, 32, resample="up"),  # 8 -> 16
            Bottleneck(32, 32, resample="up"),  # 16 -> 32
            nn.BatchNorm2d(32), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(32, channels, 4, 2, 1),  # 32 -> 64
        )  # fmt: skip

    def forward(self, z):
        return self.net(self.first(z[:, :, None, None]))


class DCGANGenerator(nn.Module):
    """DCGAN generator (Radford et al. 2016) for 64x64: z -> 4x4x(8w) -> 8x8x(4w) -> 16x16x(2w) -> 32x32xw
    -> 64x64xC logits, BN + ReLU between layers (w = ``width``, 32 by default: 4x4x256 first)."""

    def __init__(self, latent_dim: int, channels: int, width: int = 32) -> None:
        super().__init__()
        self.first = nn.ConvTranspose2d(latent_dim, width * 8, 4, 1, 0)
        layers: list[nn.Module] = [nn.BatchNorm2d(width * 8), nn.ReLU(inplace=True)]
        widths = [width * 8, width * 4, width * 2, width]
        for c_in, c_out in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
        layers.append(nn.ConvTranspose2d(width, channels, 4, 2, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, z):
        return self.net(self.first(z[:, :, None, None]))


class DCGANDiscriminator(nn.Module):
    """DCGAN discriminator for 64x64: C -> w -> 2w -> 4w -> 8w (4x4 stride-2 convs, BN from the second,
    LeakyReLU(0.2)) -> a 4x4 conv to one logit ``[B, 1]``."""

    def __init__(self, channels: int, width: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        widths = [width, width * 2, width * 4, width * 8]
        for c_in, c_out in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1), nn.BatchNorm2d(c_out)]
            layers.append(nn.LeakyReLU(0.2, inplace=True))
        layers.append(nn.Conv2d(width * 8, 1, 4, 1, 0))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x).flatten(1)


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
