"""Wav2Lip's building blocks: the Conv-BatchNorm-ReLU block (residual variants add their input before
the ReLU), encoder layouts as `ConvSpec` lists, and the audio encoder layout shared by `Audio2Lip`, the
SyncNet expert and our audio networks. Module names equal Wav2Lip's (`conv_block.{0,1}.*`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn


class ConvSpec(NamedTuple):
    """One Wav2Lip conv block: output channels, kernel, stride, padding, residual."""

    out_ch: int
    kernel: int | tuple[int, int]
    stride: int | tuple[int, int] = 1
    padding: int = 1
    residual: bool = False


class Wav2LipConv(nn.Module):
    """Conv2d -> BatchNorm2d (-> + input if residual) -> ReLU (Wav2Lip's `Conv2d` block)."""

    def __init__(self, in_ch: int, spec: ConvSpec) -> None:
        super().__init__()
        if spec.residual and (in_ch != spec.out_ch or spec.stride != 1):
            raise ValueError(f"a residual block needs in == out channels and stride 1, got {in_ch} -> {spec}")
        self.conv_block = nn.Sequential(
            nn.Conv2d(in_ch, spec.out_ch, spec.kernel, spec.stride, spec.padding),
            nn.BatchNorm2d(spec.out_ch),
        )
        self.residual = spec.residual
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_block(x)
        if self.residual:
            out = out + x
        return self.act(out)


def build_encoder(in_ch: int, specs: Sequence[ConvSpec]) -> nn.Sequential:
    """A Sequential of Wav2Lip conv blocks (indices = official state-dict indices)."""
    layers: list[nn.Module] = []
    for spec in specs:
        layers.append(Wav2LipConv(in_ch, spec))
        in_ch = spec.out_ch
    return nn.Sequential(*layers)


def wav2lip_audio_specs(
    channels: Sequence[int] = (32, 64, 128, 256, 512), residual: Sequence[int] = (2, 2, 2, 1)
) -> list[ConvSpec]:
    """Wav2Lip audio encoder layout for a 1 x 80 x 16 mel window -> C x 1 x 1.

    Spatial path: 80x16 -> (s 3x1) 27x16 -> (s 3) 9x6 -> (s 3x2) 3x3 -> (3x3, p 0) 1x1 -> (1x1) 1x1.
    `residual[i]` residual blocks follow the block that enters stage i. Audio2Lip uses the default
    (13 blocks); the SyncNet expert uses residual (2, 2, 2, 2) (14 blocks).
    """
    c0, c1, c2, c3, c4 = channels
    strides: list[int | tuple[int, int]] = [1, (3, 1), 3, (3, 2)]
    specs: list[ConvSpec] = []
    for ch, stride, n_res in zip((c0, c1, c2, c3), strides, residual, strict=True):
        specs.append(ConvSpec(ch, 3, stride, 1))
        specs.extend(ConvSpec(ch, 3, 1, 1, residual=True) for _ in range(n_res))
    specs.append(ConvSpec(c4, 3, 1, 0))
    specs.append(ConvSpec(c4, 1, 1, 0))
    return specs


def run_windows(encoder: nn.Module, mel: torch.Tensor) -> torch.Tensor:
    """Encode mel windows N x 1 x 80 x 16 or B x T x 1 x 80 x 16 -> N x C or B x T x C (one batch)."""
    if mel.ndim not in (4, 5) or tuple(mel.shape[-3:]) != (1, 80, 16):
        raise ValueError(
            f"expected mel windows N x 1 x 80 x 16 or B x T x 1 x 80 x 16, got {tuple(mel.shape)}; "
            "build them with edtalk.mel.mel_windows"
        )
    lead = mel.shape[:-3]
    feats = encoder(mel.reshape(-1, 1, 80, 16))  # -> (B*T) x C x 1 x 1
    return feats.reshape(*lead, feats.shape[1])
