"""VGG19 pyramid perceptual loss (spec §5.0; FOMM/LIA `VGGLoss`).

Images are clamped to [-1, 1], downsampled to scales (1, 1/2, 1/4, 1/8) with an anti-aliasing
Gaussian, ImageNet-normalised and passed through VGG19 up to relu5_1; the loss is
sum_scales sum_layers w_l * mean |phi_l(x) - phi_l(y)| with w_l = 10 (targets carry no gradient).

Weights come from a local torchvision VGG19 file (`vgg19-dcbb9e9d.pth`): nothing is downloaded at run
time. `init="random"` (with a reduced `width`) gives the same computation with random weights, for
tests and debug runs only.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from edtalk.nn.vgg import VGG19_FILE, VGG19_URL, vgg19_features

__all__ = ["VGG19_FILE", "VGG19_URL", "VGGPyramidLoss", "vgg19_features"]  # the network: edtalk.nn.vgg

# Indices (in torchvision's `features`) after which relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 are taken.
_TAPS = (1, 6, 11, 20, 29)
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


def default_vgg_paths() -> list[Path]:
    """Where a local VGG19 file is looked for when no path is configured."""
    paths = []
    if os.environ.get("EDTALK_VGG19"):
        paths.append(Path(os.environ["EDTALK_VGG19"]))
    paths.append(Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILE)
    return paths


def resolve_vgg_path(path: str | Path | None) -> Path:
    """The VGG19 weight file to use, or a FileNotFoundError saying where to put it."""
    candidates = [Path(path)] if path else default_vgg_paths()
    for cand in candidates:
        if cand.is_file():
            return cand
    where = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(
        f"VGG19 weights for the perceptual loss not found (looked at {where}). Download {VGG19_URL} and "
        f"set model.perceptual.path=/path/{VGG19_FILE} (or EDTALK_VGG19), or use model.perceptual.init=random "
        "for smoke tests only"
    )


class AntiAliasDownsample(nn.Module):
    """Gaussian blur (sigma = (1/scale - 1)/2) then stride-1/scale subsampling (FOMM's anti-aliasing)."""

    kernel: torch.Tensor

    def __init__(self, scale: float, channels: int = 3) -> None:
        super().__init__()
        sigma = (1 / scale - 1) / 2
        size = 2 * round(sigma * 4) + 1
        self.pad = (size // 2, size // 2 if size % 2 else size // 2 - 1)
        ax = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
        g = torch.exp(-(ax**2) / (2 * sigma**2))
        k = g[:, None] * g[None, :]
        k = (k / k.sum()).expand(channels, 1, size, size).contiguous()  # -> C x 1 x K x K depthwise
        self.register_buffer("kernel", k, persistent=False)
        self.stride = round(1 / scale)
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.pad
        x = F.pad(x, (a, b, a, b))
        x = F.conv2d(x, self.kernel.to(x.dtype), groups=self.channels)
        return x[:, :, :: self.stride, :: self.stride]


class VGGPyramidLoss(nn.Module):
    """Multi-scale VGG19 perceptual loss; frozen, always in eval mode.

    Args:
        path: local torchvision VGG19 state dict (None: search `default_vgg_paths()`); ignored for random init.
        init: "pretrained" (load `path`) or "random" (tests/debug only).
        width: channel fraction of the random network (must be 1.0 when pretrained).
        scales: pyramid scales; scales whose image would be smaller than `min_size` are skipped.
        layer_weights: weight per relu{1..5}_1 layer.
        min_size: smallest image side fed to VGG (4 max-pools before relu5_1).
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(
        self,
        path: str | Path | None = None,
        init: Literal["pretrained", "random"] = "pretrained",
        width: float = 1.0,
        scales: Sequence[float] = (1.0, 0.5, 0.25, 0.125),
        layer_weights: Sequence[float] = (10.0, 10.0, 10.0, 10.0, 10.0),
        min_size: int = 16,
    ) -> None:
        super().__init__()
        if init not in ("pretrained", "random"):
            raise ValueError(f"perceptual init must be 'pretrained' or 'random', got {init!r}")
        if init == "pretrained" and width != 1.0:
            raise ValueError(f"perceptual width must be 1.0 with pretrained VGG19 weights, got {width}")
        if len(layer_weights) != len(_TAPS):
            raise ValueError(
                f"layer_weights needs {len(_TAPS)} entries (relu1_1..relu5_1), got {len(layer_weights)}"
            )
        self.features = vgg19_features(width)
        if init == "pretrained":
            self._load(resolve_vgg_path(path))
        self.features.requires_grad_(False)
        self.scales = tuple(float(s) for s in scales)
        self.downsample = nn.ModuleDict(
            {str(i): AntiAliasDownsample(s) for i, s in enumerate(self.scales) if s != 1.0}
        )
        self.layer_weights = tuple(float(w) for w in layer_weights)
        self.min_size = min_size
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)
        self.eval()

    def _load(self, path: Path) -> None:
        """torchvision's VGG19 file through `edtalk.weights` (kind `vgg19`: every key and shape checked)."""
        from edtalk import weights

        try:
            vgg = weights.load(path, "vgg19")
        except weights.CheckpointError as err:
            raise ValueError(f"{path} is not a torchvision VGG19 state dict ({VGG19_FILE}): {err}") from err
        self.features.load_state_dict(vgg.state_dict(), strict=True)

    def train(self, mode: bool = True) -> VGGPyramidLoss:
        """The loss network never leaves eval mode."""
        return super().train(False)

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = ((x + 1) / 2 - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in _TAPS:
                out.append(x)
        return out

    def _pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for i, s in enumerate(self.scales):
            if x.shape[-1] * s < self.min_size:
                continue
            out.append(x if s == 1.0 else self.downsample[str(i)](x))
        if not out:
            raise ValueError(
                f"image side {x.shape[-1]} is below the perceptual loss min_size {self.min_size}"
            )
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x: B x 3 x H x W prediction, y: target (no gradient), both in [-1, 1]. Returns a scalar."""
        px = self._pyramid(x.clamp(-1, 1))
        with torch.no_grad():
            py = self._pyramid(y.detach().clamp(-1, 1))
            ty = [self._taps(s) for s in py]
        loss = x.new_zeros(())
        for sx, feats_y in zip(px, ty):
            for w, fx, fy in zip(self.layer_weights, self._taps(sx), feats_y):
                loss = loss + w * (fx - fy).abs().mean()
        return loss
