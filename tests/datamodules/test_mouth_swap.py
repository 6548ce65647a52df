"""Landmark mouth swap: the pasted box carries b's mouth warped into a's frame, the rest is a."""

from __future__ import annotations

import numpy as np

from datamodules.mouth_swap import anchor_points, swap_mouth
from datamodules.preprocess.crop import template_68


def test_swap_pastes_the_warped_mouth_of_b_at_full_size() -> None:
    lmk_a = template_68().astype(np.float32)
    lmk_b = (lmk_a - 128) * 0.8 + [128 + 10, 128 - 6]  # b: same face, smaller and shifted
    a = np.full((256, 256, 3), 50, np.uint8)
    b = np.full((256, 256, 3), 200, np.uint8)
    mouth_b = lmk_b[48:68]
    b[
        int(mouth_b[:, 1].min()) : int(mouth_b[:, 1].max()),
        int(mouth_b[:, 0].min()) : int(mouth_b[:, 0].max()),
    ] = 0
    out, (x1, y1, x2, y2) = swap_mouth(a, lmk_a, b, lmk_b, margin=5)
    assert out.shape == a.shape
    mask = np.zeros((256, 256), bool)
    mask[y1:y2, x1:x2] = True
    assert (out[~mask] == 50).all()  # outside the box: frame a untouched
    # inside: b's dark mouth warped onto a's mouth position (box around a's landmarks 48-67)
    mx1, my1 = lmk_a[48:68].min(0).astype(int) + 2
    mx2, my2 = lmk_a[48:68].max(0).astype(int) - 2
    assert out[my1:my2, mx1:mx2].max() < 30
    assert x1 <= lmk_a[48:68, 0].min() - 4 and x2 >= lmk_a[48:68, 0].max() + 4
    # symmetric swap puts a's (flat) mouth into b
    back, _ = swap_mouth(b, lmk_b, a, lmk_a)
    assert np.isclose(anchor_points(lmk_b)[2], anchor_points(lmk_b)[2]).all()
    assert (back[int(mouth_b[:, 1].mean()), int(mouth_b[:, 0].mean())] == 50).all()
