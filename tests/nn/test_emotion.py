"""Emotion-FAN style video emotion classifier (the emotion-accuracy judge)."""

from __future__ import annotations

import pytest
import torch

from edtalk.nn.emotion import (
    EMOTIONS,
    EmotionClassifier,
    EmotionClassifierConfig,
    FrameAttentionPool,
)
from tests.learn import above, seed_torch


def test_emotion_order_is_mead_label_order() -> None:
    assert (
        EMOTIONS.index("angry") == 0 and EMOTIONS.index("neutral") == 5 and EMOTIONS.index("surprised") == 7
    )


def test_tiny_classifier_shapes_any_frame_size() -> None:
    model = EmotionClassifier(EmotionClassifierConfig.tiny()).eval()
    for size in (32, 64):
        logits = model(torch.rand(2, 3, 3, size, size) * 2 - 1)
        assert logits.shape == (2, 8) and torch.isfinite(logits).all()
    with pytest.raises(ValueError, match="B x T x 3 x H x W"):
        model(torch.zeros(2, 3, 64, 64))


def test_masked_frames_do_not_change_the_prediction() -> None:
    model = EmotionClassifier(EmotionClassifierConfig.tiny()).eval()
    frames = torch.rand(2, 5, 3, 32, 32) * 2 - 1
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    with torch.no_grad():
        base = model(frames, mask)
        altered = frames.clone()
        altered[1, 3:] = torch.rand(2, 3, 32, 32)
        assert torch.allclose(model(altered, mask), base, atol=1e-6)
        assert torch.allclose(model(frames[1:, :3]), base[1:], atol=1e-5)


def test_attention_pool_weights_frames_and_relation() -> None:
    pool = FrameAttentionPool(4)
    feats = torch.randn(3, 6, 4)
    out = pool(feats)
    assert out.shape == (3, 8)
    same = torch.ones(1, 6, 4)  # identical frames: the clip feature is that frame twice
    assert torch.allclose(pool(same), torch.ones(1, 8), atol=1e-6)


@pytest.mark.learns
def test_classifier_learns_a_fixed_batch() -> None:
    seed_torch()
    model = EmotionClassifier(EmotionClassifierConfig.tiny())
    colours = torch.tensor([[0.8, -0.5, 0.0], [-0.6, 0.7, 0.2], [0.1, 0.1, -0.9], [-0.2, -0.8, 0.6]])
    frames = colours[:, None, :, None, None] + 0.1 * torch.randn(4, 2, 3, 32, 32)  # one look per clip
    labels = torch.tensor([0, 3, 4, 6])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(20):
        loss = torch.nn.functional.cross_entropy(model(frames), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    logits = model.eval()(frames)
    right = logits.gather(1, labels[:, None])[:, 0]
    wrong = logits.scatter(1, labels[:, None], float("-inf")).amax(1)
    above("min logit margin (right - best wrong)", float((right - wrong).min()), 0.0)


def test_resnet18_backbone_and_config_round_trip() -> None:
    cfg = EmotionClassifierConfig(backbone="resnet18", input_size=32, dim=8)
    model = EmotionClassifier(cfg).eval()
    assert model(torch.rand(1, 2, 3, 48, 48) * 2 - 1).shape == (1, 8)
    assert EmotionClassifierConfig.from_dict({**cfg.to_dict(), "channels": [4, 8]}).channels == (4, 8)
    with pytest.raises(ValueError, match="backbone"):
        EmotionClassifier(EmotionClassifierConfig(backbone="vgg"))  # type: ignore[arg-type]
