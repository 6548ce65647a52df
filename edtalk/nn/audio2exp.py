"""Audio -> expression: OUR OWN design, not the paper's (SPEC 4.4; never released upstream).

The paper (Sec. 3.4) predicts expression from HuBERT speech-emotion features plus EmoBERTa text features
with modality masking; that network was not released. `Audio2Exp` is our simpler stand-in, named as
such in docs/recipes.md: an utterance-level audio feature (attention pooling over frames) -> the 10
expression weights of the ELN bank, plus logits over the 8 emotions as an auxiliary task.

The paper's input path is an option (`input="hubert"`): per-frame HuBERT features B x T x D, precomputed
by `edtalk extract-hubert` from a local checkpoint (`edtalk.nn.hubert`), replace our mel encoder; an
optional per-clip text vector B x D_text (`text_dim` > 0, e.g. an EmoBERTa embedding) is added to the
utterance feature, and `modality_mask` drops the audio or the text of a clip while training, as the
paper's modality masking does, so either alone still predicts at inference.

Shapes: mel windows B x T x 1 x 80 x 16 (or HuBERT features B x T x D), expression B x 10.
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
from edtalk.nn.emotion import FrameAttentionPool, emotion_anchor_table

# The loss weight that checkpoints written before it moved to the stage's `model.loss` carry in their
# network config (`Audio2ExpConfig.from_dict` drops it).
LOSS_KEYS = ("emotion_weight",)
INPUTS = ("mel", "hubert")
ANCHOR_PICKS = ("mix", "top")


@dataclass(frozen=True)
class Audio2ExpConfig(SerializableConfig):
    """Hyper-parameters of `Audio2Exp`.

    Attributes:
        exp_dim: expression-bank size (10).
        num_emotions: emotion classes of the auxiliary head (8 MEAD emotions).
        audio: the per-frame audio encoder.
        hidden: width of the temporal context and heads.
        context_layers: dilated temporal blocks before pooling.
        input: "mel" (our audio encoder over mel windows) or "hubert" (precomputed HuBERT features,
            the paper's input; `audio` is then unused).
        feature_dim: D of the HuBERT features (1024 for the large models, 768 for base).
        text_dim: width of the optional per-clip text vector (0: no text branch).
        modality_mask: while training, the probability of dropping a clip's audio, and (separately,
            never both) of dropping its text; only with text. At most 0.5.
        anchor: > 0 (ours): the expression weights are the emotion head's posterior mix of the emotions'
            anchors (`anchor` x the unit vector of each MEAD id, neutral zero; the expression stage's
            `model.exp_anchor`) and the network has no regression head; 0: the regression head's output.
        anchor_pick: with `anchor`, what the weights are at inference: "mix" (the posterior's mix of the
            anchors) or "top" (ours: the most probable emotion's anchor, as a clip of one emotion is drawn
            from our emotion vectors; training mixes either way, so the loss and its gradients are the same).

    The loss weight is not architecture: it is an argument of `Audio2Exp.loss` (the training stage's
    `model.loss.emotion`). Files written before it moved hold `emotion_weight` here; `from_dict` reads
    them and drops that key (`LOSS_KEYS`).
    """

    exp_dim: int = 10
    num_emotions: int = 8
    audio: AudioEncoderConfig = field(default_factory=AudioEncoderConfig)
    hidden: int = 256
    context_layers: int = 3
    input: str = "mel"
    feature_dim: int = 1024
    text_dim: int = 0
    modality_mask: float = 0.0
    anchor: float = 0.0
    anchor_pick: str = "mix"

    def __post_init__(self) -> None:
        if self.anchor_pick not in ANCHOR_PICKS:
            raise ValueError(
                f"Audio2ExpConfig.anchor_pick must be one of {ANCHOR_PICKS}, got {self.anchor_pick!r}"
            )
        if self.input not in INPUTS:
            raise ValueError(f"Audio2ExpConfig.input must be one of {INPUTS}, got {self.input!r}")
        if not 0.0 <= self.modality_mask <= 0.5:
            raise ValueError(f"Audio2ExpConfig.modality_mask must be in [0, 0.5], got {self.modality_mask}")
        if self.anchor > 0 and self.exp_dim < self.num_emotions:
            raise ValueError(
                f"Audio2ExpConfig.anchor mixes one anchor per emotion: exp_dim ({self.exp_dim}) must be >= "
                f"num_emotions ({self.num_emotions})"
            )

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
    """Speech -> utterance-level expression weights (+ emotion logits): our design, over mel windows or,
    with `input="hubert"`, over HuBERT features (+ a text vector) as the paper's input (the paper's
    network, with EmoBERTa text features and modality masking, is unreleased).

    Args:
        cfg: hyper-parameters; `Audio2ExpConfig.tiny()` for tests.
    """

    def __init__(self, cfg: Audio2ExpConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or Audio2ExpConfig()
        h = cfg.hidden
        hubert = cfg.input == "hubert"
        self.audio: nn.Module = nn.Identity() if hubert else AudioEncoder(cfg.audio)  # -> B x T x C
        self.audio_in = nn.Conv1d(cfg.feature_dim if hubert else cfg.audio.dim, h, 1)
        self.context = temporal_stack(h, cfg.context_layers)
        self.pool = FrameAttentionPool(h)
        self.exp_head: nn.Module | None = None
        if cfg.anchor > 0:  # the posterior's mix of the anchors (`anchors`)
            anchors = emotion_anchor_table(cfg.exp_dim, cfg.anchor, cfg.num_emotions)  # -> E x D
            self.register_buffer("anchors", anchors, persistent=False)
        else:
            self.exp_head = nn.Sequential(
                nn.Linear(2 * h, h), nn.ReLU(), nn.LayerNorm(h), nn.Linear(h, cfg.exp_dim)
            )
        self.emotion_head = nn.Sequential(nn.ReLU(), nn.Linear(2 * h, cfg.num_emotions))
        self.text_in = nn.Sequential(nn.Linear(cfg.text_dim, 2 * h), nn.ReLU()) if cfg.text_dim else None

    def forward(
        self, mel: torch.Tensor, mask: torch.Tensor | None = None, text: torch.Tensor | None = None
    ) -> ExpPrediction:
        """mel B x T x 1 x 80 x 16, or HuBERT features B x T x D with `input="hubert"` (mask B x T, True =
        valid frame; text B x D_text, optional) -> ExpPrediction(B x 10, B x 8)."""
        self._check_input(mel)
        feats = self.context(self.audio_in(self.audio(mel).transpose(1, 2)))  # -> B x H x T
        utterance = self.fuse(self.pool(feats.transpose(1, 2), mask), text)  # -> B x 2H
        logits = self.emotion_head(utterance)  # -> B x E
        if self.exp_head is None:  # anchors E x D, mixed by the posterior (top: its argmax's, at inference)
            post = logits.softmax(-1)
            if self.cfg.anchor_pick == "top" and not self.training:
                post = F.one_hot(post.argmax(-1), post.shape[-1]).to(post.dtype)
            return ExpPrediction(post @ self.anchors.to(logits.dtype), logits)
        return ExpPrediction(self.exp_head(utterance), logits)

    def _check_input(self, x: torch.Tensor) -> None:
        if self.cfg.input == "mel":
            _check_mel(x)
        elif x.ndim != 3 or x.shape[-1] != self.cfg.feature_dim:
            raise ValueError(
                f"this Audio2Exp reads HuBERT features B x T x {self.cfg.feature_dim} (input=hubert, from "
                f"`edtalk extract-hubert`), got shape {tuple(x.shape)}"
            )

    def fuse(self, audio: torch.Tensor, text: torch.Tensor | None) -> torch.Tensor:
        """Utterance feature B x 2H + the projected text vector (B x D_text -> B x 2H), with modality masking
        while training. Without text (None) the audio feature passes alone, as when its text was dropped."""
        if text is None:
            return audio
        if self.text_in is None:
            raise ValueError("text features given but this Audio2Exp has no text branch (text_dim=0)")
        words = self.text_in(text)
        if self.training and self.cfg.modality_mask > 0:
            u = torch.rand(audio.shape[0], 1, device=audio.device)  # one draw per clip: drop one or none
            p = self.cfg.modality_mask
            audio, words = audio * (u >= p), words * ((u < p) | (u >= 2 * p))
        return audio + words

    def loss(
        self,
        mel: torch.Tensor,
        exp: torch.Tensor,
        emotion: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        emotion_weight: float = 0.1,
        text: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Expression MSE (+ emotion cross-entropy) on a batch of clips.

        Args:
            mel: B x T x 1 x 80 x 16 mel windows.
            exp: targets, per frame B x T x 10 (averaged over valid frames) or per clip B x 10.
            emotion: optional B emotion ids (MEAD order).
            mask: optional B x T valid-frame mask.
            emotion_weight: weight of the emotion cross-entropy against the expression MSE.
            text: optional B x D_text per-clip text vectors (`text_dim` > 0).

        Returns:
            {"loss", "exp" (MSE), "emotion" (CE, 0 without labels), "accuracy", "pred" B x 10 (detached)}.
        """
        target = _mean_over_frames(exp, mask) if exp.ndim == 3 else exp
        out = self(mel, mask, text)
        mse = F.mse_loss(out.exp, target)
        zero = mse.new_zeros(())
        ce = F.cross_entropy(out.logits, emotion) if emotion is not None else zero
        acc = (out.logits.argmax(1) == emotion).to(mse.dtype).mean() if emotion is not None else zero
        total = mse + emotion_weight * ce
        return {"loss": total, "exp": mse, "emotion": ce, "accuracy": acc, "pred": out.exp.detach()}


__all__ = ["Audio2Exp", "Audio2ExpConfig", "ExpPrediction"]
