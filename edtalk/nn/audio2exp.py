"""Audio -> expression: OUR OWN design, not the paper's (SPEC 4.4; never released upstream).

The paper (Sec. 3.4) predicts expression from HuBERT speech-emotion features plus EmoBERTa text features
with modality masking; that network was not released. `Audio2Exp` is our simpler stand-in, named as
such in docs/recipes.md: an utterance-level audio feature (attention pooling over frames) -> the 10
expression weights of the ELN bank, plus logits over the 8 emotions as an auxiliary task.

Shapes: mel windows B x T x 1 x 80 x 16, expression B x 10.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from edtalk.config import SerializableConfig, config_from_dict
from edtalk.nn.audio_encoder import (
    AudioEncoder,
    AudioEncoderConfig,
    _check_mel,
    _mean_over_frames,
    temporal_stack,
)
from edtalk.nn.emotion import FrameAttentionPool

# The loss weight that checkpoints written before it moved to the stage's `model.loss` carry in their
# network config (`Audio2ExpConfig.from_dict` drops it).
LOSS_KEYS = ("emotion_weight",)


@dataclass(frozen=True)
class Audio2ExpConfig(SerializableConfig):
    """Hyper-parameters of `Audio2Exp`.

    Attributes:
        exp_dim: expression-bank size (10).
        num_emotions: emotion classes of the auxiliary head (8 MEAD emotions).
        audio: the per-frame audio encoder.
        hidden: width of the temporal context and heads.
        context_layers: dilated temporal blocks before pooling.

    The loss weight is not architecture: it is an argument of `Audio2Exp.loss` (the training stage's
    `model.loss.emotion`). Files written before it moved hold `emotion_weight` here; `from_dict` reads
    them and drops that key (`LOSS_KEYS`).
    """

    exp_dim: int = 10
    num_emotions: int = 8
    audio: AudioEncoderConfig = field(default_factory=AudioEncoderConfig)
    hidden: int = 256
    context_layers: int = 3

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Audio2ExpConfig:
        """As `SerializableConfig.from_dict`, ignoring the loss weight older files stored here."""
        out: Audio2ExpConfig = config_from_dict(cls, {k: v for k, v in d.items() if k not in LOSS_KEYS})
        return out

    @classmethod
    def tiny(cls) -> Audio2ExpConfig:
        return cls(audio=AudioEncoderConfig.tiny(), hidden=16, context_layers=1)


class ExpPrediction(NamedTuple):
    """Output of `Audio2Exp`: expression weights B x exp_dim and emotion logits B x num_emotions."""

    exp: torch.Tensor
    logits: torch.Tensor


class Audio2Exp(nn.Module):
    """Speech -> utterance-level expression weights (+ emotion logits): our mel-only design (the paper
    uses HuBERT speech-emotion and EmoBERTa text features with modality masking, unreleased).

    Args:
        cfg: hyper-parameters; `Audio2ExpConfig.tiny()` for tests.
    """

    def __init__(self, cfg: Audio2ExpConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or Audio2ExpConfig()
        h = cfg.hidden
        self.audio = AudioEncoder(cfg.audio)
        self.audio_in = nn.Conv1d(cfg.audio.dim, h, 1)
        self.context = temporal_stack(h, cfg.context_layers)
        self.pool = FrameAttentionPool(h)
        self.exp_head = nn.Sequential(
            nn.Linear(2 * h, h), nn.ReLU(), nn.LayerNorm(h), nn.Linear(h, cfg.exp_dim)
        )
        self.emotion_head = nn.Sequential(nn.ReLU(), nn.Linear(2 * h, cfg.num_emotions))

    def forward(self, mel: torch.Tensor, mask: torch.Tensor | None = None) -> ExpPrediction:
        """mel B x T x 1 x 80 x 16 (mask B x T, True = valid frame) -> ExpPrediction(B x 10, B x 8)."""
        _check_mel(mel)
        feats = self.context(self.audio_in(self.audio(mel).transpose(1, 2)))  # -> B x H x T
        utterance = self.pool(feats.transpose(1, 2), mask)  # -> B x 2H
        return ExpPrediction(self.exp_head(utterance), self.emotion_head(utterance))

    def loss(
        self,
        mel: torch.Tensor,
        exp: torch.Tensor,
        emotion: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        emotion_weight: float = 0.1,
    ) -> dict[str, torch.Tensor]:
        """Expression MSE (+ emotion cross-entropy) on a batch of clips.

        Args:
            mel: B x T x 1 x 80 x 16 mel windows.
            exp: targets, per frame B x T x 10 (averaged over valid frames) or per clip B x 10.
            emotion: optional B emotion ids (MEAD order).
            mask: optional B x T valid-frame mask.
            emotion_weight: weight of the emotion cross-entropy against the expression MSE.

        Returns:
            {"loss", "exp" (MSE), "emotion" (CE, 0 without labels), "accuracy", "pred" B x 10 (detached)}.
        """
        target = _mean_over_frames(exp, mask) if exp.ndim == 3 else exp
        out = self(mel, mask)
        mse = F.mse_loss(out.exp, target)
        zero = mse.new_zeros(())
        ce = F.cross_entropy(out.logits, emotion) if emotion is not None else zero
        acc = (out.logits.argmax(1) == emotion).to(mse.dtype).mean() if emotion is not None else zero
        total = mse + emotion_weight * ce
        return {"loss": total, "exp": mse, "emotion": ce, "accuracy": acc, "pred": out.exp.detach()}


__all__ = ["Audio2Exp", "Audio2ExpConfig", "ExpPrediction"]
