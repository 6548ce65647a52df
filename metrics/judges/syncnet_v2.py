"""SyncNet v2, the LSE-D / LSE-C judge: the `S` network of syncnet_python (Chung & Zisserman 2016).

Module names are those of `syncnet_v2.model`, so the file loads strictly through the weight kind
`syncnet_v2` (`KIND`, registered by `metrics.judges`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from torch import Tensor, nn

from edtalk.weights.keymaps import KeyMap
from edtalk.weights.registry import Kind
from metrics.judges.base import FrozenJudge, plain_config, require_file
from metrics.judges.files import where


def _bn_relu(conv: nn.Module, ch: int, bn: type[nn.Module]) -> list[nn.Module]:
    return [conv, bn(ch), nn.ReLU(inplace=True)]


def _fc(out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, out_dim))


class SyncNetV2(FrozenJudge):
    """The `S` network of syncnet_python, same module names as `syncnet_v2.model`.

    Audio: B x 1 x 13 x 20 MFCC windows (0.2 s) -> B x 1024. Lips: B x 3 x 5 x 224 x 224 BGR frames with
    raw 0..255 values (syncnet_python does not normalise) -> B x 1024.
    """

    def __init__(self, embed_dim: int = 1024) -> None:
        super().__init__()
        b2, b3 = nn.BatchNorm2d, nn.BatchNorm3d
        self.netcnnaud = nn.Sequential(
            *_bn_relu(nn.Conv2d(1, 64, 3, 1, 1), 64, b2),
            nn.MaxPool2d((1, 1), (1, 1)),
            *_bn_relu(nn.Conv2d(64, 192, 3, 1, 1), 192, b2),
            nn.MaxPool2d((3, 3), (1, 2)),
            *_bn_relu(nn.Conv2d(192, 384, 3, padding=1), 384, b2),
            *_bn_relu(nn.Conv2d(384, 256, 3, padding=1), 256, b2),
            *_bn_relu(nn.Conv2d(256, 256, 3, padding=1), 256, b2),
            nn.MaxPool2d((3, 3), (2, 2)),
            nn.Conv2d(256, 512, (5, 4)),
            nn.BatchNorm2d(512),
            nn.ReLU(),
        )
        self.netfcaud = _fc(embed_dim)
        self.netfclip = _fc(embed_dim)
        self.netcnnlip = nn.Sequential(
            *_bn_relu(nn.Conv3d(3, 96, (5, 7, 7), (1, 2, 2), 0), 96, b3),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
            *_bn_relu(nn.Conv3d(96, 256, (1, 5, 5), (1, 2, 2), (0, 1, 1)), 256, b3),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
            *_bn_relu(nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), 256, b3),
            *_bn_relu(nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), 256, b3),
            *_bn_relu(nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), 256, b3),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
            *_bn_relu(nn.Conv3d(256, 512, (1, 6, 6)), 512, b3),
        )
        self.freeze()

    def forward_aud(self, mfcc: Tensor) -> Tensor:
        """mfcc: B x 1 x 13 x 20 -> B x 1024."""
        mid = self.netcnnaud(mfcc).flatten(1)  # -> B x 512
        return self.netfcaud(mid)

    def forward_lip(self, frames: Tensor) -> Tensor:
        """frames: B x 3 x 5 x 224 x 224 (BGR, 0..255) -> B x 1024."""
        mid = self.netcnnlip(frames).flatten(1)  # -> B x 512
        return self.netfclip(mid)

    @classmethod
    def from_file(cls, path: str | Path | None) -> SyncNetV2:
        """Load syncnet_python's `syncnet_v2.model` (a state dict with these module names)."""
        from edtalk import weights

        path = require_file(path, "syncnet_v2")
        try:
            net = weights.load(path, "syncnet_v2")  # every key and shape checked
        except weights.CheckpointError as err:
            raise ValueError(f"{path} is not a syncnet_v2.model state dict: {err}") from err
        return cast(SyncNetV2, net).freeze()  # type: ignore[return-value]


def _build(cfg: dict[str, Any]) -> nn.Module:
    return SyncNetV2(int(cfg["embed_dim"]))


KIND = Kind(
    "syncnet_v2",
    "syncnet_v2",
    _build,
    plain_config(embed_dim=1024),
    official=KeyMap(None, dead=(), unmapped=(r"num_batches_tracked$",)),
    looks_like=lambda obj: "netcnnaud.0.weight" in obj,
    where=where("syncnet_v2"),
)
