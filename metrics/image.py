"""PSNR, SSIM and LPIPS over frames (each frame one item; video frames are flattened into the batch)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metrics.base import MeanMetric
from metrics.functional.image import DATA_RANGE, psnr, ssim
from metrics.judges import LPIPSAlex

CHUNK = 8  # frames per float64 SSIM/PSNR pass (bounds memory for long 256^2 clips)


def _frames(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(-1, *x.shape[-3:])  # (B x) T x 3 x H x W -> N x 3 x H x W


def _chunked(
    fn: Callable[..., torch.Tensor], preds: torch.Tensor, target: torch.Tensor, **kw: Any
) -> torch.Tensor:
    p, t = _frames(preds), _frames(target)
    return torch.cat([fn(p[i : i + CHUNK], t[i : i + CHUNK], **kw) for i in range(0, len(p), CHUNK)])


class PSNR(MeanMetric):
    """Mean per-frame PSNR (dB) between generated and ground-truth frames in [-1, 1] (skimage, range 255)."""

    higher_is_better = True

    def values(self, preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-frame PSNR (N,)."""
        return _chunked(psnr, preds, target)

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        self._add(self.values(preds, target))


class SSIM(MeanMetric):
    """Mean per-frame SSIM (skimage `structural_similarity`, 7x7 uniform window, data range 255)."""

    higher_is_better = True

    def __init__(self, gaussian: bool = False, uint8_frames: bool = False, **kwargs: Any) -> None:
        """`uint8_frames`: the frames come from uint8 (`from_uint8`) and are scored on those uint8 values
        by scikit-image's `structural_similarity` itself, frame by frame (its separable float64 filter:
        2x faster on CPU than pooling here; the values agree to ~1e-9, closer to scikit-image's)."""
        super().__init__(**kwargs)
        self.gaussian, self.uint8_frames = gaussian, uint8_frames

    def values(self, preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-frame SSIM (N,)."""
        if self.uint8_frames and not self.gaussian:
            return _skimage_ssim(_frames(preds), _frames(target))
        return _chunked(ssim, preds, target, gaussian=self.gaussian)

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        self._add(self.values(preds, target))


def _skimage_ssim(preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """N x 3 x H x W frames of uint8 values in [-1, 1] -> N float64 SSIM (scikit-image, channel_axis=-1)."""
    from skimage.metrics import structural_similarity

    def u8(x: torch.Tensor) -> np.ndarray:  # -> N x H x W x 3 uint8 (exact: the values are uint8's)
        u8 = ((x.float() + 1.0) * 127.5).round_().to(torch.uint8)  # float32 is exact enough to round
        return u8.permute(0, 2, 3, 1).contiguous().numpy()

    p, t = u8(preds), u8(target)
    values = [structural_similarity(b, a, channel_axis=-1, data_range=DATA_RANGE) for a, b in zip(p, t)]
    return torch.tensor(values, dtype=torch.float64)


class LPIPS(MeanMetric):
    """Mean per-frame LPIPS v0.1 with the AlexNet trunk (lower is better).

    `channels_last`: frames enter the trunk in channels-last layout (oneDNN's faster convolutions on CPU;
    the values agree with the default layout to ~1e-7).
    """

    higher_is_better = False

    def __init__(
        self,
        net: LPIPSAlex | None = None,
        alexnet_path: str | Path | None = None,
        channels_last: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.net = net if net is not None else LPIPSAlex.from_files(alexnet_path)
        self.layout = torch.channels_last if channels_last else torch.contiguous_format

    @torch.no_grad()
    def values(self, preds: torch.Tensor, target: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
        """Per-frame LPIPS (N,), in batches of `batch_size` frames."""
        p, t = _frames(preds), _frames(target)
        fmt = self.layout
        vals = [
            self.net(
                p[i : i + batch_size].contiguous(memory_format=fmt),
                t[i : i + batch_size].contiguous(memory_format=fmt),
            )
            for i in range(0, len(p), batch_size)
        ]
        return torch.cat(vals)

    def update(self, preds: torch.Tensor, target: torch.Tensor, batch_size: int = 32) -> None:
        self._add(self.values(preds, target, batch_size))
