"""Latent losses of the disentanglement stages.

`latent_consistency` is the Mouth-Pose decouple constraint (spec §5.2): a component latent obtained
from a mouth-swapped driver must point the same way as the one from the original frame,
L = sum_batch exp(-cos(d_cross, d_self)) per component (summed over the batch, as upstream).
`coefficient_invariance` (ours, not upstream) asks the same of the bank weights themselves, scale-free.
`decorrelation` is ||A_c^T B_c||_F^2 / D of batch-centred codes (upstream `discor`), used by the
expression stage to keep expression weights from re-encoding mouth/pose.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F


def latent_consistency(
    cross: torch.Tensor, self_: torch.Tensor, reduction: Literal["sum", "mean"] = "sum"
) -> torch.Tensor:
    """exp(-cos(cross_i, self_i)) over the batch; cross, self_: B x S. Minimum exp(-1) per sample."""
    value = torch.exp(-F.cosine_similarity(cross, self_, dim=1, eps=1e-8))
    return value.sum() if reduction == "sum" else value.mean()


def coefficient_invariance(cross: torch.Tensor, self_: torch.Tensor) -> torch.Tensor:
    """Squared difference of bank weights from a mouth-swapped driver and from the original frame, as a
    fraction of the weights' spread: mean |cross - self_|^2 / mean var_batch([cross; self_]).

    Not in the paper: a stronger form of its latent consistency. exp(-cos) of the component latents is
    scale-free and dominated by their mean direction, so a small pose-dependent part of the mouth weights
    survives it (and a linear probe reads it); this ratio is zero only when the weights do not change with
    what the swap changed. Scale-free too (no incentive to shrink or grow the weights). cross, self_: B x K.
    """
    spread = torch.cat([cross, self_]).var(0, unbiased=False).mean()
    return (cross - self_).pow(2).mean() / (spread + 1e-8)


def decorrelation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """||A_c^T B_c||_F^2 / B for batch-centred, unit-variance codes a: B x Da, b: B x Db (0 when B < 2)."""
    if a.shape[0] < 2:
        return a.new_zeros(())
    a = (a - a.mean(0)) / (a.std(0) + 1e-6)
    b = (b - b.mean(0)) / (b.std(0) + 1e-6)
    cross = a.t() @ b / a.shape[0]  # -> Da x Db correlation matrix
    return cross.pow(2).sum() / a.shape[1]
