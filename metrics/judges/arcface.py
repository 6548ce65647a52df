"""ArcFace, the optional CSIM judge: insightface arcface_torch's iResNet-{18,34,50,100} (Deng et al. 2019).

Files load through the weight kind `arcface` (`KIND`); the depth is read from the file's keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from edtalk.weights.files import CheckpointError
from edtalk.weights.keymaps import KeyMap
from edtalk.weights.registry import Kind
from metrics.judges.base import FrozenJudge, plain_config, require_file
from metrics.judges.files import where

ARCFACE_DEPTHS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 14, 3), 100: (3, 13, 30, 3)}


class _IBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, eps=1e-5)
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout, eps=1e-5)
        self.prelu = nn.PReLU(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout, eps=1e-5)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout, eps=1e-5)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (x if self.downsample is None else self.downsample(x))


class ArcFace(FrozenJudge):
    """iResNet of insightface's arcface_torch: B x 3 x 112 x 112 in [-1, 1] -> B x 512.

    Inputs are faces aligned to ArcFace's 5-point template (`metrics.judges.crops.arcface_crops`).
    """

    def __init__(self, layers: tuple[int, int, int, int] = ARCFACE_DEPTHS[100], embed_dim: int = 512) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-5)
        self.prelu = nn.PReLU(64)
        widths, cin = (64, 128, 256, 512), 64
        for i, (n, cout) in enumerate(zip(layers, widths)):
            blocks = [_IBlock(cin if j == 0 else cout, cout, 2 if j == 0 else 1) for j in range(n)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            cin = cout
        self.bn2 = nn.BatchNorm2d(512, eps=1e-5)
        self.fc = nn.Linear(512 * 7 * 7, embed_dim)
        self.features = nn.BatchNorm1d(embed_dim, eps=1e-5)
        self.freeze()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
        return self.features(self.fc(self.bn2(x).flatten(1)))  # B x 512 x 7 x 7 -> B x 512

    @classmethod
    def from_file(cls, path: str | Path | None) -> ArcFace:
        """Load an arcface_torch `backbone.pth`; the depth is read from the number of blocks per stage."""
        from edtalk import weights

        path = require_file(path, "arcface")
        net = weights.load(path, "arcface")  # depth from the keys (`infer_arcface_config`), strict load
        return cast(ArcFace, net).freeze()  # type: ignore[return-value]


def infer_arcface_config(sd: Mapping[str, Any]) -> dict[str, Any]:
    """iResNet depth (blocks per stage, read from the keys) and embedding size of an arcface_torch file."""
    counts = tuple(len({k.split(".")[1] for k in sd if k.startswith(f"layer{i}.")}) for i in range(1, 5))
    if counts not in ARCFACE_DEPTHS.values():
        raise CheckpointError(f"block counts {counts} match no iResNet {sorted(ARCFACE_DEPTHS)}")
    return {"layers": list(counts), "embed_dim": int(sd["fc.weight"].shape[0])}


def _build(cfg: dict[str, Any]) -> nn.Module:
    return ArcFace(tuple(cfg["layers"]), int(cfg["embed_dim"]))


KIND = Kind(
    "arcface",
    "arcface",
    _build,
    plain_config(layers=list(ARCFACE_DEPTHS[100]), embed_dim=512),
    official=KeyMap(None, dead=()),
    infer_config=infer_arcface_config,
    looks_like=lambda obj: "layer1.0.bn1.weight" in obj and "fc.weight" in obj,
    where=where("arcface"),
)
