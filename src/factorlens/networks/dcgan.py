"""``dcgan``: Radford et al.'s (2016) generator and discriminator, for 32, 64 or 128 px."""

from __future__ import annotations

from torch import nn

from factorlens.networks.common import stride2_stages


def _generator_widths(width: int, image_size: int) -> list[int]:
    """Channels from the 4x4 map on: 8w, 4w, 2w, w at 64 px; w again for each further doubling."""
    return [width * 2 ** max(3 - i, 0) for i in range(stride2_stages(image_size))]


class DCGANGenerator(nn.Module):
    """z -> 4x4x(8w) -> 8x8x(4w) -> 16x16x(2w) -> 32x32xw -> 64x64xC logits at 64 px, BN + ReLU between
    layers (w = ``width``, 32 by default: 4x4x256 first).

    Shapes: ``[B, latent_dim] -> logits [B, channels, S, S]``.
    """

    def __init__(self, latent_dim: int, channels: int, width: int = 32, *, image_size: int = 64) -> None:
        super().__init__()
        widths = _generator_widths(width, image_size)
        self.first = nn.ConvTranspose2d(latent_dim, widths[0], 4, 1, 0)
        layers: list[nn.Module] = [nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)]
        for c_in, c_out in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
        layers.append(nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, z):
        return self.net(self.first(z[:, :, None, None]))


class DCGANDiscriminator(nn.Module):
    """C -> w -> 2w -> 4w -> 8w at 64 px (4x4 stride-2 convs, BN from the second, LeakyReLU(0.2)) -> a
    4x4 conv to ``out`` logits (1 for a discriminator).

    Shapes: ``[B, channels, S, S] -> [B, out]``.
    """

    def __init__(self, channels: int, width: int = 32, *, image_size: int = 64, out: int = 1) -> None:
        super().__init__()
        widths = list(reversed(_generator_widths(width, image_size)))
        layers: list[nn.Module] = [nn.Conv2d(channels, widths[0], 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        for c_in, c_out in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1), nn.BatchNorm2d(c_out)]
            layers.append(nn.LeakyReLU(0.2, inplace=True))
        layers.append(nn.Conv2d(widths[-1], out, 4, 1, 0))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x).flatten(1)
