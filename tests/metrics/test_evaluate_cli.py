"""`edtalk evaluate --videos ... --split builtin`, `edtalk weights status`, and skip messages for absent judges."""

from __future__ import annotations

import json
from itertools import islice
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torchvision.models import alexnet

from edtalk.cli import main
from edtalk.io import write_video
from metrics.judges import SyncNetV2
from metrics.runner import WEIGHT_FILES, ground_truth, load_judges


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory, inception_file: Path) -> Path:
    """Random-valued judge files under their expected names (numbers are meaningless, plumbing is real)."""
    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    torch.save(alexnet(weights=None).state_dict(), folder / WEIGHT_FILES["alexnet"])
    torch.save(SyncNetV2().state_dict(), folder / WEIGHT_FILES["syncnet"])
    (folder / WEIGHT_FILES["inception"]).write_bytes(inception_file.read_bytes())
    return folder


def test_evaluate_two_methods_on_builtin(
    tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gt = next(iter(ground_truth("builtin")))
    frames = gt.frames[:20]
    write_video(tmp_path / "ours" / f"{gt.clip_id}.mp4", frames, audio=gt.wav[: 20 * 640])
    blurred = np.stack([cv2.GaussianBlur(f, (9, 9), 3) for f in frames])
    write_video(tmp_path / "other" / f"{gt.clip_id}.mp4", blurred)
    write_video(tmp_path / "other" / "S99#happy#level_1#001.mp4", blurred[:8])
    out = tmp_path / "out"
    args = ["evaluate", "--videos", f"ours={tmp_path / 'ours'}", f"other={tmp_path / 'other'}"]
    args += ["--split", "builtin", "--out", str(out), "--max-clips", "1", "--weights-dir", str(weights)]
    assert main(args) == 0
    printed = capsys.readouterr()
    assert (
        "| method | psnr ↑ | ssim ↑ | lpips ↓ | fid ↓ | csim ↑ | m_lmd ↓ | f_lmd ↓ | lse_d ↓ | lse_c ↑ |"
        in printed.out
    )
    assert "other: 1 extra videos: ['S99#happy#level_1#001']" in printed.err
    assert "skipping emotion_acc: emotion classifier not found" in printed.err
    result = json.loads((out / "metrics.json").read_text())
    ours, other = result["metrics"]["ours"], result["metrics"]["other"]
    assert ours["psnr"] > other["psnr"] and ours["ssim"] > other["ssim"] and ours["f_lmd"] < other["f_lmd"]
    assert np.isnan(ours["fid"]) or isinstance(ours["fid"], float)
    assert result["extra"]["other"] == ["S99#happy#level_1#001"]
    rows = (out / "per_clip.csv").read_text().splitlines()
    assert rows[0].startswith("method,clip_id,frames,psnr,ssim,lpips") and len(rows) == 3
    assert (out / "plots" / "psnr.png").stat().st_size > 0 and (out / "table.md").is_file()


def test_absent_judges_are_skipped_with_their_files_named(tmp_path: Path) -> None:
    judges = load_judges(tmp_path)
    skipped = judges.skipped()
    assert set(skipped) == {"lpips", "fid", "lse_d", "lse_c", "emotion_acc"}
    assert "syncnet_v2.model" in skipped["lse_d"] and "robots.ox.ac.uk" in skipped["lse_d"]
    assert judges.dlib is not None  # ships with face-recognition-models: CSIM / LMD always available


def test_weights_status_lists_files(
    tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["weights", "status", "--dir", str(tmp_path)]) == 0
    empty = capsys.readouterr().out
    assert "MISSING  syncnet_v2.model" in empty and "get it:" in empty
    assert "found    shape_predictor_68_face_landmarks.dat" in empty
    assert main(["weights", "status", "--dir", str(weights)]) == 0
    assert "found    syncnet_v2.model" in capsys.readouterr().out


def test_bad_videos_argument() -> None:
    assert main(["evaluate", "--videos", "nodir"]) == 2


def test_builtin_ground_truth_has_factors() -> None:
    gt = next(iter(islice(ground_truth("builtin"), 1)))
    assert gt.frames.dtype == np.uint8 and gt.frames.shape[1:] == (256, 256, 3)
    assert set(gt.meta["factors"]) >= {"mouth_open", "yaw", "pitch", "roll", "emotion_id"}


def test_checkpoint_mode_renders_and_reports_banks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edtalk.config import GeneratorConfig
    from edtalk.nn.generator import Generator
    from edtalk.weights import save_checkpoint

    ckpt = save_checkpoint(Generator(GeneratorConfig.tiny("full")), "generator", tmp_path / "tiny.pt")
    out = tmp_path / "out"
    args = [
        "evaluate",
        "--checkpoint",
        str(ckpt),
        "--split",
        "builtin",
        "--out",
        str(out),
        "--max-clips",
        "1",
    ]
    assert main([*args, "--weights-dir", str(tmp_path / "none")]) == 0
    assert "| tiny |" in capsys.readouterr().out
    result = json.loads((out / "metrics.json").read_text())
    assert result["orthogonality"]["orthonormality_error"] < 1e-5
    assert set(result["orthogonality"]["overlap"]) == {"mouth-pose", "mouth-exp", "pose-exp"}
    assert -1.0 <= result["disentanglement"]["score"] <= 1.0
    assert len(list((out / "render").glob("*.mp4"))) == 1
    assert (out / "plots" / "gram.png").is_file() and (out / "plots" / "coeff_correlation.png").is_file()


def test_checkpoint_mode_audio_driven_protocol(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--audio2lip adds the audio-driven render (mouth from the clip's audio), scored as its own method."""
    from edtalk.config import GeneratorConfig
    from edtalk.io import probe_video
    from edtalk.nn.audio2lip import Audio2Lip
    from edtalk.nn.generator import Generator
    from edtalk.weights import save_checkpoint, save_official

    ckpt = save_checkpoint(Generator(GeneratorConfig.tiny("full")), "generator", tmp_path / "tiny.pt")
    a2l = save_official(Audio2Lip().eval(), "audio2lip", tmp_path / "Audio2Lip.pt")
    out = tmp_path / "out"
    args = [
        "evaluate",
        "--checkpoint",
        str(ckpt),
        "--audio2lip",
        str(a2l),
        "--out",
        str(out),
        "--max-clips",
        "1",
    ]
    assert main([*args, "--weights-dir", str(tmp_path / "none")]) == 0
    table = capsys.readouterr().out
    assert "| tiny |" in table and "| tiny_audio |" in table
    [video] = list((out / "render_audio").glob("*.mp4"))
    gt = next(iter(islice(ground_truth("builtin"), 1)))
    assert probe_video(video).num_frames == min(len(gt.frames), len(gt.wav) // 640)
    assert main(["evaluate", "--audio2lip", str(a2l), "--videos", f"x={out}"]) == 2


def test_clip_list_restricts_the_ground_truth(tmp_path: Path) -> None:
    from metrics.runner import read_clip_list

    stored = [gt.clip_id for gt in ground_truth("builtin")]
    picked = [stored[3], stored[1]]
    listing = tmp_path / "protocol.txt"
    listing.write_text(f"// a protocol list\n{picked[0]}.mp4\n\n{picked[1]}\n")
    assert read_clip_list(listing) == picked
    (tmp_path / "protocol.json").write_text(json.dumps(picked))
    assert read_clip_list(tmp_path / "protocol.json") == picked
    got = [gt.clip_id for gt in ground_truth("builtin", clips=read_clip_list(listing))]
    assert got == [c for c in stored if c in picked]  # only the listed clips, in stored order
    with pytest.raises(ValueError, match=r"1 listed clips are not in the test shards.*S99#x"):
        list(ground_truth("builtin", clips=[picked[0], "S99#x"]))
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(ValueError, match="empty"):
        read_clip_list(tmp_path / "empty.txt")


def test_csim_frames_scores_the_evenly_spaced_subset(tmp_path: Path) -> None:
    """`csim_frames=k` (the quickstart's quick CSIM) = the mean cosine over exactly those k frames; >= T frames
    is the every-frame protocol; the other metrics do not change."""
    from metrics.functional.fid import evenly_spaced
    from metrics.runner import MethodScorer

    gt = next(iter(ground_truth("builtin")))
    pred = np.stack([cv2.GaussianBlur(f, (7, 7), 2) for f in gt.frames[:12]])
    judges = load_judges(tmp_path)  # no judge files: dlib (ships with its package) only
    assert judges.dlib is not None
    every = MethodScorer(judges).add(gt, pred, gt.wav)
    assert MethodScorer(judges, csim_frames=12).add(gt, pred, gt.wav)["csim"] == pytest.approx(
        every["csim"], abs=1e-9
    )
    four = MethodScorer(judges, csim_frames=4).add(gt, pred, gt.wav)
    idx = evenly_spaced(12, 4)
    src = torch.from_numpy(judges.dlib.embeddings(gt.frames[:1]))[0]
    emb = torch.from_numpy(judges.dlib.embeddings(pred[idx], [judges.dlib.boxes(pred)[i] for i in idx]))
    expected = torch.nn.functional.cosine_similarity(emb, src[None]).mean().item()
    assert four["csim"] == pytest.approx(expected, abs=1e-5)
    assert four["psnr"] == every["psnr"] and four["m_lmd"] == every["m_lmd"]
    with pytest.raises(ValueError, match="csim_frames must be >= 1"):
        MethodScorer(judges, csim_frames=0)
