"""LMD on hand-computed landmark arrays, CSIM, emotion accuracy, accumulation."""

from __future__ import annotations

import pytest
import torch

from metrics.emotion import EmotionAccuracy
from metrics.functional.emotion import emotion_label
from metrics.identity import CSIM
from metrics.landmarks import LMD


def test_lmd_hand_computed() -> None:
    gt = torch.zeros(2, 68, 2)
    pred = gt.clone()
    pred[:, 48:68] += torch.tensor([3.0, 4.0])  # mouth moved by (3, 4): distance 5 before centring
    pred[0, 48] += torch.tensor([20.0, 0.0])  # one mouth point of frame 0 off by 20 px
    pred[:, :48] += 100.0  # the rest of the face translated: removed for M-LMD by centring the mouth set
    m = LMD("mouth")
    m.update(pred, gt)
    # frame 0 mouth after centring: point 48 at (19, 0), the 19 others at (-1, 0) -> 19 + 19 * 1 = 38
    assert float(m.compute()) == pytest.approx(38 / (2 * 20))
    f = LMD("face")
    f.update(gt + 7.0, gt)  # pure translation: F-LMD 0
    assert float(f.compute()) == pytest.approx(0.0, abs=1e-9)


def test_lmd_per_video_mean_accumulates() -> None:
    a, b = torch.rand(3, 68, 2) * 50, torch.rand(3, 68, 2) * 50
    c, d = torch.rand(5, 68, 2) * 50, torch.rand(5, 68, 2) * 50
    one, two, both = LMD("face"), LMD("face"), LMD("face")
    one.update(a, b)
    two.update(c, d)
    both.update(a, b)
    both.update(c, d)
    assert float(both.compute()) == pytest.approx((float(one.compute()) + float(two.compute())) / 2)
    with pytest.raises(ValueError, match="68 x 2"):
        one.update(torch.zeros(3, 20, 2), torch.zeros(3, 20, 2))


def test_csim_and_emotion_accuracy() -> None:
    src = torch.tensor([1.0, 0.0])
    m = CSIM()
    m.update(src, torch.tensor([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]]))
    assert float(m.compute()) == pytest.approx(0.0)
    assert emotion_label("M003#surprised#level_3#012") == 7 and emotion_label("S01#angry#level_1#003") == 0
    with pytest.raises(ValueError, match="emotion"):
        emotion_label("RD_Radio45_000#7")
    acc = EmotionAccuracy()
    logits = torch.zeros(2, 4, 8)
    logits[0, :, 4] = 5.0  # video 0: happy in every frame
    logits[1, :3, 6], logits[1, 3, 0] = 5.0, 50.0  # video 1: sad in 3 of 4 frames -> sad by mean softmax
    acc.update(logits, torch.tensor([4, 0]))
    assert float(acc.compute()) == pytest.approx(0.5)
