"""Expression-aware module EEM (paper Sec. 3.3): AdaIN of the source features by the expression latent e.

The released block also computes a conv1/AdaIN_1 branch whose result it overwrites; that branch is
dead compute and is not built here (its checkpoint weights are dropped by `edtalk.weights`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edtalk.nn.layers import at_least_float32, float32_region


class AdaIN(nn.Module):
    """InstanceNorm(x) * (1 + gamma(e)) + beta(e), with gamma, beta from a 1-hidden-layer ReLU MLP."""

    def __init__(self, channels: int, latent_dim: int, hidden: int = 128) -> None:
        super().__init__()
        self.mlp_shared = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU())
        self.mlp_gamma = nn.Linear(hidden, channels)
        self.mlp_beta = nn.Linear(hidden, channels)

    def affine(self, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(gamma, beta), each B x C x 1 x 1, from e: B x S."""
        actv = self.mlp_shared(e)
        return self.mlp_gamma(actv)[:, :, None, None], self.mlp_beta(actv)[:, :, None, None]

    def modulate(self, normed: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """normed: instance-normalised B x C x H x W (or batch 1), e: B x S."""
        gamma, beta = self.affine(e)
        return normed * (1 + gamma) + beta

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """x: B x C x H x W, e: B x S (or 1 x S, broadcast)."""
        return self.modulate(F.instance_norm(x), e)


class EEM(nn.Module):
    """x + AdaIN(conv3x3(x), e); identity when no expression latent is given."""

    def __init__(self, channels: int, latent_dim: int, hidden: int = 128) -> None:
        super().__init__()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm2 = AdaIN(channels, latent_dim, hidden)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """The expression-independent part, InstanceNorm(conv3x3(x)): computed once per source.

        EEM runs in float32 under bf16 autocast (prepare once per source; modulate is elementwise):
        bf16 here costs ~2 dB PSNR on the parity weights for no speed.
        """
        with float32_region(x):
            out = F.instance_norm(self.conv2(at_least_float32(x)))
        if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            out = out.contiguous(memory_format=torch.channels_last)
        return out

    def modulate(self, x: torch.Tensor, normed: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """x + normed * (1 + gamma(e)) + beta(e); x/normed may have batch 1 and broadcast over e."""
        with float32_region(x):
            gamma, beta = self.norm2.affine(at_least_float32(e))
            x, normed = at_least_float32(x), at_least_float32(normed)
            # x + normed * (1 + gamma) + beta, in two passes
            return torch.addcmul(x + beta, normed, 1 + gamma)

    def forward(self, x: torch.Tensor, e: torch.Tensor | None) -> torch.Tensor:
        if e is None:
            return x
        return self.modulate(x, self.prepare(x), e)
