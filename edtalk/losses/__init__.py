"""Training losses: VGG pyramid perceptual, non-saturating GAN (+R1), latent consistency, mouth-region L1, emotion read, bank diagnostics."""

from edtalk.losses.adversarial import d_nonsaturating, g_nonsaturating, r1_penalty
from edtalk.losses.emotion import EmotionRead, PixelEmotionCritic, emotion_cross_entropy, pixel_emotion_terms
from edtalk.losses.latent import (
    coefficient_invariance,
    decorrelation,
    latent_consistency,
    linear_leak,
    random_similarity,
    standardised_invariance,
)
from edtalk.losses.orthogonality import bank_diagnostics
from edtalk.losses.perceptual import VGGPyramidLoss
from edtalk.losses.region import region_l1

__all__ = [
    "EmotionRead",
    "PixelEmotionCritic",
    "VGGPyramidLoss",
    "bank_diagnostics",
    "coefficient_invariance",
    "d_nonsaturating",
    "decorrelation",
    "emotion_cross_entropy",
    "g_nonsaturating",
    "latent_consistency",
    "linear_leak",
    "pixel_emotion_terms",
    "r1_penalty",
    "random_similarity",
    "region_l1",
    "standardised_invariance",
]
