"""LPIPS v0.1 (Zhang et al. 2018) with an AlexNet trunk: the LPIPS judge.

The trunk loads from torchvision's AlexNet file through the weight kind `alexnet` (`KIND`); the five
linear layers come from `lpips/weights/v0.1/alex.pth`, which ships inside the `lpips` package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from edtalk.weights.keymaps import KeyMap
from edtalk.weights.kinds import conv1_kernel
from edtalk.weights.registry import Kind
from metrics.judges.base import FrozenJudge, JudgeWeightsMissing, load_state, plain_config, require_file
from metrics.judges.files import judge_file, where

LPIPS_TAPS = (1, 4, 7, 9, 11)  # ReLU outputs of torchvision AlexNet.features used by LPIPS
LPIPS_CHANNELS = (64, 192, 384, 256, 256)


class LPIPSAlex(FrozenJudge):
    """LPIPS v0.1, AlexNet trunk: distance of B x 3 x H x W pairs in [-1, 1] -> B."""

    def __init__(self) -> None:
        super().__init__()
        from torchvision.models import alexnet

        self.features = alexnet(weights=None).features[: LPIPS_TAPS[-1] + 1]
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in LPIPS_CHANNELS)
        self.shift: torch.Tensor
        self.scale: torch.Tensor
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188])[None, :, None, None])
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450])[None, :, None, None])
        self.freeze()

    def taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Unit-normalised trunk activations at the five LPIPS layers."""
        x = (x - self.shift) / self.scale
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in LPIPS_TAPS:
                out.append(x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))
        return out

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        total = a.new_zeros(a.shape[0])
        for lin, fa, fb in zip(self.lins, self.taps(a), self.taps(b)):
            total = total + lin((fa - fb).pow(2)).mean(dim=(1, 2, 3))
        return total

    @classmethod
    def from_files(cls, alexnet_path: str | Path | None, lin_path: str | Path | None = None) -> LPIPSAlex:
        """Trunk from a torchvision AlexNet state dict; linear layers from `lpips`'s shipped `alex.pth`."""
        from edtalk import weights

        alexnet_path = require_file(alexnet_path, "alexnet")
        net = cast(LPIPSAlex, weights.load(alexnet_path, "alexnet"))  # the trunk; lins below
        lin_state = load_state(Path(lin_path) if lin_path else lpips_linear_file())
        net.lins.load_state_dict(
            {k.replace("lin", "", 1).replace(".model.1", ""): v for k, v in lin_state.items()}
        )
        return net.freeze()  # type: ignore[return-value]


def lpips_linear_file() -> Path:
    """`lpips/weights/v0.1/alex.pth` inside the installed `lpips` package (ships with it)."""
    path = judge_file("lpips_linear").path()
    if path is None:
        raise JudgeWeightsMissing(f"the `lpips` package is not installed; {where('lpips_linear')}")
    return path


def _build(cfg: dict[str, Any]) -> nn.Module:
    return LPIPSAlex()


KIND = Kind(
    "alexnet",
    "lpips_alex",
    _build,
    plain_config(),
    official=KeyMap(None, dead=(r"^classifier\.",), unmapped=(r"^lins\.", r"^shift$", r"^scale$")),
    looks_like=lambda obj: conv1_kernel(obj) == 11,
    where=where("alexnet"),
)
