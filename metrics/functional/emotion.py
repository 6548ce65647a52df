"""Emotion accuracy: top-1 over the 8 MEAD emotions at video level, label parsed from the clip id."""

from __future__ import annotations

import torch

EMOTIONS = ("angry", "contempt", "disgusted", "fear", "happy", "neutral", "sad", "surprised")


def emotion_label(clip_id: str) -> int:
    """Label id from a MEAD/builtin clip id `<speaker>#<emotion>#<level>#<nnn>`."""
    parts = clip_id.split("#")
    if len(parts) < 2 or parts[1] not in EMOTIONS:
        raise ValueError(f"cannot read an emotion from clip id {clip_id!r}; expected '<spk>#<emotion>#...' ")
    return EMOTIONS.index(parts[1])


def video_prediction(frame_logits: torch.Tensor) -> torch.Tensor:
    """T x 8 (or B x T x 8) frame logits -> video-level class: argmax of the mean softmax over frames."""
    return frame_logits.softmax(-1).mean(-2).argmax(-1)


def accuracy(preds: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Fraction of equal entries (float64)."""
    return (preds == labels).double().mean()
