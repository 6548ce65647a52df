"""Latent losses of the disentanglement stages.

`latent_consistency` is the Mouth-Pose decouple constraint (spec §5.2): a component latent obtained
from a mouth-swapped driver must point the same way as the one from the original frame,
L = sum_batch exp(-cos(d_cross, d_self)) per component (summed over the batch, as upstream).
`coefficient_invariance` (ours, not upstream) asks the same of the bank weights themselves, scale-free.
`random_similarity` (ours) warps frames by a random in-plane rotation, per-axis scale and shift: the mouth
stage's `warp_invariance` asks the mouth weights not to change under it (a head that rolls or moves keeps
its mouth).
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


def standardised_invariance(cross: torch.Tensor, self_: torch.Tensor, floor: float = 0.01) -> torch.Tensor:
    """`coefficient_invariance` per dimension: mean over dimensions of mean |cross - self_|^2 / var_batch of
    that dimension (its variance floored at `floor` x the mean variance, so an unused dimension does not
    divide by ~0). A linear probe standardises every dimension before it reads a factor, so a small
    dimension that changes with the pose weighs as much as a large one; this ratio weighs it so too."""
    var = torch.cat([cross, self_]).var(0, unbiased=False)
    var = torch.maximum(var, floor * var.mean().detach())
    return ((cross - self_).pow(2).mean(0) / (var + 1e-8)).mean()


def decorrelation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """||A_c^T B_c||_F^2 / B for batch-centred, unit-variance codes a: B x Da, b: B x Db (0 when B < 2)."""
    if a.shape[0] < 2:
        return a.new_zeros(())
    a = (a - a.mean(0)) / (a.std(0) + 1e-6)
    b = (b - b.mean(0)) / (b.std(0) + 1e-6)
    cross = a.t() @ b / a.shape[0]  # -> Da x Db correlation matrix
    return cross.pow(2).sum() / a.shape[1]


def random_similarity(
    frames: torch.Tensor, roll: float, scale: float, shift: float, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each frame warped about the image centre by its own random rotation (uniform in +-`roll` degrees),
    per-axis scale (1 + uniform in +-`scale`) and shift (uniform in +-`shift` of the half-width), with
    border padding. frames: B x C x H x W (square). Returns the warped frames and the parameters drawn,
    B x 5: angle (degrees), scale x, scale y, shift x, shift y (normalised). All amplitudes 0 returns the
    frames themselves. `generator`, if given, lives on the frames' device.
    """
    b = frames.shape[0]
    if roll == 0 and scale == 0 and shift == 0:
        return frames, torch.cat([frames.new_zeros(b, 1), frames.new_ones(b, 2), frames.new_zeros(b, 2)], 1)

    def uniform(n: int) -> torch.Tensor:
        u = torch.rand(b, n, generator=generator, device=frames.device, dtype=frames.dtype)
        return 2 * u - 1

    angle = uniform(1)[:, 0] * roll
    s = 1 + uniform(2) * scale
    t = uniform(2) * shift
    rad = torch.deg2rad(angle)
    cos, sin = torch.cos(rad), torch.sin(rad)
    # theta maps output coordinates to input ones (normalised [-1, 1]); square frames keep angles true
    theta = torch.stack(
        [
            torch.stack([cos / s[:, 0], -sin / s[:, 0], t[:, 0]], 1),
            torch.stack([sin / s[:, 1], cos / s[:, 1], t[:, 1]], 1),
        ],
        1,
    )
    grid = F.affine_grid(theta, list(frames.shape), align_corners=False)
    warped = F.grid_sample(frames, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return warped, torch.cat([angle[:, None], s, t], 1)


def linear_leak(codes: torch.Tensor, nuisance: torch.Tensor, ridge: float = 0.1) -> torch.Tensor:
    """How much of a nuisance a ridge read-out of the codes explains within the batch (ours, not in the paper).

    A linear probe reads a factor from a group's weights however small its share of them, as long as it is
    consistent; ratios like `coefficient_invariance` shrink that share but do not remove it. This is the
    multivariate R² of the nuisance on the codes standardised per dimension (so it is unchanged by rescaling any
    code dimension, as a probe that standardises them), their correlations ridge-regularised:
    trace(S_nc (R_cc + ridge I)^-1 S_cn) / trace(S_nn), batch-centred, with gradient through every
    term, so it falls only when the codes stop predicting the nuisance (shrinking them, or cancelling a fixed
    read-out, does not pay; an online adversary with a queue did both, experiments/demo/README.md). Works below
    B = D thanks to the ridge. codes: B x D, nuisance: B x K (no gradient needed). In [0, 1).
    """
    if codes.shape[0] != nuisance.shape[0]:
        raise ValueError(f"linear_leak: {codes.shape[0]} codes vs {nuisance.shape[0]} nuisance rows")
    if codes.shape[0] < 2:
        return codes.new_zeros(())
    c = codes - codes.mean(0)
    c = c / (c.pow(2).mean(0).sqrt() + 1e-12)  # unit variance per dimension: ridge on the correlations
    n = (nuisance - nuisance.mean(0)).to(c.dtype).flatten(1)
    rows = c.shape[0]
    scc, scn = c.t() @ c / rows, c.t() @ n / rows
    eye = torch.eye(c.shape[1], dtype=c.dtype, device=c.device)
    explained = torch.trace(scn.t() @ torch.linalg.solve(scc + ridge * eye, scn))
    return explained / (n.pow(2).sum() / rows + 1e-12)
