"""Emotion-FAN (Meng et al., "Frame Attention Networks for Facial Expression Recognition in Videos",
ICIP 2019, Sec. 2): a ResNet-18 frame encoder with the self-attention (alpha) and relation-attention
(beta) pooling of frame features, the `self_relation-attention` variant with 8 MEAD classes that EAT and
EDTalk use as the judge of emotion accuracy (checkpoint `self_relation-attention_61_84.3655`).

Module names follow the released checkpoints (after their `module.` prefix is stripped), so such a file
loads strictly through the weight kind `emotion_fan` (`KIND`; `load_emotion_fan(path)`). It lives with
the judges, not in `edtalk.nn`, because nothing here trains it: it only scores results. The clip
prediction reproduces the evaluation arithmetic of the released code, including its quirk: the
relation-attention numerator weights the concatenated features by alpha only, the denominator by
alpha * beta (see `EmotionFAN.pool`).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edtalk.config import SerializableConfig
from edtalk.weights.keymaps import KeyMap
from edtalk.weights.registry import Kind
from metrics.judges.base import require_file
from metrics.judges.files import where

# Class order of the MEAD-finetuned Emotion-FAN (its `cate2label['MEAD']`).
EMOTION_FAN_LABELS = ("happy", "angry", "disgust", "fear", "sad", "neutral", "surprised", "contempt")


@dataclasses.dataclass(frozen=True)
class EmotionFANConfig(SerializableConfig):
    """Architecture of Emotion-FAN (the released file is the default)."""

    num_classes: int = 8
    layers: tuple[int, int, int, int] = (2, 2, 2, 2)


class _BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 convs, batch norm, identity or 1x1 projection shortcut)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class EmotionFAN(nn.Module):
    """Frame encoder + frame attention (alpha) + relation attention (beta) -> clip logits over 8 classes.

    `forward(frames)`: N x 3 x 224 x 224 frames of ONE clip with values in [0, 1] (torchvision
    `ToTensor`, no mean/std) -> 8 logits. `EMOTION_FAN_LABELS` names the classes.
    """

    def __init__(self, config: EmotionFANConfig | None = None) -> None:
        super().__init__()
        self.config = config or EmotionFANConfig()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 64
        for i, (n, cout) in enumerate(zip(self.config.layers, (64, 128, 256, 512))):
            stride = 1 if i == 0 else 2
            blocks = [_BasicBlock(cin if j == 0 else cout, cout, stride if j == 0 else 1) for j in range(n)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            cin = cout
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.alpha = nn.Sequential(nn.Linear(512, 1), nn.Sigmoid())
        self.beta = nn.Sequential(nn.Linear(1024, 1), nn.Sigmoid())
        self.pred_fc1 = nn.Linear(512, self.config.num_classes)  # self-attention head (unused here)
        self.pred_fc2 = nn.Linear(1024, self.config.num_classes)

    def frame_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """N x 3 x 224 x 224 in [0, 1] -> features f (N x 512) and frame attention alpha (N x 1)."""
        f = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(1, 5):
            f = getattr(self, f"layer{i}")(f)
        f = self.avgpool(f).flatten(1)  # N x 512 x 1 x 1 -> N x 512
        return f, self.alpha(f)

    def pool(self, f: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """Clip logits (8) from one clip's frame features f (N x 512) and alphas (N x 1).

        mean = sum alpha f / sum alpha; g_i = [f_i, mean] (N x 1024); beta_i = beta(g_i);
        logits = fc2(sum alpha_i g_i / sum alpha_i beta_i) -- the released evaluation code divides the
        alpha-weighted sum by the alpha*beta sum (a quirk we keep: it is what the judge was scored with).
        """
        mean = (f * alpha).sum(0, keepdim=True) / alpha.sum()
        g = torch.cat([f, mean.expand_as(f)], dim=1)  # N x 1024
        beta = self.beta(g)
        pooled = (g * alpha).sum(0) / (alpha * beta).sum()
        return self.pred_fc2(pooled)

    def forward(self, frames: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        if len(frames) == 0:
            raise ValueError("Emotion-FAN needs at least one face frame of the clip, got none")
        parts = [self.frame_features(frames[i : i + batch_size]) for i in range(0, len(frames), batch_size)]
        f = torch.cat([p[0] for p in parts])
        alpha = torch.cat([p[1] for p in parts])
        return self.pool(f, alpha)

    def train(self, mode: bool = True) -> EmotionFAN:
        return super().train(False)  # a judge: batch norm and dropout stay in eval mode

    def fused(self) -> EmotionFAN:
        """A copy for CPU inference: each batch norm folded into the convolution before it
        (`fuse_conv_bn_eval`: w * gamma / sqrt(var + eps), beta - mean * gamma / sqrt(var + eps)), weights
        channels-last. The same function in another float order: logits agree to ~1e-7 (about 15%
        faster than channels-last alone on one CPU thread). Feed it channels-last frames."""
        from torch.nn.utils.fusion import fuse_conv_bn_eval

        def fold(owner: nn.Module, conv: str, bn: str) -> None:
            setattr(owner, conv, fuse_conv_bn_eval(getattr(owner, conv), getattr(owner, bn)))
            setattr(owner, bn, nn.Identity())

        net = copy.deepcopy(self).eval()
        fold(net, "conv1", "bn1")
        for block in (b for i in range(1, 5) for b in getattr(net, f"layer{i}")):
            fold(block, "conv1", "bn1")
            fold(block, "conv2", "bn2")
            if block.downsample is not None:
                fold(block.downsample, "0", "1")  # nn.Sequential(conv, bn)
        return net.to(memory_format=torch.channels_last).requires_grad_(False)


def load_emotion_fan(path: str | Path | None) -> EmotionFAN:
    """The Emotion-FAN judge from EAT's `self_relation-attention_61_84.3655` (kind `emotion_fan`), frozen."""
    from edtalk.weights import load

    net = load(require_file(path, "emotion_fan"), kind="emotion_fan")  # fc.* dropped, module. stripped
    assert isinstance(net, EmotionFAN)
    return net.eval().requires_grad_(False)


def _looks_like(obj: Mapping[str, Any]) -> bool:
    """EAT's file: {epoch, state_dict (DDP `module.` prefixes), accuracy, name}."""
    return isinstance(obj.get("state_dict"), Mapping) and "module.pred_fc2.weight" in obj["state_dict"]


KIND = Kind(
    "emotion_fan",
    "emotion_fan",
    EmotionFAN,
    EmotionFANConfig.from_dict,
    # `module.` is stripped by the registry, `fc.*` (unused by the evaluation) dropped as EAT does
    official=KeyMap("state_dict", dead=(r"^fc\.",)),
    looks_like=_looks_like,
    where=where("emotion_fan"),
)
