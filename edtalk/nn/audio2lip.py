"""Audio-to-Mouth (paper Sec. 3.4, SPEC 4.2): mel windows -> the 20 mouth weights of the MLN bank.

The audio encoder is Wav2Lip's (13 Conv-BatchNorm-ReLU blocks, residual variants add their input
before the ReLU) and the head a single `Linear(512, 20)` called `mapping`. State-dict keys equal the
official `Audio2Lip.pt` (`audio_encoder.<i>.conv_block.{0,1}.*`, `mapping.*`). The Wav2Lip block and
the encoder layout are shared with the SyncNet expert and our new audio networks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from edtalk.config import SerializableConfig


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
            "build them with edtalk.audio.mel_windows"
        )
    lead = mel.shape[:-3]
    feats = encoder(mel.reshape(-1, 1, 80, 16))  # -> (B*T) x C x 1 x 1
    return feats.reshape(*lead, feats.shape[1])


@dataclass(frozen=True)
class Audio2LipConfig(SerializableConfig):
    """Architecture of `Audio2Lip` (saved in checkpoints; the official `Audio2Lip.pt` is the default)."""

    mouth_dim: int = 20
    channels: tuple[int, ...] = (32, 64, 128, 256, 512)


class Audio2Lip(nn.Module):
    """Wav2Lip audio encoder + `Linear(512, 20)`: mel windows -> mouth weights alpha_mouth.

    Args:
        mouth_dim: number of mouth-bank coefficients (20 upstream).
        channels: encoder widths (Wav2Lip: 32, 64, 128, 256, 512).
    """

    def __init__(self, mouth_dim: int = 20, channels: Sequence[int] = (32, 64, 128, 256, 512)) -> None:
        super().__init__()
        self.cfg = Audio2LipConfig(int(mouth_dim), tuple(int(c) for c in channels))
        self.audio_encoder = build_encoder(1, wav2lip_audio_specs(channels))
        self.mapping = nn.Linear(channels[-1], mouth_dim)
        nn.init.zeros_(self.mapping.bias)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """N x 1 x 80 x 16 -> N x 20, or B x T x 1 x 80 x 16 -> B x T x 20 (all windows in one batch)."""
        return self.mapping(run_windows(self.audio_encoder, mel))
