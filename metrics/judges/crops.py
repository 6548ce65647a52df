"""Input preparation shared by judges and metrics: ArcFace's aligned face crops, square resizing."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

# ArcFace's 5-point template for 112 x 112 crops (eye centres, nose tip, mouth corners).
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    np.float32,
)


def arcface_crops(frames: np.ndarray, lmk68: np.ndarray) -> torch.Tensor:
    """Align faces to ArcFace's 112^2 template from 68-point landmarks -> T x 3 x 112 x 112 in [-1, 1]."""
    from skimage.transform import SimilarityTransform, warp

    crops = []
    for image, pts in zip(frames, lmk68):
        five = np.stack([pts[36:42].mean(0), pts[42:48].mean(0), pts[30], pts[48], pts[54]])
        tf = SimilarityTransform.from_estimate(ARCFACE_TEMPLATE, five)
        crops.append(warp(image, tf, output_shape=(112, 112), order=1, preserve_range=True))
    arr = torch.from_numpy(np.stack(crops).astype(np.float32))  # -> T x 112 x 112 x 3 in 0..255
    return arr.permute(0, 3, 1, 2) / 127.5 - 1.0


def resize_frames(frames: torch.Tensor, size: int) -> torch.Tensor:
    """B x C x H x W -> B x C x size x size (bilinear, antialiased when shrinking)."""
    if frames.shape[-1] == size and frames.shape[-2] == size:
        return frames
    return F.interpolate(frames, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
