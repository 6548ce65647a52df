"""Appearance encoder E (paper Sec. 3.1; LIA's `EncoderApp`).

Maps an image to the appearance latent w_a (the last 4x4 conv, B x S) and the feature pyramid the
synthesis network warps (from 8x8 up to full resolution).
"""

from __future__ import annotations

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
