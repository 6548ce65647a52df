"""EAT's MEAD protocol and the Emotion-FAN judge against rewrites of the reference scripts' steps.

Each reference below is written out here from the protocol's description (docs/protocols.md), not taken
from `metrics.eat`: skimage on the same crops, the linspace pairing as integer arithmetic, the LMD sums,
the Emotion-FAN pooling in numpy, scipy's sqrtm for FID, the FFmpeg CLI for the re-encode. Media are
real: PyAV-written clips of `skimage.data.astronaut()` (dlib finds the face).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from skimage.data import astronaut
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from edtalk.cli import main
from edtalk.io import read_video, write_video
from metrics import eat
from metrics.judges.emotion_fan import EMOTION_FAN_LABELS, EmotionFAN
from metrics.judges.inception_imagenet import InceptionImageNet
from metrics.runner import WEIGHT_FILES, eat_clip_id, find_videos, load_emotion_fan, read_clip_list
from tests.avclips import FFMPEG, NO_FFMPEG


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    """A 256 x 256 RGB face (the astronaut's head and shoulders)."""
    return cv2.resize(astronaut()[0:300, 80:380], (256, 256), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def aligner() -> eat.EatAligner:
    return eat.EatAligner()


def _fan_file(path: Path, drop: str | None = None, extra_fc: bool = False) -> Path:
    """A random-init Emotion-FAN file in the released layout: {epoch, state_dict, accuracy, name}, module.*."""
    torch.manual_seed(0)
    state = {f"module.{k}": v for k, v in EmotionFAN().state_dict().items() if k != drop}
    if extra_fc:
        state |= {"module.fc.weight": torch.zeros(7, 512), "module.fc.bias": torch.zeros(7)}
    torch.save({"epoch": 61, "state_dict": state, "accuracy": torch.tensor(84.3655), "name": "t"}, path)
    return path


# -- Emotion-FAN ------------------------------------------------------------------------------------
def test_emotion_fan_file_loads_strictly_and_a_missing_key_fails_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _fan_file(tmp_path / "self_relation-attention_61_84.3655")
    assert len(torch.load(path, weights_only=True)["state_dict"]) == 128  # the released file's key count
    net = load_emotion_fan(path)
    assert torch.equal(net.pred_fc2.weight, torch.load(path)["state_dict"]["module.pred_fc2.weight"])
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    load_emotion_fan(_fan_file(tmp_path / "with_fc", extra_fc=True))  # module.fc.* dropped as EAT does
    assert main(["weights", "inspect", str(path), "--kind", "emotion_fan"]) == 0
    assert "emotion_fan" in capsys.readouterr().out
    bad = _fan_file(tmp_path / "bad", drop="layer3.1.bn2.running_var")
    with pytest.raises(ValueError) as err:
        load_emotion_fan(bad)
    assert "layer3.1.bn2.running_var" in str(err.value) and "\n" not in str(err.value)


def test_emotion_fan_pooling_matches_a_numpy_rewrite_with_its_quirk() -> None:
    torch.manual_seed(1)
    net = EmotionFAN().eval()
    f = torch.rand(9, 512) * 2
    alpha = net.alpha(f)
    ours = net.pool(f, alpha).detach().numpy()

    fn, an = f.numpy().astype(np.float64), alpha.detach().numpy().astype(np.float64)
    wb, bb = (t.detach().numpy().astype(np.float64) for t in (net.beta[0].weight, net.beta[0].bias))
    w2, b2 = (t.detach().numpy().astype(np.float64) for t in (net.pred_fc2.weight, net.pred_fc2.bias))
    vm = (fn * an).sum(0) / an.sum()
    cat = np.concatenate([fn, np.repeat(vm[None], len(fn), 0)], 1)
    beta = 1 / (1 + np.exp(-(cat @ wb.T + bb)))
    quirk = (cat * an).sum(0) / (an * beta).sum()  # numerator alpha only, denominator alpha * beta
    np.testing.assert_allclose(ours, quirk @ w2.T + b2, rtol=1e-5, atol=1e-5)
    proper = (cat * an * beta).sum(0) / (an * beta).sum()
    assert np.abs(proper @ w2.T + b2 - ours).max() > 1e-3  # the quirk is kept, not "fixed"

    frames = torch.rand(5, 3, 224, 224)
    whole = net(frames, batch_size=64)
    torch.testing.assert_close(net(frames, batch_size=2), whole, rtol=1e-5, atol=1e-5)


def test_emotion_fan_labels_and_clip_names() -> None:
    assert EMOTION_FAN_LABELS == (
        "happy",
        "angry",
        "disgust",
        "fear",
        "sad",
        "neutral",
        "surprised",
        "contempt",
    )
    assert eat.emotion_fan_label("W015#sad#level_3#005") == 4
    assert eat.emotion_fan_label("M003_M003_disgusted_1_001") == 2
    assert eat.emotion_fan_label("M030#contempt#level_2#010") == 7
    with pytest.raises(ValueError, match="cannot read a MEAD emotion"):
        eat.emotion_fan_label("clip42")


def test_emotion_fan_inputs_are_face_chips_in_unit_range(face: np.ndarray) -> None:
    noise = np.random.default_rng(0).integers(0, 255, face.shape, dtype=np.uint8)
    x = eat.EmotionFANInputs()(np.stack([face, noise, face]))
    assert x.shape == (2, 3, 224, 224)  # the faceless frame is dropped
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0 and float(x.mean()) > 0.1  # ToTensor, no mean/std
    torch.testing.assert_close(x[0], x[1])


# -- alignment, crops, pairing, PSNR / SSIM ------------------------------------------------------------
def _reference_crop(frame: np.ndarray, aligner: eat.EatAligner) -> np.ndarray | None:
    """EAT's crop_and_align as described: dlib(1 upsample) on BGR2GRAY of RGB, first face, 27..44 -> template."""
    from skimage.transform import SimilarityTransform, warp

    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    rects = aligner.detector(grey, 1)
    if len(rects) == 0:
        return None
    pts = np.array([[p.x, p.y] for p in aligner.predictor(grey, rects[0]).parts()])
    tf = SimilarityTransform.from_estimate(eat.EAT_TEMPLATE, pts[27:45].astype(np.float32))
    return np.array(warp(frame, tf, output_shape=(163, 163)) * 255, dtype=np.uint8)[1:129, 1:129]


def test_aligned_crop_matches_the_reference_and_undoes_a_shift(
    face: np.ndarray, aligner: eat.EatAligner
) -> None:
    crop = aligner.crop(face)
    expected = _reference_crop(face, aligner)
    assert crop is not None and expected is not None and crop.shape == (128, 128, 3)
    np.testing.assert_array_equal(crop, expected)
    shifted = np.roll(face, 2, axis=1)
    moved = aligner.crop(shifted)
    assert moved is not None
    whole = peak_signal_noise_ratio(face, shifted)
    aligned = peak_signal_noise_ratio(crop, moved)
    assert aligned > whole + 3  # alignment takes the 2-px shift out (the protocol's point)
    assert aligner.crop(np.zeros_like(face)) is None


def test_pair_indices_are_linspace_floors() -> None:
    for n in range(1, 40):
        for length in range(1, n + 1):
            assert eat.pair_indices(n, length).tolist() == [int(i * (n / length)) for i in range(length)]
    # float steps, as the reference: 11 * (30 / 22) = 14.999... -> 14, where exact arithmetic says 15
    assert eat.pair_indices(30, 22)[11] == 14
    assert eat.fid_indices(13).tolist() == [0, 2, 5, 7, 10] and eat.fid_indices(3).tolist() == [0, 1, 2]


def test_mp4v_roundtrip_keeps_colours() -> None:
    crops = np.zeros((4, 128, 128, 3), np.uint8)
    crops[..., 0] = 200  # red
    back = eat.mp4v_roundtrip(crops)
    assert back.shape == crops.shape
    assert np.abs(back.astype(int) - crops).mean() < 4


def test_psnr_ssim_are_means_over_all_frames_of_all_clips(face: np.ndarray) -> None:
    rng = np.random.default_rng(2)
    gt_a = np.stack([np.roll(face[64:192, 64:192], i, 0) for i in range(10)])
    gt_b = gt_a[:6]

    def noisy(x: np.ndarray) -> np.ndarray:  # noise growing over the clip, so frame and clip means differ
        return np.clip(x + rng.normal(0, 6 + 4 * np.arange(len(x))[:, None, None, None], x.shape), 0, 255)

    fake_a, fake_b = noisy(gt_a[:7]).astype(np.uint8), noisy(gt_b).astype(np.uint8)
    values = []
    for fake, gt in ((fake_a, gt_a), (fake_b, gt_b)):
        length = min(len(fake), len(gt))
        for i in range(length):
            f, g = fake[i * len(fake) // length], gt[i * len(gt) // length]
            values.append((peak_signal_noise_ratio(g, f), structural_similarity(g, f, channel_axis=-1)))
    scorer = eat.EatScorer(eat.EatJudges(aligner=None))  # type: ignore[arg-type]
    for fake, gt in ((fake_a, gt_a), (fake_b, gt_b)):
        p, s = eat.psnr_ssim_frames(fake, gt)
        scorer.psnr += p
        scorer.ssim += s
    summary = scorer.summary()
    ref = np.array(values)
    assert summary["psnr"] == pytest.approx(ref[:, 0].mean(), abs=1e-9)
    assert summary["ssim"] == pytest.approx(ref[:, 1].mean(), abs=1e-9)
    clip_mean = np.mean([ref[:7, 0].mean(), ref[7:, 0].mean()])
    assert abs(summary["psnr"] - clip_mean) > 1e-3  # frame mean, not clip mean


# -- LMD ----------------------------------------------------------------------------------------------
def test_lmd_arithmetic_matches_a_loop_rewrite() -> None:
    rng = np.random.default_rng(3)
    fake = [rng.integers(0, 128, (68, 2)) for _ in range(6)]
    gt = [rng.integers(0, 128, (68, 2)) for _ in range(6)]
    fake[2] = None  # no face in the result: the frame is skipped
    gt[4] = None
    m_sum = f_sum = 0.0
    valid = 0
    for p, g in zip(fake, gt):
        if p is None or g is None:
            continue
        for pts, scale in ((slice(48, 68), "m"), (slice(0, 68), "f")):
            a, b = p[pts].astype(float), g[pts].astype(float)
            a, b = a - a.mean(0), b - b.mean(0)
            d = sum(((a[i, 0] - b[i, 0]) ** 2 + (a[i, 1] - b[i, 1]) ** 2) ** 0.5 for i in range(len(a)))
            m_sum, f_sum = (m_sum + d, f_sum) if scale == "m" else (m_sum, f_sum + d)
        valid += 1
    got = eat.lmd_clip(fake, gt)
    assert got is not None
    assert got[0] == pytest.approx(m_sum / (valid * 20), rel=1e-12)
    assert got[1] == pytest.approx(f_sum / (valid * 68), rel=1e-12)
    moved = [None if p is None else p + 7 for p in fake]
    assert eat.lmd_clip(moved, gt) == pytest.approx(got)  # each set centred on its mean
    assert eat.lmd_clip([None], [gt[0]]) is None


# -- FID ----------------------------------------------------------------------------------------------
def test_fid_inputs_are_bgr_bilinear_299() -> None:
    crop = np.zeros((1, 128, 128, 3), np.uint8)
    crop[..., 0] = 255  # red
    x = eat.fid_inputs(crop)
    assert x.shape == (1, 3, 299, 299) and x.dtype == torch.float32
    assert float(x[0, 2].min()) == 1.0 and float(x[0, 0].max()) == 0.0  # BGR order, /255
    ramp = np.tile(np.arange(128, dtype=np.uint8)[None, :, None], (128, 1, 3))[None]
    expected = cv2.resize(ramp[0].astype(np.float32) / 255, (299, 299), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(eat.fid_inputs(ramp)[0, 0].numpy(), expected[..., 2])


def test_frechet_distance_equals_scipy_sqrtm_where_that_is_accurate() -> None:
    from scipy import linalg

    rng = np.random.default_rng(4)
    for n1, n2, d in ((300, 200, 24), (15, 25, 48)):
        a = rng.normal(size=(n1, d)).astype(np.float32)
        b = (rng.normal(size=(n2, d)) * 1.4 + 0.3).astype(np.float32)
        s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
        covmean = linalg.sqrtm(s1.dot(s2))
        diff = a.mean(0) - b.mean(0)
        ref = diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean.real)
        assert eat.frechet_distance(a, b) == pytest.approx(ref, rel=1e-6)


def test_inception_features_match_torchvision_mixed_7c_hook(tmp_path: Path) -> None:
    from torchvision.models import inception_v3

    torch.manual_seed(5)
    ref = inception_v3(weights=None, aux_logits=True, transform_input=True, init_weights=True).eval()
    path = tmp_path / WEIGHT_FILES["inception_imagenet"]
    torch.save(ref.state_dict(), path)
    ours = InceptionImageNet.from_file(path)
    grabbed: list[torch.Tensor] = []
    ref.Mixed_7c.register_forward_hook(lambda m, i, o: grabbed.append(o))
    x = torch.rand(2, 3, 299, 299)
    with torch.no_grad():
        ref(x * 2 - 1)
        got = ours(x)
    expected = torch.nn.functional.adaptive_avg_pool2d(grabbed[0], 1).flatten(1)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    state = ref.state_dict()
    state.pop("fc.bias")
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=r"fc\.bias"):
        InceptionImageNet.from_file(tmp_path / "bad.pth")


# -- re-encode ------------------------------------------------------------------------------------------
# The containers RGB exports and image-sequence tools write, and YUV ones: (name, ffmpeg output args).
REENCODE_INPUTS = {
    "png_sequence": None,  # the PNG files themselves (image2 demuxer)
    "rgb24_mov": ("in.mov", "-c:v", "qtrle"),
    "png_mkv": ("in.mkv", "-c:v", "png"),
    "yuv420p_mp4": ("in.mp4", "-pix_fmt", "yuv420p"),
    "yuvj422p_avi": ("in.avi", "-c:v", "mjpeg", "-pix_fmt", "yuvj422p"),
}


def _encoded(path: Path) -> tuple[str, str | None, int]:
    """(pixel format, H.264 profile, colour range) of a video's first stream."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frame = next(container.decode(stream))
        return frame.format.name, stream.codec_context.profile, int(frame.color_range)


def _source(tmp_path: Path, frames: np.ndarray, kind: str) -> Path:
    """`frames` stored as `kind` (REENCODE_INPUTS) by the ffmpeg CLI, from a PNG sequence."""
    from tests.avclips import ffmpeg

    for i, frame in enumerate(frames):
        cv2.imwrite(str(tmp_path / f"f{i:03d}.png"), frame[..., ::-1])
    pattern = str(tmp_path / "f%03d.png")
    spec = REENCODE_INPUTS[kind]
    if spec is None:
        return Path(pattern)
    ffmpeg("-framerate", "25", "-i", pattern, *spec[1:], str(tmp_path / spec[0]))
    return tmp_path / spec[0]


@pytest.mark.skipif(FFMPEG is None, reason=NO_FFMPEG)
@pytest.mark.parametrize("kind", list(REENCODE_INPUTS))
def test_reencode_matches_the_ffmpeg_cli(tmp_path: Path, face: np.ndarray, kind: str) -> None:
    """`reencode_25fps` = `ffmpeg -i X -r 25 Y.mp4`: the same pixel format, profile and range (RGB input:
    yuv444p, High 4:4:4 Predictive, limited range), the same quality against the source."""
    from tests.avclips import ffmpeg

    frames = np.stack([np.roll(face[::2, ::2], 3 * i, axis=1) for i in range(10)])  # 10 x 128 x 128 x 3
    src = _source(tmp_path, frames, kind)
    ours = eat.reencode_25fps(src, tmp_path / "ours.mp4")
    ffmpeg("-i", str(src), "-r", "25", str(tmp_path / "cli.mp4"))
    assert _encoded(ours) == _encoded(tmp_path / "cli.mp4")
    if kind in ("png_sequence", "rgb24_mov", "png_mkv"):
        assert _encoded(ours) == ("yuv444p", "High 4:4:4 Predictive", 0)
    source = read_video(src, fps=None)
    a, b = read_video(ours, fps=None), read_video(tmp_path / "cli.mp4", fps=None)
    assert a.shape == b.shape == source.shape
    # the same x264 settings (crf 23, preset medium, frame threads): bit-identical here (x264 164 CLI, 165 wheel);
    # other builds may differ slightly.
    # The bug this guards against (RGB read as limited range, all-intra) cost 7 dB here.
    assert abs(peak_signal_noise_ratio(source, a) - peak_signal_noise_ratio(source, b)) < 0.1
    assert np.array_equal(a, b) or peak_signal_noise_ratio(b, a) > 40


@pytest.mark.skipif(FFMPEG is None, reason=NO_FFMPEG)
def test_rgb_result_shorter_than_its_ground_truth_pairs_by_linspace(
    tmp_path: Path, face: np.ndarray, aligner: eat.EatAligner
) -> None:
    """A lossless RGB result 3 frames shorter than its ground truth: EAT's PSNR/SSIM = a rewrite that
    re-encodes with the ffmpeg CLI and pairs frame int(i * 13 / 10) of the truth with frame i."""
    from types import SimpleNamespace

    from tests.avclips import ffmpeg

    truth = np.stack([np.roll(face, i, axis=1) for i in range(13)])
    result = truth[:10]
    src = _source(tmp_path, result, "rgb24_mov")
    gt = SimpleNamespace(clip_id="W015#sad#level_3#005", frames=truth, cache={})
    row = eat.EatScorer(eat.EatJudges(aligner)).add(gt, src)
    assert row["frames"] == 10
    ffmpeg("-i", str(src), "-r", "25", str(tmp_path / "cli.mp4"))
    fake = eat.mp4v_roundtrip(aligner.crops(read_video(tmp_path / "cli.mp4", fps=None)))
    real = eat.mp4v_roundtrip(aligner.crops(truth))
    pairs = [(fake[i], real[int(i * (13 / 10))]) for i in range(10)]
    psnr = np.mean([peak_signal_noise_ratio(g, f) for f, g in pairs])
    ssim = np.mean([structural_similarity(g, f, channel_axis=-1) for f, g in pairs])
    assert row["psnr"] == pytest.approx(psnr, abs=0.3) and row["ssim"] == pytest.approx(ssim, abs=0.005)


# -- clip names and the whole protocol ------------------------------------------------------------------
def test_eat_clip_names_map_to_our_mead_ids(tmp_path: Path) -> None:
    assert eat_clip_id("W015_W015_sad_3_005") == "W015#sad#level_3#005"
    assert eat_clip_id("M003_ang_1_012") == "M003#angry#level_1#012"
    assert eat_clip_id("M030_M030_disgusted_2_001") == "M030#disgusted#level_2#001"
    assert eat_clip_id("S01#happy#level_3#001") is None
    listing = tmp_path / "list.txt"
    listing.write_text("W015_W015_sad_3_005.mp4\nM003#angry#level_1#001\n")
    assert read_clip_list(listing) == ["W015#sad#level_3#005", "M003#angry#level_1#001"]
    (tmp_path / "res").mkdir()
    (tmp_path / "res" / "W009_W009_happy_3_002.mp4").write_bytes(b"")
    assert list(find_videos(tmp_path / "res")) == ["W009#happy#level_3#002"]


@pytest.mark.slow
def test_evaluate_protocol_eat_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from metrics.runner import ground_truth

    weights = tmp_path / "weights"
    weights.mkdir()
    _fan_file(weights / WEIGHT_FILES["emotion_fan"])
    torch.manual_seed(6)
    torch.save(InceptionImageNet().net.state_dict(), weights / WEIGHT_FILES["inception_imagenet"])
    gt = next(iter(ground_truth("builtin")))
    frames = gt.frames[:12]
    write_video(tmp_path / "same" / f"{gt.clip_id}.mp4", frames)
    write_video(tmp_path / "shift" / f"{gt.clip_id}.mp4", np.roll(frames, 2, axis=2))
    args = [
        "evaluate",
        "--protocol",
        "eat",
        "--videos",
        f"same={tmp_path / 'same'}",
        f"shift={tmp_path / 'shift'}",
    ]
    args += [
        "--split",
        "builtin",
        "--max-clips",
        "1",
        "--weights-dir",
        str(weights),
        "--out",
        str(tmp_path / "out"),
    ]
    assert main(args) == 0
    printed = capsys.readouterr()
    assert "| method | psnr ↑ | ssim ↑ | fid ↓ | m_lmd ↓ | f_lmd ↓ | acc_emo (Emotion-FAN) ↑ |" in printed.out
    assert "skipping lse_d: S3FD weights not found" in printed.err
    result = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert result["protocol"] == "eat"
    same, shift = result["metrics"]["same"], result["metrics"]["shift"]
    for scores in (same, shift):
        assert 0 <= scores["emotion_fan_acc"] <= 100 and np.isfinite(scores["fid"])
    # the ground truth (longer) is resampled to the result's 12 frames, so "same" is not identical; the
    # aligned protocol scores the shifted copy like the unshifted one, where whole frames would differ a lot
    assert abs(same["psnr"] - shift["psnr"]) < 2.0


def test_emotion_judge_with_a_missing_key_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = _fan_file(tmp_path / "fan", drop="alpha.0.weight")
    (tmp_path / "res").mkdir()
    args = [
        "evaluate",
        "--videos",
        f"m={tmp_path / 'res'}",
        "--emotion-judge",
        str(bad),
        "--weights-dir",
        str(tmp_path),
    ]
    assert main([*args, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert any("alpha.0.weight" in line and str(bad) in line for line in err)


def test_presets_load_their_judges_and_name_missing_files(tmp_path: Path) -> None:
    from metrics.runner import load_judges

    eat_judges = load_judges(tmp_path, protocol="eat")
    skipped = eat_judges.skipped()
    assert set(skipped) == {"fid", "lse_d", "lse_c", "emotion_fan_acc"}
    assert WEIGHT_FILES["inception_imagenet"] in skipped["fid"]
    assert WEIGHT_FILES["emotion_fan"] in skipped["emotion_fan_acc"]
    assert eat_judges.alexnet is None and eat_judges.emotion is None  # not part of EAT's protocol
    sync = load_judges(tmp_path, protocol="syncnet").skipped()
    assert set(sync) == {"lse_d", "lse_c"}
    assert set(load_judges(tmp_path).skipped()) == {"lpips", "fid", "lse_d", "lse_c", "emotion_acc"}  # ours
    with pytest.raises(ValueError, match="--protocol must be one of"):
        load_judges(tmp_path, protocol="paper")
