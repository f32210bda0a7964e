"""``conv``: Chen et al.'s (2018) CelebA encoder/decoder, for 32, 64 or 128 px."""

from __future__ import annotations

from torch import nn

from factorlens.networks.common import act, norm, stride2_stages


def _stage_widths(image_size: int) -> list[int]:
    """Output channels of the stride-2 stages: 32, 32, 64, 64 at 64 px (one more 32 per doubling)."""
    stages = stride2_stages(image_size)
    return [32] * (stages - 2) + [64, 64]


class ConvEncoder(nn.Module):
    """4x4 stride-2 convs 32, 32, 64, 64 (64 -> 4 px), a 4x4 conv to 512 (4 -> 1), then a 1x1 conv to
    ``out``. With ``leaky=True, use_bn=False`` it is the discriminator body.

    Shapes: ``[B, channels, S, S] -> [B, out]``.
    """

    def __init__(self, channels: int, out: int, *, leaky: bool = False, use_bn: bool = True,
                 image_size: int = 64) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        widths = [channels, *_stage_widths(image_size)]
        for c_in, c_out in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1), norm(c_out, use_bn), act(leaky)]
        layers += [nn.Conv2d(64, 512, 4, 1, 0), norm(512, use_bn), act(leaky), nn.Conv2d(512, out, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x).flatten(1)


class ConvDecoder(nn.Module):
    """Mirror of :class:`ConvEncoder`: 1x1 transposed conv d -> 512, 4x4 to 64 channels at 4x4, then
    4x4 stride-2 transposed convs 64, 32, 32, C (4 -> 64 px).

    Shapes: ``[B, latent_dim] -> logits [B, channels, S, S]``.
    """

    def __init__(self, latent_dim: int, channels: int, *, image_size: int = 64) -> None:
        super().__init__()
        self.first = nn.ConvTranspose2d(latent_dim, 512, 1)
        layers: list[nn.Module] = [
            nn.BatchNorm2d(512), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(512, 64, 4, 1, 0), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
        ]  # fmt: skip
        widths = [*reversed(_stage_widths(image_size)), channels]
        for i, (c_in, c_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            layers.append(nn.ConvTranspose2d(c_in, c_out, 4, 2, 1))
            if i < len(widths) - 2:
                layers += [nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
        self.net = nn.Sequential(*layers)

    def forward(self, z):
        return self.net(self.first(z[:, :, None, None]))
