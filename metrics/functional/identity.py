"""CSIM: cosine similarity between identity embeddings of the source image and generated frames."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def csim(source: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """Per-frame cosine similarity.

    Args:
        source: D or 1 x D embedding of the identity (source) image.
        frames: T x D embeddings of the generated frames.

    Returns:
        T float64 similarities in [-1, 1].
    """
    src = source.reshape(1, -1).double()
    if frames.ndim != 2 or frames.shape[1] != src.shape[1]:
        raise ValueError(f"frame embeddings must be T x {src.shape[1]}, got {tuple(frames.shape)}")
    return F.cosine_similarity(frames.double(), src.expand_as(frames), dim=1)
