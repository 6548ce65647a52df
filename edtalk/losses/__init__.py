"""Training losses: VGG pyramid perceptual, non-saturating GAN (+R1), latent consistency, bank diagnostics."""

from edtalk.losses.adversarial import d_nonsaturating, g_nonsaturating, r1_penalty
from edtalk.losses.latent import decorrelation, latent_consistency
from edtalk.losses.orthogonality import bank_diagnostics
from edtalk.losses.perceptual import VGGPyramidLoss

__all__ = [
    "VGGPyramidLoss",
    "bank_diagnostics",
    "d_nonsaturating",
    "decorrelation",
    "g_nonsaturating",
    "latent_consistency",
    "r1_penalty",
]
