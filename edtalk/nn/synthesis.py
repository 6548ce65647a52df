"""Flow-warping synthesis network G (paper Sec. 3.1/3.3; LIA's decoder).

A StyleGAN2 decoder driven by w = w_a + sum_k alpha_k q_k predicts, at each level 8x8 ... HxW, a flow
field and an occlusion mask that warp the source encoder's feature map (optionally modulated by EEM);
RGB is accumulated across levels from the warped features.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from edtalk.config import GeneratorConfig
from edtalk.nn.eem import EEM
from edtalk.nn.layers import (
    ConstantInput,
    ConvLayer,
    ModulatedConv2d,
    StyledConv,
    Upsample,
    at_least_float32,
    float32_region,
)

# under bf16 autocast, decoder levels of size <= output / FLOAT32_COARSE run in float32 (Synthesis.forward)
FLOAT32_COARSE = 8


def sampling_grid(size: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Identity grid 1 x size x size x 2 in (x, y) order; linspace rounded to float32 as upstream."""
    xs = torch.linspace(-1.0, 1.0, size, dtype=torch.float64).to(torch.float32)
    gy, gx = torch.meshgrid(xs, xs, indexing="ij")
    return torch.stack([gx, gy], dim=-1)[None].to(device=device, dtype=dtype)


def same_layout(t: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """`t` in the memory format of `ref` (channels_last or contiguous): one layout per network."""
    if ref.is_contiguous(memory_format=torch.channels_last) and not ref.is_contiguous():
        return t.contiguous(memory_format=torch.channels_last)
    return t


class ToFlow(nn.Module):
    """Predicts flow (2 ch, tanh) + mask (1 ch, sigmoid) logits, accumulated across scales, and warps."""

    def __init__(self, in_ch: int, style_dim: int) -> None:
        super().__init__()
        self.upsample = Upsample()
        self.conv = ModulatedConv2d(in_ch, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))
        self._grids: dict[tuple[int, torch.device, torch.dtype], torch.Tensor] = {}

    def grid(self, size: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        key = (size, device, dtype)
        if key not in self._grids:
            self._grids[key] = sampling_grid(size, device, dtype)
        return self._grids[key]

    def forward(
        self, x: torch.Tensor, style: torch.Tensor, feat: torch.Tensor, skip: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (warped feature, new decoder feature, raw 3-channel logits for the next scale).

        Under bf16 autocast this step runs in float32 and returns float32: flow errors are sub-pixel
        shifts that every finer level inherits (a bf16 flow head costs ~6 dB PSNR on the parity
        weights, a bf16 grid is off by up to 1/2 pixel at 256^2); the 1x1 head is ~0.1% of the FLOPs.
        """
        with float32_region(x):
            x, feat = at_least_float32(x), at_least_float32(feat)
            logits = self.conv(x, at_least_float32(style)) + self.bias
            if skip is not None:
                logits = logits + self.upsample(skip)
            grid = self.grid(x.shape[-1], x.device, x.dtype)
            flow = torch.tanh(logits[:, :2]).permute(0, 2, 3, 1) + grid  # -> B x H x W x 2
            mask = torch.sigmoid(logits[:, 2:3])
            sampled = F.grid_sample(feat, flow, mode="bilinear", padding_mode="zeros", align_corners=False)
            sampled = same_layout(sampled, x)
            # warped = sampled * mask; new feature = warped + x * (1 - mask) = lerp(x, sampled, mask)
            return sampled * mask, torch.lerp(x, sampled, mask), logits


class ToRGB(nn.Module):
    """1x1 ConvLayer (with its leaky ReLU, as released) + bias, plus the upsampled previous RGB."""

    def __init__(self, in_ch: int) -> None:
        super().__init__()
        self.upsample = Upsample()
        self.conv = ConvLayer(in_ch, 3, 1)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        out = self.conv(x) + self.bias
        return out if skip is None else out + self.upsample(skip)


class Synthesis(nn.Module):
    """G: (w, source pyramid[, expression latent e]) -> image B x 3 x H x W (not squashed)."""

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        s = cfg.style_dim
        c4 = cfg.channels(4)
        self.input = ConstantInput(c4)
        self.conv1 = StyledConv(c4, c4, 3, s)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.to_flows = nn.ModuleList()
        eems: list[nn.Module] = []
        in_ch = c4
        for log_res in range(3, cfg.log_size + 1):
            out_ch = cfg.channels(2**log_res)
            self.convs.append(StyledConv(in_ch, out_ch, 3, s, upsample=True))
            self.convs.append(StyledConv(out_ch, out_ch, 3, s))
            self.to_rgbs.append(ToRGB(out_ch))
            self.to_flows.append(ToFlow(out_ch, s))
            eems.append(EEM(out_ch, s, cfg.eem_hidden))
            in_ch = out_ch
        self.fineadainresblock = nn.ModuleList(eems) if cfg.has_expression else None

    @torch.no_grad()
    def scale_flow_init(self, gain: float) -> None:
        """Multiply every level's flow/mask predictor weights by `gain` (a construction-time option).

        LIA's random init predicts flow offsets of ~0.7 (a third of the image) at every level, so a fresh
        model samples scrambled source features; gain 0 starts each level at the identity warp with
        mask 0.5, and the weights still receive gradients from the first step.
        """
        if gain < 0:
            raise ValueError(f"flow init gain must be >= 0, got {gain}")
        for to_flow in self.to_flows:
            cast(ToFlow, to_flow).conv.weight.mul_(gain)

    @property
    def eem_blocks(self) -> list[EEM]:
        """The EEM of each level (empty for the lip-pose variant)."""
        return [cast(EEM, b) for b in self.fineadainresblock] if self.fineadainresblock is not None else []

    def forward(self, w: torch.Tensor, feats: list[torch.Tensor]) -> torch.Tensor:
        """w: B x S; feats: (EEM-modulated) source pyramid [8x8 ... HxW], batch B or 1.

        Under bf16 autocast the coarse levels (up to output / `FLOAT32_COARSE`: 32^2 at 256^2) run in
        float32: their flows are upsampled into every finer level's, and bf16 there costs ~5 dB PSNR on
        the parity weights for ~20% of the decoder's FLOPs (benchmarks/render.py). Without autocast
        nothing changes.
        """
        x = self.input(w.shape[0])
        if feats and feats[-1].is_contiguous(memory_format=torch.channels_last):
            x = x.contiguous(memory_format=torch.channels_last)  # keep the decoder in the source's layout
        # the latent inside the float32 levels (bf16 when a trainer's autocast made it)
        w32 = at_least_float32(w)
        with float32_region(x):
            out = self.conv1(x, w32)  # -> B x 512 x 4 x 4
        rgb: torch.Tensor | None = None
        flow_logits: torch.Tensor | None = None
        coarse = feats[-1].shape[-1] // FLOAT32_COARSE if feats else 0
        for j, feat in enumerate(feats):
            island = feat.shape[-1] <= coarse
            with float32_region(out, enabled=island):
                style = w32 if island else w
                out = self.convs[2 * j](out, style)  # -> B x C x 2r x 2r
                out = self.convs[2 * j + 1](out, style)
                if feat.shape[0] != out.shape[0]:
                    feat = feat.expand(out.shape[0], -1, -1, -1)
                warped, out, flow_logits = self.to_flows[j](out, w, feat, flow_logits)
                rgb = self.to_rgbs[j](warped, rgb)
        assert rgb is not None, "empty feature pyramid"
        return rgb
