"""Non-saturating GAN losses (spec §5.0) and the R1 gradient penalty (StyleGAN2, optional)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def g_nonsaturating(fake_logits: torch.Tensor) -> torch.Tensor:
    """Generator loss mean(softplus(-D(fake)))."""
    return F.softplus(-fake_logits).mean()


def d_nonsaturating(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator loss mean(softplus(-D(real))) + mean(softplus(D(fake)))."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def r1_penalty(real_logits: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """R1 = E ||d D(x) / d x||^2 over real images `real` (which must require grad), per-sample sum, batch mean."""
    (grad,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()
