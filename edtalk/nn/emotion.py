"""Video-level emotion classifier: the judge behind the emotion-accuracy metric (Emotion-FAN style).

Each frame goes through a CNN frame encoder; the clip feature comes from Emotion-FAN's two-stage
attention pooling (Meng et al., ICIP 2019): self-attention weights alpha_i = sigmoid(w_a . f_i) give a
coarse clip feature f' = sum alpha_i f_i / sum alpha_i; relation-attention weights
beta_i = sigmoid(w_b . [f_i; f']) then give f = sum alpha_i beta_i [f_i; f'] / sum alpha_i beta_i,
which a linear layer maps to the 8 MEAD emotion logits (angry 0, contempt 1, disgusted 2, fear 3,
happy 4, neutral 5, sad 6, surprised 7).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from edtalk.config import SerializableConfig
from edtalk.nn.layers import ConvLayer, ResBlock

EMOTIONS = ("angry", "contempt", "disgusted", "fear", "happy", "neutral", "sad", "surprised")


def emotion_anchor_table(dim: int, scale: float, count: int = len(EMOTIONS)) -> torch.Tensor:
    """count x dim: row k is `scale` x the unit vector k (MEAD order), the neutral row zero: each emotion's
    anchor in the expression weights (`model.exp_anchor` of the expression and audio2exp stages)."""
    table = torch.zeros(count, dim)
    for k in range(count):
        if k >= len(EMOTIONS) or EMOTIONS[k] != "neutral":
            table[k, k] = scale
    return table


@dataclass(frozen=True)
class EmotionClassifierConfig(SerializableConfig):
    """Hyper-parameters of `EmotionClassifier`.

    Attributes:
        num_classes: number of emotion labels (8 MEAD emotions).
        input_size: frames are resized to this side before the frame encoder.
        backbone: "conv" (our StyleGAN2 residual blocks, `channels`) or "resnet18" (torchvision,
            random init; no weights are downloaded).
        channels: conv backbone widths: a 3x3 stem, then one 2x-downsampling ResBlock per further entry.
        dim: frame feature size.
        dropout: dropout before the classifier.
    """

    num_classes: int = 8
    input_size: int = 112
    backbone: Literal["conv", "resnet18"] = "conv"
    channels: tuple[int, ...] = (32, 64, 128, 256, 256)
    dim: int = 256
    dropout: float = 0.2

    @classmethod
    def tiny(cls) -> EmotionClassifierConfig:
        """A few-channel classifier for tests and debug runs."""
        return cls(input_size=32, channels=(4, 8, 16), dim=16, dropout=0.0)


def masked_weights(weights: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Zero the weights of padded frames: B x T (x 1) weights, B x T bool mask (True = valid)."""
    if mask is None:
        return weights
    if mask.shape != weights.shape[:2]:
        raise ValueError(f"mask must be B x T = {tuple(weights.shape[:2])}, got {tuple(mask.shape)}")
    return weights * mask.to(weights.dtype).view(*mask.shape, *([1] * (weights.ndim - 2)))


class FrameAttentionPool(nn.Module):
    """Emotion-FAN self- + relation-attention pooling: B x T x D frame features -> B x 2D clip feature."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.self_attention = nn.Linear(dim, 1)
        self.relation_attention = nn.Linear(2 * dim, 1)

    def forward(self, feats: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """feats: B x T x D, mask: B x T (True = valid frame) -> B x 2D."""
        alpha = masked_weights(torch.sigmoid(self.self_attention(feats)), mask)  # -> B x T x 1
        coarse = (alpha * feats).sum(1) / alpha.sum(1).clamp_min(1e-6)  # -> B x D
        paired = torch.cat([feats, coarse[:, None].expand_as(feats)], dim=2)  # -> B x T x 2D
        beta = torch.sigmoid(self.relation_attention(paired))  # -> B x T x 1
        w = alpha * beta
        return (w * paired).sum(1) / w.sum(1).clamp_min(1e-6)  # -> B x 2D


class ConvFrameEncoder(nn.Module):
    """3x3 stem + 2x-downsampling residual blocks + global average pool: N x 3 x S x S -> N x C."""

    def __init__(self, channels: tuple[int, ...]) -> None:
        super().__init__()
        blocks: list[nn.Module] = [ConvLayer(3, channels[0], 3)]
        blocks += [ResBlock(c_in, c_out) for c_in, c_out in itertools.pairwise(channels)]
        self.blocks = nn.Sequential(*blocks)
        self.out_dim = channels[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x).mean(dim=(2, 3))


def _resnet18() -> tuple[nn.Module, int]:
    from torchvision.models import resnet18

    net = resnet18(weights=None)
    out_dim = net.fc.in_features
    net.fc = nn.Identity()
    return net, out_dim


class EmotionClassifier(nn.Module):
    """Frames of a clip -> emotion logits (Emotion-FAN protocol).

    Args:
        cfg: hyper-parameters; `EmotionClassifierConfig.tiny()` for tests.
    """

    def __init__(self, cfg: EmotionClassifierConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or EmotionClassifierConfig()
        if cfg.backbone == "conv":
            self.backbone: nn.Module = ConvFrameEncoder(cfg.channels)
            out_dim = cfg.channels[-1]
        elif cfg.backbone == "resnet18":
            self.backbone, out_dim = _resnet18()
        else:
            raise ValueError(
                f"EmotionClassifierConfig.backbone must be 'conv' or 'resnet18', got {cfg.backbone!r}"
            )
        self.project = nn.Sequential(nn.Linear(out_dim, cfg.dim), nn.LeakyReLU(0.2))
        self.pool = FrameAttentionPool(cfg.dim)
        self.dropout = nn.Dropout(cfg.dropout)
        self.classifier = nn.Linear(2 * cfg.dim, cfg.num_classes)

    def frame_features(self, frames: torch.Tensor) -> torch.Tensor:
        """B x T x 3 x S x S frames in [-1, 1] -> B x T x dim."""
        if frames.ndim != 5 or frames.shape[2] != 3:
            raise ValueError(
                f"EmotionClassifier expects frames B x T x 3 x H x W in [-1, 1], got {tuple(frames.shape)}"
            )
        b = frames.shape[0]
        x = rearrange(frames, "b t c h w -> (b t) c h w")
        size = self.cfg.input_size
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        feats = self.project(self.backbone(x))  # -> (B*T) x dim
        return rearrange(feats, "(b t) d -> b t d", b=b)

    def forward(self, frames: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Emotion logits.

        Args:
            frames: B x T x 3 x S x S in [-1, 1] (any S; resized to `cfg.input_size`).
            mask: optional B x T bool, True for valid (non-padded) frames.

        Returns:
            B x num_classes logits.
        """
        clip = self.pool(self.frame_features(frames), mask)  # -> B x 2 dim
        return self.classifier(self.dropout(clip))
