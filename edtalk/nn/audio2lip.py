"""Audio-to-Mouth (paper Sec. 3.4, SPEC 4.2): mel windows -> the 20 mouth weights of the MLN bank.

The audio encoder is Wav2Lip's (`edtalk.nn.wav2lip`) and the head a single `Linear(512, 20)` called
`mapping`. State-dict keys equal the official `Audio2Lip.pt` (`audio_encoder.<i>.conv_block.{0,1}.*`,
`mapping.*`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from edtalk.config import SerializableConfig
from edtalk.nn.wav2lip import build_encoder, run_windows, wav2lip_audio_specs


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
