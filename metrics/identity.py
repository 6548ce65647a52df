"""CSIM: identity preservation as cosine similarity of face embeddings (source image vs generated frames)."""

from __future__ import annotations

import torch

from metrics.base import MeanMetric
from metrics.functional.identity import csim


class CSIM(MeanMetric):
    """Mean per-frame cosine similarity; `update(source_embedding D, frame_embeddings T x D)`.

    Embeddings come from `metrics.judges.DlibFace.embeddings` (128-d, ships) or `ArcFace` (512-d).
    """

    higher_is_better = True

    def values(self, source: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """Per-frame cosine similarity to the source (T,)."""
        return csim(source, frames)

    def update(self, source: torch.Tensor, frames: torch.Tensor) -> None:
        self._add(self.values(source, frames))
