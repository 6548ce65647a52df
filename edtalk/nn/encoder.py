"""Appearance encoder E (paper Sec. 3.1; LIA's `EncoderApp`).

Maps an image to the appearance latent w_a (the last 4x4 conv, B x S) and the feature pyramid the
synthesis network warps (from 8x8 up to full resolution).
"""

from __future__ import annotations

from itertools import pairwise

import torch
from torch import nn

from edtalk.config import GeneratorConfig
from edtalk.nn.layers import ConvLayer, EqualConv2d, ResBlock


class AppearanceEncoder(nn.Module):
    """convs[0]: 1x1 ConvLayer; convs[1..L-2]: ResBlocks halving the size down to 4x4; convs[-1]: 4x4 conv."""

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        in_ch = cfg.channels(cfg.size)
        layers: list[nn.Module] = [ConvLayer(3, in_ch, 1)]
        for log_res in range(cfg.log_size, 2, -1):
            out_ch = cfg.channels(2 ** (log_res - 1))
            layers.append(ResBlock(in_ch, out_ch))
            in_ch = out_ch
        layers.append(EqualConv2d(in_ch, cfg.style_dim, 4, padding=0, bias=False))
        self.convs = nn.ModuleList(layers)

    def forward(
        self, img: torch.Tensor, with_features: bool = True
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """img: B x 3 x H x W in [-1, 1].

        Returns:
            w_a: B x S appearance latent.
            feats: coarse-to-fine pyramid [8x8, 16x16, ..., HxW] (empty when `with_features` is False).
        """
        h = img
        res: list[torch.Tensor] = []
        for conv in self.convs:
            h = conv(h)
            if with_features:
                res.append(h)
        w_a = h.flatten(1)  # B x S x 1 x 1 -> B x S
        feats = res[::-1][2:] if with_features else []
        return w_a, feats


class ExpressionEncoder(nn.Module):
    """Ours (`generator.exp_encoder: cnn`): the expression weights read from the driving frame by their own
    BatchNorm CNN instead of ELN on the motion code of E (the paper's `exp_fc(fc(E(t)))`).

    On the built-in data E, trained for mouth and pose, carries a new speaker's emotion linearly at <= 0.74
    while a BatchNorm CNN learns it across speakers in ~100 steps (experiments/demo/README.md, "A reader of
    its own for the expression"). A 3x3 stride-2 stem and three stages of torchvision's `BasicBlock`, each
    halving the size and doubling the width (`width`, 2x, 4x, 8x), global average pooling, a linear map to
    `out_dim`. Sizes from 64² up; ~1.2 M parameters at width 32.
    """

    def __init__(self, out_dim: int, width: int = 32) -> None:
        super().__init__()
        from torchvision.models.resnet import BasicBlock

        def stage(cin: int, cout: int) -> nn.Module:
            down = nn.Sequential(nn.Conv2d(cin, cout, 1, 2, bias=False), nn.BatchNorm2d(cout))
            return BasicBlock(cin, cout, 2, down)

        w = [width * 2**k for k in range(4)]
        self.stem = nn.Sequential(
            nn.Conv2d(3, w[0], 3, 2, 1, bias=False), nn.BatchNorm2d(w[0]), nn.ReLU(True)
        )
        self.stages = nn.Sequential(*(stage(a, b) for a, b in pairwise(w)))
        self.head = nn.Linear(w[-1], out_dim)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """img: B x 3 x H x W in [-1, 1] -> B x out_dim expression weights."""
        return self.head(self.stages(self.stem(img)).mean((2, 3)))
