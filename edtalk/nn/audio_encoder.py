"""Per-frame audio encoder shared by our audio networks (`Audio2Pose`, `Audio2Exp`).

`AudioEncoder` maps mel windows to per-frame features: the Wav2Lip audio conv stack + a projection,
initialisable from a trained `Audio2Lip`'s encoder. Shapes: mel windows B x T x 1 x 80 x 16 (window t
centred on video frame t, `edtalk.mel.mel_windows`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from edtalk.nn.audio2lip import Audio2Lip
from edtalk.nn.wav2lip import build_encoder, run_windows, wav2lip_audio_specs


# -- shared pieces -----------------------------------------------------------------------------
@dataclass(frozen=True)
class AudioEncoderConfig:
    """Per-frame audio encoder.

    Attributes:
        channels: widths of the five Wav2Lip stages (the defaults equal Audio2Lip's encoder).
        residual: residual blocks per stage (Audio2Lip: 2, 2, 2, 1).
        dim: output feature size per frame.
    """

    channels: tuple[int, ...] = (32, 64, 128, 256, 512)
    residual: tuple[int, ...] = (2, 2, 2, 1)
    dim: int = 256

    @classmethod
    def tiny(cls) -> AudioEncoderConfig:
        return cls(channels=(4, 8, 8, 16, 16), residual=(1, 0, 0, 0), dim=16)


class AudioEncoder(nn.Module):
    """Mel windows -> per-frame features: B x T x 1 x 80 x 16 -> B x T x dim (or N x ... -> N x dim)."""

    def __init__(self, cfg: AudioEncoderConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or AudioEncoderConfig()
        if len(cfg.channels) != 5 or len(cfg.residual) != 4:
            raise ValueError(
                "AudioEncoderConfig needs 5 channels and 4 residual counts, "
                f"got {cfg.channels}, {cfg.residual}"
            )
        self.audio_encoder = build_encoder(1, wav2lip_audio_specs(cfg.channels, cfg.residual))
        self.project = nn.Sequential(nn.Linear(cfg.channels[-1], cfg.dim), nn.LeakyReLU(0.2))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.project(run_windows(self.audio_encoder, mel))

    def load_audio2lip(self, audio2lip: Audio2Lip) -> None:
        """Copy a trained Audio2Lip's (Wav2Lip) conv stack into this encoder (layouts must agree)."""
        self.audio_encoder.load_state_dict(audio2lip.audio_encoder.state_dict(), strict=True)


class TemporalBlock(nn.Module):
    """Residual dilated 1-D conv block over time: B x C x T -> B x C x T (replicate padding)."""

    def __init__(self, channels: int, dilation: int, kernel: int = 3) -> None:
        super().__init__()
        pad = dilation * (kernel - 1) // 2
        self.net = nn.Sequential(
            nn.Conv1d(channels, channels, kernel, padding=pad, dilation=dilation, padding_mode="replicate"),
            nn.LeakyReLU(0.2),
            nn.Conv1d(channels, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


def temporal_stack(channels: int, layers: int) -> nn.Sequential:
    """`layers` TemporalBlocks with dilations 1, 2, 4, ... (receptive field 2^(layers+1) - 1 frames)."""
    return nn.Sequential(*[TemporalBlock(channels, 2**i) for i in range(layers)])


def receptive_field(layers: int) -> int:
    """Frames seen by a `temporal_stack` of `layers` blocks (kernel 3, dilations 1..2^(layers-1))."""
    return 1 + 2 * (2**layers - 1) if layers > 0 else 1


def _check_mel(mel: torch.Tensor) -> None:
    if mel.ndim != 5 or tuple(mel.shape[2:]) != (1, 80, 16):
        raise ValueError(
            f"expected mel windows B x T x 1 x 80 x 16 (edtalk.mel.mel_windows per clip, stacked), "
            f"got {tuple(mel.shape)}"
        )


def _mean_over_frames(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """B x T x C -> B x C, averaging valid frames only (mask B x T, True = valid)."""
    if mask is None:
        return x.mean(1)
    w = mask.to(x.dtype)[:, :, None]
    return (x * w).sum(1) / w.sum(1).clamp_min(1.0)
