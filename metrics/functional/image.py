"""Pixel metrics PSNR and SSIM, computed exactly like `skimage.metrics` on uint8-range images.

Inputs follow the project convention (float NCHW in [-1, 1]); they are mapped to [0, 255] and compared
with `data_range=255`, which is what `skimage.metrics.peak_signal_noise_ratio(gt_u8, pred_u8,
data_range=255)` and `structural_similarity(gt_u8, pred_u8, channel_axis=-1, data_range=255)` compute
on the same frames (float64 internally, as skimage does).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

DATA_RANGE = 255.0


def to_pixel_range(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 255] float64 (no rounding: pass `from_uint8` frames for uint8 parity)."""
    return (images.detach().double() + 1.0) * 127.5


def psnr(preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB.

    Args:
        preds, target: B x C x H x W in [-1, 1].

    Returns:
        B float64 values; +inf where an image equals its target.
    """
    _check_pair(preds, target)
    mse = (to_pixel_range(preds) - to_pixel_range(target)).pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10(DATA_RANGE**2 / mse)


def ssim(
    preds: torch.Tensor,
    target: torch.Tensor,
    win_size: int = 7,
    gaussian: bool = False,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """Per-image mean SSIM, channels averaged (skimage `structural_similarity` semantics).

    Defaults are skimage's: 7x7 uniform window, sample covariance, mean over the valid region (the
    border of (win_size-1)//2 pixels that skimage crops is never computed). `gaussian=True` matches
    `gaussian_weights=True, sigma=1.5, use_sample_covariance=False` (win 11).

    Args:
        preds, target: B x C x H x W in [-1, 1].

    Returns:
        B float64 values.
    """
    _check_pair(preds, target)
    x, y = to_pixel_range(preds), to_pixel_range(target)
    b, c, h, w = x.shape
    if gaussian:
        win_size = 2 * int(3.5 * sigma + 0.5) + 1  # skimage: truncate=3.5
    if min(h, w) < win_size:
        raise ValueError(
            f"SSIM window {win_size} is larger than the image {h}x{w}; use images >= {win_size} px"
        )
    npix = win_size * win_size
    cov_norm = npix / (npix - 1) if not gaussian else 1.0
    stack = torch.cat([x, y, x * x, y * y, x * y], 1).reshape(b * 5 * c, 1, h, w)  # -> (B*5*C) x 1 x H x W
    filt = _filter(stack, win_size, gaussian, sigma).reshape(b, 5, c, h - win_size + 1, w - win_size + 1)
    ux, uy, uxx, uyy, uxy = filt.unbind(1)
    vx, vy, vxy = cov_norm * (uxx - ux * ux), cov_norm * (uyy - uy * uy), cov_norm * (uxy - ux * uy)
    c1, c2 = (k1 * DATA_RANGE) ** 2, (k2 * DATA_RANGE) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.mean(dim=(1, 2, 3))


def _filter(x: torch.Tensor, win_size: int, gaussian: bool, sigma: float) -> torch.Tensor:
    """Valid-region local means of N x 1 x H x W maps: box (avg_pool) or separable Gaussian."""
    if not gaussian:
        return F.avg_pool2d(x, win_size, stride=1)
    r = torch.arange(win_size, dtype=x.dtype, device=x.device) - (win_size - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    g = g / g.sum()
    return F.conv2d(F.conv2d(x, g.reshape(1, 1, 1, -1)), g.reshape(1, 1, -1, 1))


def _check_pair(preds: torch.Tensor, target: torch.Tensor) -> None:
    if preds.shape != target.shape or preds.ndim != 4:
        raise ValueError(
            "expected two B x C x H x W tensors of one shape, "
            f"got {tuple(preds.shape)} and {tuple(target.shape)}"
        )
