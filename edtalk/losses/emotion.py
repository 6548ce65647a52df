"""Emotion cross-entropy of a read of a driver's code (ours, not in the paper: `model.loss.emotion`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class EmotionRead(nn.Module):
    """Linear read of a code (B x D) -> B x C logits, on the code standardised by running statistics.

    The standardisation keeps the read well conditioned whatever the code's scale (the motion code's
    emotion directions are small beside identity and pose: a plain linear read of them under Adam stays
    at chance, experiments/demo/README.md). Batch statistics would not do: at the CPU demo's batch of 2
    every standardised feature is +-1. The running mean and mean square are updated (without gradient)
    on every training batch, the first batch setting them outright; the read is an affine map of the code.
    """

    mean: torch.Tensor
    square: torch.Tensor
    batches: torch.Tensor

    def __init__(self, dim: int, classes: int, momentum: float = 0.05) -> None:
        super().__init__()
        self.momentum = momentum
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("square", torch.ones(dim))
        self.register_buffer("batches", torch.zeros((), dtype=torch.long))
        self.linear = nn.Linear(dim, classes)

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                k = max(self.momentum, 1.0 / float(self.batches + 1))
                self.mean.lerp_(code.mean(0), k)
                self.square.lerp_((code**2).mean(0), k)
                self.batches += 1
        std = (self.square - self.mean**2).clamp_min(1e-8).sqrt()
        return self.linear((code - self.mean) / std)


def emotion_cross_entropy(logits: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """Cross-entropy of B x C logits against the B labels (-1: unlabelled, ignored; 0 when none is)."""
    if labels is None:
        raise ValueError(
            "model.loss.emotion needs the clips' emotion labels in the batch (the shard DataModules add "
            "them for MEAD-style clips); set model.loss.emotion=0"
        )
    known = labels >= 0
    if not bool(known.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits[known], labels[known])
