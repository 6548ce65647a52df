"""Identity-frame pairing of stage 1 and the expression stage on the built-in data (+ HDTF-style clips).

MEAD-style clips (with an emotion label) take the identity frame from a neutral clip of the same speaker;
unlabelled clips (HDTF) pair two frames of one clip.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import pytest

from datamodules import EmotionDataModule, PairDataModule
from datamodules.samplers import CrossPairSampler, EmotionSampler, PairSampler
from datamodules.shards import ShardWriter, clip_pipeline, shard_urls
from edtalk.nn.emotion import EMOTIONS

S = 32


def speaker(key: str) -> str:
    return key.split("#")[0]


def emotion(key: str) -> str:
    return key.split("#")[1]


def with_hdtf(builtin: Path, out: Path) -> Path:
    """The built-in train clips, with speaker S03's clips relabelled as HDTF videos (no emotion, one
    speaker per video, as `edtalk preprocess` writes HDTF)."""
    with ShardWriter(out, max_clips=4) as writer:
        for raw in clip_pipeline(shard_urls(builtin, "train"), rank=0, world_size=1):
            meta = json.loads(raw["json"])
            key = raw["__key__"]
            if meta["speaker"] == "S03":
                key = "hdtf" + key.replace("#", "_")
                meta.update(dataset="hdtf", speaker=key, emotion=None, level=None, emotion_id=-1)
            members = [(k, v) for k, v in raw.items() if not k.startswith("__") and k != "json"]
            members.append(("json", json.dumps(meta).encode()))
            writer.write_members(key, "train", members, int(meta["num_frames"]))
    return out


def draw(root: Path, sampler: Any, n: int, seed: int = 0) -> list[dict[str, Any]]:
    """n samples of the training stream (resampled shards, shuffle buffer) through `sampler`."""
    stream: Iterator[dict[str, Any]] = iter(
        clip_pipeline(
            shard_urls(root, "train"), sampler, resampled=True, shuffle=8, seed=seed, rank=0, world_size=1
        )
    )
    return list(islice(stream, n))


@pytest.mark.parametrize("seed", [0, 1])
def test_expression_pairs_neutral_source_with_emotional_target_of_same_speaker(
    builtin: Path, seed: int
) -> None:
    samples = draw(builtin, EmotionSampler(image_size=S, keys=True, pending=64), 48, seed)
    assert len(samples) == 48
    for s in samples:
        src, tgt = s["source_key"], s["target_key"]
        assert emotion(src) == "neutral", (src, tgt)
        assert emotion(tgt) != "neutral", (src, tgt)
        assert speaker(src) == speaker(tgt), (src, tgt)
        assert s["emotion"].item() >= 0
    assert len({s["target_key"] for s in samples}) > 6  # many target clips, not one repeated
    assert {emotion(s["target_key"]) for s in samples} == {"angry", "happy", "sad"}


def test_expression_neutral_targets_add_neutral_clips_as_targets(builtin: Path) -> None:
    """`neutral_targets` (ours): neutral clips become targets too, still with a neutral source of the speaker,
    and the label says neutral; every emotion appears as a target."""
    samples = draw(builtin, EmotionSampler(image_size=S, keys=True, pending=64, neutral_targets=True), 64)
    for s in samples:
        assert emotion(s["source_key"]) == "neutral" and speaker(s["source_key"]) == speaker(s["target_key"])
        assert EMOTIONS[int(s["emotion"])] == emotion(s["target_key"])
    assert {emotion(s["target_key"]) for s in samples} == {"angry", "happy", "neutral", "sad"}


def test_reconstruct_samples_carry_the_target_clips_label(builtin: Path) -> None:
    samples = draw(builtin, PairSampler(image_size=S, keys=True, pending=64), 32)
    assert all(EMOTIONS[int(s["emotion"])] == emotion(s["target_key"]) for s in samples)


def test_expression_uses_hdtf_clips_as_same_clip_pairs(builtin: Path, tmp_path: Path) -> None:
    root = with_hdtf(builtin, tmp_path / "mixed")
    samples = draw(root, EmotionSampler(image_size=S, keys=True, pending=64), 64)
    hdtf = [s for s in samples if s["target_key"].startswith("hdtf")]
    mead = [s for s in samples if not s["target_key"].startswith("hdtf")]
    assert hdtf and mead  # HDTF clips are used, not dropped
    for s in hdtf:
        assert s["source_key"] == s["target_key"] and s["emotion"].item() == -1
        assert not (s["source"] == s["target"]).all()  # two different frames
    for s in mead:
        assert emotion(s["source_key"]) == "neutral" != emotion(s["target_key"])
        assert speaker(s["source_key"]) == speaker(s["target_key"])


def test_reconstruct_pairs_neutral_source_with_any_clip_of_the_speaker(builtin: Path, tmp_path: Path) -> None:
    root = with_hdtf(builtin, tmp_path / "mixed")
    samples = draw(root, PairSampler(image_size=S, keys=True, pending=64), 96)
    mead = [s for s in samples if not s["target_key"].startswith("hdtf")]
    hdtf = [s for s in samples if s["target_key"].startswith("hdtf")]
    assert hdtf and mead
    for s in mead:
        assert emotion(s["source_key"]) == "neutral"
        assert speaker(s["source_key"]) == speaker(s["target_key"])
    # targets come from every emotion, neutral included, and cross clips (not only the source's clip)
    assert {emotion(s["target_key"]) for s in mead} == {"angry", "happy", "neutral", "sad"}
    assert any(s["source_key"] != s["target_key"] for s in mead)
    assert all(s["source_key"] == s["target_key"] for s in hdtf)


def test_clip_pairing_and_drop_options(builtin: Path, tmp_path: Path) -> None:
    root = with_hdtf(builtin, tmp_path / "mixed")
    same = draw(root, EmotionSampler(image_size=S, keys=True, pairing="clip", unlabelled="drop"), 40)
    assert all(s["source_key"] == s["target_key"] for s in same)
    assert not any(s["target_key"].startswith("hdtf") for s in same)  # dropped
    assert "neutral" in {emotion(s["target_key"]) for s in same}  # the classifier sees every class
    with pytest.raises(ValueError, match="pairing='speaker'"):
        EmotionSampler(pairing="speaker")


def test_speaker_without_neutral_clip_falls_back_to_same_clip(builtin: Path) -> None:
    """A labelled speaker whose neutral clips never come: its clips wait, then pair within themselves."""
    urls = shard_urls(builtin, "train")
    raws = [r for r in clip_pipeline(urls, rank=0, world_size=1) if emotion(r["__key__"]) != "neutral"]
    sampler = EmotionSampler(image_size=S, keys=True, pending=2)
    out = list(sampler(raws))
    assert len(out) == len(raws) and sampler.fallbacks == len(raws)
    assert all(s["source_key"] == s["target_key"] for s in out)


def test_datamodules_default_to_the_upstream_pairings(builtin: Path) -> None:
    for cls in (PairDataModule, EmotionDataModule):
        dm = cls(builtin, image_size=S, batch_size=2, num_workers=0)
        sampler = dm.sampler(deterministic=False)
        assert sampler.pairing == "neutral" and sampler.unlabelled == "same_clip"
    dm = EmotionDataModule(builtin, image_size=S, batch_size=4, num_workers=0)
    dm.setup("fit")
    val = list(dm.val_dataloader())  # the test speaker's emotional clips, neutral source from its own clips
    assert sum(b["source"].shape[0] for b in val) == 12  # S07, S08: 3 emotions x 2 clips each


def test_mouth_swap_puts_the_donor_mouth_centre_on_the_receiver_mouth_centre(builtin: Path) -> None:
    """Upstream's mouth-centre bias: after the 3-point similarity, b's inner-mouth centre lands exactly on a's."""
    import numpy as np

    from datamodules.mouth_swap import anchor_points, swap_matrix, swap_mouth
    from datamodules.preprocess.crop import apply_affine
    from datamodules.shards import iter_clips

    clips = list(islice(iter_clips(builtin, "train"), 8))
    a, b = clips[0], next(c for c in clips if c.meta["speaker"] != clips[0].meta["speaker"])
    la, lb = a.lmk[3].astype(np.float64), b.lmk[5].astype(np.float64)
    lb = lb * np.array([1.0, 1.08]) + np.array([2.0, -3.0])  # a face shape the similarity cannot fit exactly
    centre_a = anchor_points(la)[2]
    aligned = apply_affine(anchor_points(lb)[2:3], swap_matrix(la, lb))[0]
    plain = apply_affine(anchor_points(lb)[2:3], swap_matrix(la, lb, align_mouth=False))[0]
    assert np.abs(aligned - centre_a).max() < 1e-3
    assert np.abs(plain - centre_a).max() > 0.1  # the least-squares fit alone misses it
    # on images: a bright dot at b's mouth centre is pasted at a's mouth centre
    fa, fb = a.frame(3), b.frame(5).copy()
    cx, cy = np.round(anchor_points(lb)[2]).astype(int)
    fb[cy - 1 : cy + 2, cx - 1 : cx + 2] = (255, 0, 255)
    out, _ = swap_mouth(fa, la, fb, lb)
    magenta = (out[..., 0] > 200) & (out[..., 1] < 60) & (out[..., 2] > 200)
    ys, xs = np.nonzero(magenta)
    assert len(xs) > 0 and abs(xs.mean() - centre_a[0]) < 1.5 and abs(ys.mean() - centre_a[1]) < 1.5


def test_second_target_is_another_frame_of_the_target_clip(builtin: Path) -> None:
    """second_target=True adds "target2": a frame of the target's own clip (same emotion, other mouth and
    pose); the clips drawn are unchanged."""
    import torch

    from datamodules.shards import Clip

    urls = shard_urls(builtin, "train")
    raws = list(clip_pipeline(urls, rank=0, world_size=1))
    clips = {r["__key__"]: Clip(r) for r in raws}
    plain = list(EmotionSampler(image_size=S, keys=True, samples_per_clip=3, deterministic=True)(raws))
    sampler = EmotionSampler(
        image_size=S, keys=True, samples_per_clip=3, deterministic=True, second_target=True
    )
    samples = list(sampler(raws))
    assert len(samples) == len(plain) > 0
    differs = 0
    for s, p in zip(samples, plain, strict=True):
        assert s["target_key"] == p["target_key"] and s["target"].shape == p["target"].shape
        clip = clips[s["target_key"]]
        frames = sampler.image(clip.frames(range(clip.num_frames)))  # -> T x 3 x S x S
        assert any(torch.equal(f, s["target2"]) for f in frames), s["target_key"]  # a frame of its clip
        differs += int(not torch.equal(s["target2"], s["target"]))
    assert differs > 0.8 * len(samples)


class _PairKeys(CrossPairSampler):
    """The mouth_pose sampler's choice of clips only (keys instead of images)."""

    def sample(self, a: Any, b: Any, rng: Any) -> dict[str, Any]:
        return {"a": a.key, "b": b.key}


def test_mouth_pose_neutral_only_pairs_neutral_clips_of_two_speakers(builtin: Path) -> None:
    """`data.neutral_only` (ours): both sides of every mouth-swap pair come from neutral clips (the released
    lip-pose model saw HDTF only); without it emotional clips take part."""
    only = draw(builtin, _PairKeys(image_size=S, neutral_only=True), 24)
    assert len(only) == 24
    for s in only:
        assert emotion(s["a"]) == emotion(s["b"]) == "neutral", s
        assert speaker(s["a"]) != speaker(s["b"]), s
    every = draw(builtin, _PairKeys(image_size=S), 24)
    assert any(emotion(s["a"]) != "neutral" for s in every)


def test_mouth_pose_rigid_landmarks_are_the_head_motion_within_the_clip(builtin: Path) -> None:
    """`data.rigid_landmarks` (ours, for mouth_pose's `model.loss.leak`): 62 numbers per target, the brow, nose and
    eye landmarks' offsets from their clip's mean in half-widths; over a clip's frames they average to zero."""
    import numpy as np
    import torch

    from datamodules.samplers import RIGID, rigid_motion

    batch = draw(builtin, CrossPairSampler(image_size=S, rigid_landmarks=True), 4)
    for sample in batch:
        for side in ("rigid_a", "rigid_b"):
            assert sample[side].shape == (62,) and sample[side].dtype == torch.float32
            assert 0 < float(sample[side].abs().max()) < 0.5  # a head moves a few pixels, not half the frame
    assert "rigid_a" not in draw(builtin, CrossPairSampler(image_size=S), 1)[0]
    rng = np.random.default_rng(0)
    lmk = rng.uniform(0, 64, (10, 68, 2))
    motion = torch.stack([rigid_motion(lmk, i, 64) for i in range(10)])
    assert torch.allclose(motion.mean(0), torch.zeros(62), atol=1e-5)
    expected = (lmk[3, RIGID] - lmk[:, RIGID].mean(0)) / 32
    assert np.allclose(motion[3].numpy(), expected.reshape(-1), atol=1e-5)


def test_mouth_pose_mouth_landmarks_are_how_the_mouth_moves_within_the_clip(builtin: Path) -> None:
    """`data.mouth_landmarks` (ours, for mouth_pose's `model.loss.mouth_read`): 8 lip-landmark distances over
    the outer-eye-corner distance, less their clip mean: zero on average over a clip, unchanged when the face
    is moved, turned in the image plane or scaled, and on the built-in held-out clips a linear read-out of them
    explains most of the known opening within each clip."""
    import numpy as np
    import torch

    from datamodules.samplers import MOUTH_PAIRS, mouth_motion
    from datamodules.shards import iter_clips

    batch = draw(builtin, CrossPairSampler(image_size=S, mouth_landmarks=True), 4)
    for sample in batch:
        for side in ("mouth_a", "mouth_b"):
            assert sample[side].shape == (len(MOUTH_PAIRS),) and sample[side].dtype == torch.float32
    assert "mouth_a" not in draw(builtin, CrossPairSampler(image_size=S), 1)[0]
    rng = np.random.default_rng(0)
    lmk = rng.uniform(0, 64, (10, 68, 2))
    motion = np.stack([mouth_motion(lmk, i).numpy() for i in range(10)])
    assert np.allclose(motion.mean(0), 0, atol=1e-5)
    turn = np.deg2rad(20)
    rot = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    moved = 1.7 * lmk @ rot.T + np.array([5.0, -3.0])
    assert np.allclose(mouth_motion(moved, 4).numpy(), motion[4], atol=1e-5)
    xs, ys = [], []
    for clip in iter_clips(builtin, "test"):
        opening = np.asarray(clip.meta["factors"]["mouth_open"], np.float64)
        t = min(len(opening), len(clip.lmk))
        xs.append(np.stack([mouth_motion(clip.lmk, i).numpy() for i in range(t)]))
        ys.append(opening[:t] - opening[:t].mean())
    x, y = np.concatenate(xs), np.concatenate(ys)
    design = np.c_[x, np.ones(len(x))]
    fit = design @ np.linalg.lstsq(design, y, rcond=None)[0]
    assert 1 - ((y - fit) ** 2).mean() / y.var() > 0.7  # measured 0.88
