"""Mouth-swapped frames for the mouth/pose decoupling stage (SPEC 5.2, ``get_IA_MB``).

``swap_mouth(a, lmk_a, b, lmk_b)`` = frame a with b's mouth: a similarity transform maps b's eye
centres and inner-mouth centre (landmarks 36-41, 42-47, 60-67) onto a's (least squares), then, as
upstream, its translation is corrected so b's inner-mouth centre lands exactly on a's (the mouth-centre
alignment; `align_mouth=False` skips it), b is warped into a's frame
**at a's own size** (upstream warps 256² frames into 224² and so pastes a shifted mouth), and the box
around the mouth landmarks 48-67 (a's and the warped b's, so an open mouth is not cut) ±`margin` px is
pasted into a.
"""

from __future__ import annotations

import numpy as np

from datamodules.preprocess.crop import apply_affine, similarity_transform


def anchor_points(lmk: np.ndarray) -> np.ndarray:
    """3 x 2: left-eye centre, right-eye centre, inner-mouth centre of 68 x 2 landmarks."""
    return np.stack([lmk[36:42].mean(0), lmk[42:48].mean(0), lmk[60:68].mean(0)])


def swap_matrix(lmk_a: np.ndarray, lmk_b: np.ndarray, align_mouth: bool = True) -> np.ndarray:
    """2 x 3 similarity b -> a from the three anchor points; with `align_mouth` its translation moves b's
    inner-mouth centre exactly onto a's (the least-squares fit alone leaves an offset)."""
    src, dst = anchor_points(lmk_b), anchor_points(lmk_a)
    matrix = np.array(similarity_transform(src, dst), dtype=np.float64)
    if align_mouth:
        matrix[:, 2] += dst[2] - apply_affine(src[2:3], matrix)[0]
    return matrix


def swap_mouth(
    image_a: np.ndarray,
    lmk_a: np.ndarray,
    image_b: np.ndarray,
    lmk_b: np.ndarray,
    margin: float = 5.0,
    align_mouth: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Paste b's mouth into a.

    Args:
        image_a, image_b: H x W x 3 uint8 frames of the same size.
        lmk_a, lmk_b: their 68 x 2 landmarks (pixels).
        margin: pixels added around the mouth box.
        align_mouth: put b's inner-mouth centre exactly on a's (upstream's mouth-centre bias).

    Returns:
        (swapped H x W x 3 uint8, pasted box x1, y1, x2, y2 as int array).
    """
    import cv2

    if image_a.shape != image_b.shape:
        raise ValueError(f"swap_mouth needs frames of one size, got {image_a.shape} and {image_b.shape}")
    h, w = image_a.shape[:2]
    matrix = swap_matrix(lmk_a, lmk_b, align_mouth)  # b -> a
    warped = cv2.warpAffine(image_b, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    mouth = np.concatenate([lmk_a[48:68], apply_affine(lmk_b[48:68], matrix)])
    x1, y1 = np.floor(mouth.min(0) - margin).astype(int)
    x2, y2 = np.ceil(mouth.max(0) + margin).astype(int)
    x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
    out = image_a.copy()
    out[y1:y2, x1:x2] = warped[y1:y2, x1:x2]
    return out, np.array([x1, y1, x2, y2])
