"""``resnet``: the bottleneck-residual encoder/decoder of Sarhan et al. (2019), for 32, 64 or 128 px."""

from __future__ import annotations

import torch
from torch import nn

from factorlens.networks.common import act, norm, stride2_stages


def _block_widths(image_size: int) -> list[int]:
    """Channels along the residual stages after the first stride-2 conv: 32 -> 32 -> 64 -> 64 at 64 px
    (three blocks, 32 -> 4 px); one more 32-channel block per doubling."""
    stages = stride2_stages(image_size)
    return [32] * (stages - 2) + [64, 64]


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
            norm(c_in, use_bn), act(leaky, inplace=use_bn), nn.Conv2d(c_in, mid, 1),
            upsample,
            norm(mid, use_bn), act(leaky), nn.Conv2d(mid, mid, 3, stride, 1),
            norm(mid, use_bn), act(leaky), nn.Conv2d(mid, c_out, 1),
        )  # fmt: skip
        if c_in == c_out and resample == "none":
            self.shortcut: nn.Module = nn.Identity()
        else:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride), upsample)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.body(x)


class ResNetEncoder(nn.Module):
    """The conv encoder's resolutions (64 -> 32 -> 16 -> 8 -> 4 -> 1 at 64 px) with the stride-2 convs
    from 32x32 on replaced by bottleneck blocks. The first stride-2 layer stays a plain 4x4 conv: a
    bottleneck at full resolution made the encoder's forward+backward 1.5x slower on CPU (0.18 s vs
    0.12 s, batch 64, one thread; docs/models.md).

    Shapes: ``[B, channels, S, S] -> [B, out]``.
    """

    def __init__(self, channels: int, out: int, *, leaky: bool = False, use_bn: bool = True,
                 image_size: int = 64) -> None:
        super().__init__()
        widths = _block_widths(image_size)
        # Layers are created in forward order: the order the initial weights are drawn in.
        first = nn.Conv2d(channels, 32, 4, 2, 1)  # S -> S/2
        blocks = [Bottleneck(c_in, c_out, resample="down", leaky=leaky, use_bn=use_bn)
                  for c_in, c_out in zip(widths[:-1], widths[1:], strict=True)]
        self.net = nn.Sequential(
            first,
            *blocks,  # S/2 -> 4
            norm(64, use_bn), act(leaky),
            nn.Conv2d(64, 512, 4, 1, 0), norm(512, use_bn), act(leaky),  # 4 -> 1
            nn.Conv2d(512, out, 1),
        )  # fmt: skip

    def forward(self, x):
        return self.net(x).flatten(1)


class ResNetDecoder(nn.Module):
    """Mirror of :class:`ResNetEncoder`: 1x1 -> 4x4, upsampling bottleneck blocks (4 -> S/2), and a
    plain 4x4 stride-2 transposed conv for the last doubling (a bottleneck there made the decoder's
    forward+backward 1.6x slower on CPU: 0.25 s vs 0.16 s, batch 64, one thread).

    Shapes: ``[B, latent_dim] -> logits [B, channels, S, S]``.
    """

    def __init__(self, latent_dim: int, channels: int, *, image_size: int = 64) -> None:
        super().__init__()
        widths = list(reversed(_block_widths(image_size)))
        # Layers are created in forward order: the order the initial weights are drawn in.
        self.first = nn.ConvTranspose2d(latent_dim, 512, 1)
        head = [nn.BatchNorm2d(512), nn.ReLU(inplace=True), nn.ConvTranspose2d(512, 64, 4, 1, 0)]  # 1 -> 4
        blocks = [Bottleneck(c_in, c_out, resample="up")
                  for c_in, c_out in zip(widths[:-1], widths[1:], strict=True)]
        self.net = nn.Sequential(
            *head,
            *blocks,  # 4 -> S/2
            nn.BatchNorm2d(32), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(32, channels, 4, 2, 1),  # S/2 -> S
        )  # fmt: skip

    def forward(self, z):
        return self.net(self.first(z[:, :, None, None]))
