"""Emotion accuracy: video-level top-1 over the 8 MEAD emotions with a frozen emotion classifier."""

from __future__ import annotations

import torch

from metrics.base import MeanMetric
from metrics.functional.emotion import video_prediction


class EmotionAccuracy(MeanMetric):
    """`update(frame_logits T x 8 (or B x T x 8), label (or B labels))`: one item per video."""

    higher_is_better = True

    def values(self, logits: torch.Tensor, labels: torch.Tensor | int) -> torch.Tensor:
        """Per-video hits (1.0 / 0.0)."""
        pred = video_prediction(logits.detach().float()).reshape(-1)
        target = torch.as_tensor(labels, device=pred.device).reshape(-1)
        if pred.shape != target.shape:
            raise ValueError(f"{pred.numel()} video predictions but {target.numel()} labels")
        return (pred == target).double()

    def update(self, logits: torch.Tensor, labels: torch.Tensor | int) -> None:
        self._add(self.values(logits, labels))
