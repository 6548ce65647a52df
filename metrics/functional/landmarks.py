"""M-LMD / F-LMD: landmark distance between generated and ground-truth frames (EAT's MEAD protocol).

Per frame each landmark set is mean-centred (removes global translation), then the Euclidean point
distances are summed over points and frames and divided by (frames x points): one value per video;
the dataset value is the mean over videos. Mouth = the 20 points 48..67 of the 68-point layout.
"""

from __future__ import annotations

import torch

MOUTH = slice(48, 68)


def lmd(preds: torch.Tensor, target: torch.Tensor, region: str = "mouth") -> torch.Tensor:
    """Landmark distance of one video.

    Args:
        preds, target: T x 68 x 2 landmark arrays (pixels) of generated and ground-truth frames.
        region: "mouth" (M-LMD, points 48..67) or "face" (F-LMD, all 68).

    Returns:
        scalar float64 tensor.
    """
    if preds.shape != target.shape or preds.ndim != 3 or preds.shape[-2:] != (68, 2):
        raise ValueError(
            f"expected two T x 68 x 2 landmark arrays, got {tuple(preds.shape)} and {tuple(target.shape)}"
        )
    if region not in ("mouth", "face"):
        raise ValueError(f"region must be 'mouth' or 'face', got {region!r}")
    p, t = preds.double(), target.double()
    if region == "mouth":
        p, t = p[:, MOUTH], t[:, MOUTH]
    p = p - p.mean(1, keepdim=True)
    t = t - t.mean(1, keepdim=True)
    return (p - t).norm(dim=-1).sum() / (p.shape[0] * p.shape[1])
