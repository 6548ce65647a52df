"""The shared, batched evaluation path gives the numbers of the path before it (issue 29, item 1).

`fast=False` is the unbatched path (each metric detects its own faces, S3FD one frame per call and
loaded per video, no channels-last); `fast=True` is the default. Both score the same built-in clips
with random-weight judges (the values do not depend on the weights being trained); every per-clip value
and every summary value must agree to 1e-6.
"""

from __future__ import annotations

import math
from fractions import Fraction
from itertools import islice
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch

from edtalk.io import write_video
from metrics.runner import WEIGHT_FILES, MethodScorer, PresetScorer, ground_truth, load_judges

FRAMES = 16


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Any], list[Path]]:
    """Two built-in test clips cut to 16 frames, and their results: blurred, with the clip's sound."""
    root = tmp_path_factory.mktemp("fast-results")
    gts, videos = [], []
    for gt in islice(ground_truth("builtin"), 2):
        gt.frames = gt.frames[:FRAMES]
        gt.wav = gt.wav[: FRAMES * 640]
        blurred = np.stack([cv2.GaussianBlur(f, (7, 7), 2) for f in gt.frames])
        videos.append(write_video(root / f"{gt.clip_id}.mp4", blurred, audio=gt.wav))
        gts.append(gt)
    return gts, videos


@pytest.fixture(scope="module")
def judge_dir(tmp_path_factory: pytest.TempPathFactory, inception_file: Path) -> Path:
    """Random judges of both protocols (dlib's files ship in a package and are real)."""
    from face_alignment.detection.sfd.net_s3fd import s3fd
    from torchvision.models import alexnet

    from metrics.judges import InceptionImageNet, SyncNetV2
    from metrics.judges.emotion_fan import EmotionFAN

    folder = tmp_path_factory.mktemp("fast-judges")
    torch.manual_seed(0)
    torch.save(alexnet(weights=None).state_dict(), folder / WEIGHT_FILES["alexnet"])
    torch.save(SyncNetV2().state_dict(), folder / WEIGHT_FILES["syncnet"])
    (folder / WEIGHT_FILES["inception"]).write_bytes(inception_file.read_bytes())
    fan = {f"module.{k}": v for k, v in EmotionFAN().state_dict().items()}
    torch.save(
        {"epoch": 0, "state_dict": fan, "accuracy": 0.0, "name": "random"},
        folder / WEIGHT_FILES["emotion_fan"],
    )
    torch.save(InceptionImageNet().net.state_dict(), folder / WEIGHT_FILES["inception_imagenet"])
    torch.save(s3fd().state_dict(), folder / WEIGHT_FILES["s3fd"])
    return folder


def _same(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a.keys() == b.keys()
    for key, value in a.items():
        if isinstance(value, float) and not math.isnan(value):
            assert b[key] == pytest.approx(value, rel=1e-6, abs=1e-6), key
        elif isinstance(value, float):
            assert math.isnan(b[key]), key
        else:
            assert b[key] == value, key


def _score(
    make: Any, gts: list[Any], videos: list[Path], cache: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Rows and summary of one scorer, from an empty ground-truth cache."""
    monkeypatch.setenv("EDTALK_CACHE", str(cache))
    scorer = make()
    rows = []
    for gt, video in zip(gts, videos):
        gt.cache.clear()
        gt.lmk = None
        rows.append(scorer.add_video(gt, video))
    return rows, scorer.summary()


@pytest.mark.parametrize("protocol", ["ours", "eat"])
def test_fast_path_gives_the_values_of_the_unbatched_path(
    clips: tuple[list[Any], list[Path]],
    judge_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    protocol: str,
) -> None:
    judges = load_judges(judge_dir, protocol=protocol)
    if protocol == "ours":
        assert judges.dlib is not None and judges.syncnet is not None and judges.alexnet is not None
        makers = [lambda fast=fast: MethodScorer(judges, fast=fast) for fast in (False, True)]
    else:
        assert judges.emotion_fan is not None and judges.inception_imagenet is not None
        makers = [lambda fast=fast: PresetScorer(judges, protocol, fast=fast) for fast in (False, True)]
    base = _score(makers[0], *clips, tmp_path / "base", monkeypatch)
    fast = _score(makers[1], *clips, tmp_path / "fast", monkeypatch)
    for row_base, row_fast in zip(base[0], fast[0]):
        _same(row_base, row_fast)
    _same(base[1], fast[1])
    wanted = {
        "ours": {"psnr", "lpips", "fid", "csim", "m_lmd", "lse_d"},
        "eat": {"psnr", "fid", "emotion_fan_acc"},
    }
    assert wanted[protocol] <= {k for k, v in base[1].items() if not math.isnan(v)}
    # and again with the ground truth's side read back from the disk cache (a second method)
    again = _score(makers[1], *clips, tmp_path / "fast", monkeypatch)
    _same(base[1], again[1])


def test_s3fd_batched_detections_equal_one_frame_per_call(judge_dir: Path) -> None:
    """Every box and score of the batched, channels-last S3FD equals the one-frame call's (random
    weights and no confidence threshold, so that every frame has hundreds of boxes)."""
    from metrics.syncnet_crop import detect_all, s3fd_from

    gt = next(iter(ground_truth("builtin")))
    frames = gt.frames[:12]
    detector = s3fd_from(judge_dir / WEIGHT_FILES["s3fd"])
    detector.conf_threshold = 0.0
    single = detect_all(frames, detector)
    batched = detect_all(frames, detector, batch_size=5)
    assert sum(len(d) for d in single) > 100
    for a, b in zip(single, batched):
        assert a.shape == b.shape
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-4)


def test_lse_crop_from_the_shared_boxes_equals_its_own_detection() -> None:
    """The LSE crop made from CSIM's / LMD's boxes is the one made by detecting again, bit for bit."""
    from metrics.judges import DlibFace
    from metrics.sync import face_crops_224

    frames = next(iter(ground_truth("builtin"))).frames[:16]
    dlib_face = DlibFace()
    own = face_crops_224(frames, dlib_face)
    shared = face_crops_224(frames, boxes=dlib_face.boxes(frames))
    assert torch.equal(own, shared)


def test_dlib_descriptor_in_pytorch_equals_dlibs_own() -> None:
    """`DlibFaceResNet` (dlib's face-recognition ResNet read from its .dat file, run by PyTorch on batches)
    gives `compute_face_descriptor`'s 128-d descriptors to 1e-6, and their cosine similarities too."""
    from metrics.judges import DlibFace

    frames = next(iter(ground_truth("builtin"))).frames[:6]
    dlib_face = DlibFace()
    boxes = dlib_face.boxes(frames)
    own = dlib_face.embeddings(frames, boxes)
    batched = dlib_face.embeddings(frames, boxes, batched=True)
    np.testing.assert_allclose(batched, own, atol=1e-6)

    def cosine(e: np.ndarray) -> np.ndarray:
        return (e[0] * e).sum(1) / np.linalg.norm(e[0]) / np.linalg.norm(e, axis=1)

    np.testing.assert_allclose(cosine(batched), cosine(own), atol=1e-6)


@pytest.mark.parametrize("fps", [Fraction(25), Fraction(30), Fraction(30000, 1001), Fraction(20)])
def test_the_reencodes_decode_gives_the_frames_each_reader_decodes(tmp_path: Path, fps: Fraction) -> None:
    """The frames EAT's re-encode keeps while it decodes a result video (`DecodedVideo`, the fast path's
    one decode) are `read_video(fps=None)`'s (Emotion-FAN's input) and `read_video_ffmpeg_rate`'s (the
    LSE's), bit for bit, at 25, 30, 29.97 and 20 fps."""
    from edtalk.io import read_video, read_video_ffmpeg_rate
    from metrics.eat import DecodedVideo, reencode_25fps
    from tests.avclips import write_clip

    images = np.random.default_rng(0).integers(0, 256, (40, 48, 64, 3), dtype=np.uint8)
    clip = write_clip(tmp_path / "clip.mp4", images, fps)
    decoded = DecodedVideo()
    reencode_25fps(clip, tmp_path / "25fps.mp4", decoded=decoded)
    np.testing.assert_array_equal(decoded.frames(), read_video(clip, fps=None))
    np.testing.assert_array_equal(decoded.at_25fps(), read_video_ffmpeg_rate(clip))
    assert len(decoded.at_25fps()) != len(decoded.frames()) or fps == 25


def test_emotion_fan_with_folded_batch_norms_gives_the_same_logits() -> None:
    """`EmotionFAN.fused` (each batch norm folded into its convolution, channels-last: the fast path's
    Emotion-FAN) gives the network's frame features, attention and clip logits to 1e-5, with batch-norm
    statistics far from the identity; the judge itself is left as it was."""
    from metrics.judges.emotion_fan import EmotionFAN

    torch.manual_seed(0)
    net = EmotionFAN().eval()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    frames = torch.rand(6, 3, 96, 96)
    fused = net.fused()
    with torch.no_grad():
        want = net.frame_features(frames), net(frames)
        cl = frames.contiguous(memory_format=torch.channels_last)
        got = fused.frame_features(cl), fused(cl)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    assert isinstance(net.bn1, torch.nn.BatchNorm2d)


def test_ssim_of_uint8_frames_by_skimage_equals_the_pooling_path() -> None:
    """SSIM(uint8_frames=True) (scikit-image on the frames' uint8 values) equals skimage exactly and the
    float64 pooling path to 1e-8."""
    from skimage.metrics import structural_similarity

    from edtalk.io import from_uint8
    from metrics.image import SSIM

    target = next(iter(ground_truth("builtin"))).frames[:3]
    preds = np.stack([cv2.GaussianBlur(f, (5, 5), 1.5) for f in target])
    p, t = from_uint8(preds), from_uint8(target)
    fast = SSIM(uint8_frames=True).values(p, t).numpy()
    ref = [structural_similarity(g, f, channel_axis=-1, data_range=255) for f, g in zip(preds, target)]
    np.testing.assert_array_equal(fast, ref)
    np.testing.assert_allclose(fast, SSIM().values(p, t).numpy(), rtol=0, atol=1e-8)


def test_cli_unbatched_gives_the_default_table(
    clips: tuple[list[Any], list[Path]],
    tmp_path: Path,
    inception_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`edtalk evaluate --unbatched` (the path before batching) writes the default run's numbers."""
    import json

    from edtalk.cli import main

    judges = tmp_path / "judges"
    judges.mkdir()
    (judges / WEIGHT_FILES["inception"]).write_bytes(inception_file.read_bytes())
    folder = clips[1][0].parent
    out = {}
    for flag in ([], ["--unbatched"]):
        target = tmp_path / ("unbatched" if flag else "default")
        monkeypatch.setenv("EDTALK_CACHE", str(target / "cache"))
        argv = ["evaluate", "--videos", f"m={folder}", "--max-clips", "2", "--weights-dir", str(judges)]
        assert main([*argv, "--out", str(target), "--no-progress", *flag]) == 0
        out[bool(flag)] = json.loads((target / "metrics.json").read_text())["metrics"]["m"]
    _same(out[False], out[True])
