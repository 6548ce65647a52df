"""Emotion cross-entropy of a read of a driver's code (ours, not in the paper: `model.loss.emotion`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class EmotionRead(nn.Module):
    """Linear read of a code (B x D) -> B x C logits, on the code standardised by running statistics.

    The standardisation keeps the read well conditioned whatever the code's scale (the motion code's
    emotion directions are small beside identity and pose: a plain linear read of them under Adam stays
    at chance, experiments/demo/README.md). Batch statistics would not do: at the CPU demo's batch of 2
    every standardised feature is +-1. The running mean and mean square are updated (without gradient)
    on every training batch, the first batch setting them outright; the read is an affine map of the code.
    """

    mean: torch.Tensor
    square: torch.Tensor
    batches: torch.Tensor

    def __init__(self, dim: int, classes: int, momentum: float = 0.05) -> None:
        super().__init__()
        self.momentum = momentum
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("square", torch.ones(dim))
        self.register_buffer("batches", torch.zeros((), dtype=torch.long))
        self.linear = nn.Linear(dim, classes)

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                k = max(self.momentum, 1.0 / float(self.batches + 1))
                self.mean.lerp_(code.mean(0), k)
                self.square.lerp_((code**2).mean(0), k)
                self.batches += 1
        std = (self.square - self.mean**2).clamp_min(1e-8).sqrt()
        return self.linear((code - self.mean) / std)


def emotion_cross_entropy(logits: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """Cross-entropy of B x C logits against the B labels (-1: unlabelled, ignored; 0 when none is)."""
    if labels is None:
        raise ValueError(
            "model.loss.emotion needs the clips' emotion labels in the batch (the shard DataModules add "
            "them for MEAD-style clips); set model.loss.emotion=0"
        )
    known = labels >= 0
    if not bool(known.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits[known], labels[known])


class PixelEmotionCritic(nn.Module):
    """A small CNN that reads the emotion from a frame (B x 3 x S x S in [-1, 1]) -> B x C logits.

    Ours (`model.loss.emotion_pixels` of the expression stage): the paper's expression stage scores its
    renders with a pretrained emotion network (FRNet, upstream `train/loss/FRNet.py`); on data with no
    pretrained emotion network this one learns the labels from the real targets during the stage, and
    the renders are scored with it (`pixel_emotion_terms`). Four stride-2 3x3 convolutions with
    GroupNorm (no batch statistics: the renders are read exactly as the real frames), a global average
    and a linear read. A different network from the evaluation's judge (a ResNet-18 trained apart).
    """

    def __init__(self, classes: int, width: int = 32, depth: int = 4) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for i in range(depth):
            cout = width * 2 ** min(i, 2)
            layers += [nn.Conv2d(cin, cout, 3, 2, 1), nn.GroupNorm(8, cout), nn.LeakyReLU(0.2)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.read = nn.Linear(cin, classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.read(self.features(image).mean((2, 3)))


def pixel_emotion_terms(
    critic: PixelEmotionCritic,
    real: torch.Tensor,
    real_labels: torch.Tensor | None,
    fake: torch.Tensor,
    fake_labels: torch.Tensor | None,
) -> torch.Tensor:
    """Cross-entropy of the critic on the real frames (trains the critic only: the frames carry no
    gradient) plus on the renders read with the critic's parameters held (trains the generator only).
    Under Adam the two parts' common weight leaves the critic's own step size unchanged."""
    from torch.func import functional_call

    held = {k: v.detach() for k, v in critic.named_parameters()}
    on_real = emotion_cross_entropy(critic(real.detach()), real_labels)
    on_fake = emotion_cross_entropy(functional_call(critic, held, (fake,)), fake_labels)
    return on_real + on_fake
