"""StyleGAN2 discriminator used by every GAN stage (SPEC 3.6; LIA/EDTalk `networks/discriminator.py`).

`ConvLayer(3, C_size, 1)` -> log2(size) - 2 residual downsampling blocks to 4x4 -> minibatch standard
deviation (group 4, 1 feature) -> `ConvLayer(C_4 + 1, C_4, 3)` -> `EqualLinear(C_4*16, C_4, lrelu)` ->
`EqualLinear(C_4, 1)`. At the default size the state-dict keys equal the official `dis` entries
(minus the fixed FIR kernels, which are non-persistent buffers here).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from edtalk.config import BASE_CHANNELS, SerializableConfig
from edtalk.nn.layers import ConvLayer, EqualLinear, ResBlock


def minibatch_stddev(x: torch.Tensor, group_size: int = 4, n_features: int = 1) -> torch.Tensor:
    """Append the minibatch standard-deviation feature map(s): B x C x H x W -> B x (C + F) x H x W.

    The batch is split into groups of `min(B, group_size)` samples (as upstream); when B is not a
    multiple of that, the largest divisor of B below it is used (upstream would raise).
    """
    b, c, h, w = x.shape
    group = min(b, group_size)
    while b % group:
        group -= 1
    # -> G x (B/G) x F x (C/F) x H x W
    y = x.view(group, -1, n_features, c // n_features, h, w)
    y = torch.sqrt(y.var(0, unbiased=False) + 1e-8)  # -> (B/G) x F x (C/F) x H x W
    y = y.mean(dim=(2, 3, 4), keepdim=True).squeeze(2)  # -> (B/G) x F x 1 x 1
    y = y.repeat(group, 1, h, w)  # -> B x F x H x W
    return torch.cat([x, y], 1)


@dataclass(frozen=True)
class DiscriminatorConfig(SerializableConfig):
    """Architecture of `Discriminator` (the arguments of its constructor, saved with its weights)."""

    size: int = 256
    channel_multiplier: float = 1.0
    max_channels: int = 512


class Discriminator(nn.Module):
    """Image realism critic: B x 3 x size x size in [-1, 1] -> B x 1 logits.

    Args:
        size: input side, a power of two >= 8.
        channel_multiplier: scales the levels above 32x32 (as in StyleGAN2).
        max_channels: cap on every level's width (512 upstream; tests use a few channels).
    """

    def __init__(self, size: int = 256, channel_multiplier: float = 1.0, max_channels: int = 512) -> None:
        super().__init__()
        log = math.log2(size) if size > 0 else 0
        if size < 8 or log != int(log) or size not in BASE_CHANNELS:
            raise ValueError(f"Discriminator size must be a power of two in 8..1024, got {size}")

        def ch(res: int) -> int:
            base = BASE_CHANNELS[res]
            return max(1, min(max_channels, base if res <= 32 else int(base * channel_multiplier)))

        self.size = size
        self.cfg = DiscriminatorConfig(size, float(channel_multiplier), int(max_channels))
        self.stddev_group, self.stddev_feat = 4, 1
        convs: list[nn.Module] = [ConvLayer(3, ch(size), 1)]
        res = size
        while res > 4:
            convs.append(ResBlock(ch(res), ch(res // 2)))
            res //= 2
        self.convs = nn.Sequential(*convs)
        c4 = ch(4)
        self.final_conv = ConvLayer(c4 + self.stddev_feat, c4, 3)
        self.final_linear = nn.Sequential(EqualLinear(c4 * 4 * 4, c4, activation=True), EqualLinear(c4, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[-2:] != (self.size, self.size):
            raise ValueError(
                f"Discriminator({self.size}) expects B x 3 x {self.size} x {self.size} images, "
                f"got {tuple(x.shape)}"
            )
        out = self.convs(x)  # -> B x C4 x 4 x 4
        out = minibatch_stddev(out, self.stddev_group, self.stddev_feat)
        out = self.final_conv(out)
        return self.final_linear(out.flatten(1))  # -> B x 1
