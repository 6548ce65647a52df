"""Lip-sync expert (Wav2Lip `SyncNet_color`, SPEC 3.6): do 5 mouth frames and a mel window match?

Face encoder on 15 x 48 x 96 (5 RGB frames stacked on channels, the lower half of 96 x 96 face crops),
audio encoder on the 1 x 80 x 16 mel window of the same 5 frames; both give 512-d L2-normalised
embeddings whose cosine similarity is read as the in-sync probability. State-dict keys equal Wav2Lip's
expert checkpoint (`face_encoder.<i>.conv_block.*`, `audio_encoder.<i>.conv_block.*`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from edtalk.config import SerializableConfig
from edtalk.nn.wav2lip import ConvSpec, build_encoder, wav2lip_audio_specs

SYNC_FRAMES = 5
FACE_SHAPE = (3 * SYNC_FRAMES, 48, 96)
# Per-frame mel window t (edtalk.mel.mel_windows) covers video frames t-2 .. t+2.
WINDOW_CENTRE_OFFSET = SYNC_FRAMES // 2


def sync_window_index(first_frame: torch.Tensor | int) -> torch.Tensor | int:
    """Index of the per-frame mel window that covers video frames `first_frame` .. `first_frame + 4`.

    Window t of `edtalk.mel.mel_windows` starts at mel frame int(80 (t - 2) / 25), so window
    `first_frame + 2` starts at int(80 first_frame / 25): exactly Wav2Lip's `crop_audio_window` for the
    5 frames starting at `first_frame` (upstream EDTalk paired frames r..r+4 with window r, two frames early).
    """
    return first_frame + WINDOW_CENTRE_OFFSET


def gather_sync_windows(mel: torch.Tensor, first_frame: torch.Tensor) -> torch.Tensor:
    """The mel window matching each clip's 5 frames: mel B x T x 1 x 80 x 16, first_frame B -> B x 1 x 80 x 16."""
    if int(first_frame.max()) > mel.shape[1] - SYNC_FRAMES or int(first_frame.min()) < 0:
        raise ValueError(
            f"5-frame windows starting at {first_frame.tolist()} do not fit clips of {mel.shape[1]} frames; "
            f"first_frame must lie in [0, T - {SYNC_FRAMES}]"
        )
    idx = (first_frame + WINDOW_CENTRE_OFFSET).to(mel.device)
    return mel[torch.arange(mel.shape[0], device=mel.device), idx]


def face_specs(channels: Sequence[int] = (32, 64, 128, 256, 512)) -> list[ConvSpec]:
    """Wav2Lip face encoder layout: 48x96 -> 46x47 -> 23x24 -> 12x12 -> 6x6 -> 3x3 -> 1x1 (17 blocks)."""
    c0, c1, c2, c3, c4 = channels
    specs = [ConvSpec(c0, 7, 1, 3), ConvSpec(c1, 5, (1, 2), 1)]
    for ch, n_res in ((c1, 2), (c2, None), (c2, 3), (c3, None), (c3, 2), (c4, None), (c4, 2)):
        if n_res is None:
            specs.append(ConvSpec(ch, 3, 2, 1))
        else:
            specs.extend(ConvSpec(ch, 3, 1, 1, residual=True) for _ in range(n_res))
    specs.extend([ConvSpec(c4, 3, 2, 1), ConvSpec(c4, 3, 1, 0), ConvSpec(c4, 1, 1, 0)])
    return specs


@dataclass(frozen=True)
class SyncNetConfig(SerializableConfig):
    """Architecture of `SyncNet` (saved in checkpoints; Wav2Lip's expert is the default)."""

    channels: tuple[int, ...] = (32, 64, 128, 256, 512)


class SyncNet(nn.Module):
    """Lip-sync expert: (mel window, 5 lower-half face crops) -> two unit-length embeddings.

    Args:
        channels: widths of both encoders (Wav2Lip: 32, 64, 128, 256, 512; the last is the embedding size).
    """

    def __init__(self, channels: Sequence[int] = (32, 64, 128, 256, 512)) -> None:
        super().__init__()
        self.cfg = SyncNetConfig(tuple(int(c) for c in channels))
        self.face_encoder = build_encoder(FACE_SHAPE[0], face_specs(channels))
        self.audio_encoder = build_encoder(1, wav2lip_audio_specs(channels, residual=(2, 2, 2, 2)))

    def embed_audio(self, mel: torch.Tensor) -> torch.Tensor:
        """B x 1 x 80 x 16 -> B x C (L2-normalised)."""
        if mel.ndim != 4 or tuple(mel.shape[1:]) != (1, 80, 16):
            raise ValueError(
                f"SyncNet audio input must be B x 1 x 80 x 16 mel windows, got {tuple(mel.shape)}"
            )
        return F.normalize(self.audio_encoder(mel).flatten(1), p=2, dim=1)

    def embed_face(self, faces: torch.Tensor) -> torch.Tensor:
        """B x 15 x 48 x 96 (5 RGB frames, lower half of 96x96 crops) -> B x C (L2-normalised)."""
        if faces.ndim != 4 or tuple(faces.shape[1:]) != FACE_SHAPE:
            raise ValueError(
                "SyncNet face input must be B x 15 x 48 x 96 (5 frames' lower halves, use "
                f"stack_mouth_frames), got {tuple(faces.shape)}"
            )
        return F.normalize(self.face_encoder(faces).flatten(1), p=2, dim=1)

    def forward(self, mel: torch.Tensor, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (audio embedding B x C, face embedding B x C), as Wav2Lip's `SyncNet_color`."""
        return self.embed_audio(mel), self.embed_face(faces)


def stack_mouth_frames(crops: torch.Tensor) -> torch.Tensor:
    """B x 5 x 3 x 96 x 96 face crops -> B x 15 x 48 x 96 (lower halves, frames stacked on channels)."""
    if crops.ndim != 5 or crops.shape[1] != SYNC_FRAMES or tuple(crops.shape[2:]) != (3, 96, 96):
        raise ValueError(f"expected B x 5 x 3 x 96 x 96 face crops, got {tuple(crops.shape)}")
    lower = crops[:, :, :, 48:, :]  # -> B x 5 x 3 x 48 x 96
    return lower.reshape(crops.shape[0], FACE_SHAPE[0], 48, 96)
