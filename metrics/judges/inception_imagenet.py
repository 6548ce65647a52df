"""torchvision's ImageNet InceptionV3 as EAT's FID uses it (`--protocol eat`), kind `inception_v3_imagenet`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from edtalk.weights.keymaps import KeyMap
from edtalk.weights.registry import Kind
from metrics.judges.base import require_file
from metrics.judges.files import where

if TYPE_CHECKING:
    from torchvision.models import Inception3


def _inception_v3(cfg: Any = None) -> Inception3:
    from torchvision.models import inception_v3

    return inception_v3(weights=None, aux_logits=True, transform_input=True, init_weights=False)


class InceptionImageNet(nn.Module):
    """torchvision's ImageNet InceptionV3 as EAT's FID uses it: N x 3 x 299 x 299 in [0, 1] -> N x 2048.

    The input is mapped to [-1, 1] and through the network's own `transform_input` (set for the
    ImageNet weights); features are Mixed_7c averaged over space. Weights come from a local file in
    torchvision's state-dict layout (kind `inception_v3_imagenet`).
    """

    feature = "2048"

    def __init__(self) -> None:
        super().__init__()
        self.net = _inception_v3()
        self.requires_grad_(False).eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net = self.net
        x = net._transform_input(x * 2 - 1)
        for name in (
            "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1",
            "Conv2d_4a_3x3", "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b",
            "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c",
        ):  # fmt: skip
            x = getattr(net, name)(x)
        return x.mean(dim=(2, 3))  # N x 2048 x 8 x 8 -> N x 2048

    def train(self, mode: bool = True) -> InceptionImageNet:
        return super().train(False)

    @classmethod
    def from_file(cls, path: str | Path | None) -> InceptionImageNet:
        """Strictly load a torchvision InceptionV3 state dict (kind `inception_v3_imagenet`)."""
        from edtalk.weights import load

        path = require_file(path, "inception_v3_imagenet")
        model = cls()
        model.net = load(path, kind="inception_v3_imagenet")
        return model.requires_grad_(False).eval()


KIND = Kind(
    "inception_v3_imagenet",
    "inception_v3_imagenet",
    _inception_v3,
    lambda d: dict(d),
    official=KeyMap(None, dead=(), unmapped=(r"num_batches_tracked$",)),
    looks_like=lambda obj: "Mixed_7c.branch_pool.conv.weight" in obj and "AuxLogits.fc.weight" in obj,
    where=where("inception_v3_imagenet"),
)
