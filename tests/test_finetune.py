"""Person-specific fine-tuning: the main job's measurement (`edtalk.apps.finetune_eval`) on a real tiny run,
and the user's command (`edtalk finetune`) refusing bad videos with one line and exit status 2."""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from edtalk.config import GeneratorConfig
from edtalk.nn.generator import Generator
from edtalk.weights import load_generator, save_checkpoint


@pytest.fixture(scope="module")
def shards() -> Path:
    from datamodules.synthetic import ensure_builtin

    return ensure_builtin()


@pytest.fixture(scope="module")
def shared_generator(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny full generator in our format, read-only (as a shared checkpoint should be)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("shared") / "generator.pt"
    save_checkpoint(Generator(GeneratorConfig.tiny("full")), "generator", path)
    path.chmod(0o444)
    return path


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_finetune_eval_returns_the_keys_and_keeps_the_shared_checkpoint(
    tmp_path: Path, shards: Path, shared_generator: Path, one_thread: None
) -> None:
    from edtalk.apps.finetune_eval import KEYS, STRIP, finetune_eval

    digest, mtime = _sha256(shared_generator), shared_generator.stat().st_mtime_ns
    out = tmp_path / "ft"
    result = finetune_eval(
        shared_generator, out, shards, profile="debug", steps=3, clips=1, log=lambda s: None
    )

    assert list(result) == list(KEYS)
    assert all(isinstance(v, float) and math.isfinite(v) for v in result.values()), result
    for key in ("psnr_before", "psnr_after", "psnr_copy_source"):
        assert 5.0 < result[key] < 50.0, (key, result[key])
    assert result["psnr_after"] != result["psnr_before"]  # scored with the fine-tuned weights
    assert result["m_lmd_before"] >= 0 and result["m_lmd_after"] >= 0
    assert -1.0 <= result["csim_before"] <= 1.0 and -1.0 <= result["csim_after"] <= 1.0
    assert _sha256(shared_generator) == digest and shared_generator.stat().st_mtime_ns == mtime

    details = json.loads((out / "finetune.json").read_text())
    split = details["split"]
    from datamodules.synthetic import TEST_SPEAKERS

    assert (
        split["speaker"] in TEST_SPEAKERS and len(split["train"]) == 4
    )  # a held-out person, one clip per emotion
    assert len({c.split("#")[1] for c in split["train"]}) == 4
    assert not set(split["scored"]) & set(split["train"]) and len(split["scored"]) == 1
    assert details["generator_sha256"] == digest
    # the floor: the scored clip's first frame copied to every frame, recomputed here
    from edtalk.apps.finetune_eval import read_clips
    from edtalk.apps.learning import psnr
    from edtalk.io import from_uint8
    from metrics.judges import resize_frames

    (gt,) = read_clips(shards, "test", split["scored"])
    frames = resize_frames(from_uint8(gt.frames).float(), GeneratorConfig.tiny("full").size)
    assert result["psnr_copy_source"] == pytest.approx(psnr(frames[:1].expand_as(frames), frames))

    tuned = load_generator(out / "finetuned.pt")  # the new file loads into the generator
    shared = load_generator(shared_generator)
    assert tuned.cfg == shared.cfg
    moved = [k for k, v in shared.state_dict().items() if not torch.equal(v, tuned.state_dict()[k])]
    assert moved  # fine-tuning changed weights of the copy

    from PIL import Image

    with Image.open(out / STRIP) as strip:  # rows before | after | ground truth, 6 frames at the GT size
        h, w = gt.frames.shape[1:3]
        assert strip.size == (6 * w, 3 * h)
        rows = np.asarray(strip).reshape(3, h, 6 * w, 3)
    assert np.abs(rows[2, :, :w].astype(int) - gt.frames[0].astype(int)).mean() < 1.0


def _video(path: Path, seconds: float, fps: int, face: bool = False) -> Path:
    from edtalk.io import write_video

    n = max(1, round(seconds * fps))
    rng = np.random.default_rng(0)
    frames = rng.integers(90, 110, (n, 128, 128, 3), dtype=np.uint8)  # flat grey noise: no face
    audio = (0.1 * np.sin(np.arange(round(seconds * 16000)) * 0.05)).astype(np.float32)
    return write_video(path, frames, fps=fps, audio=audio)


@pytest.mark.parametrize(
    ("seconds", "fps", "message"),
    [
        (0.6, 25, r"is 0\.6 s long: fine-tuning needs at least 2 s"),
        (3.0, 10, r"10\.0 fps is below 20"),
        (2.4, 25, r"no face"),
    ],
    ids=["too-short", "wrong-fps", "no-face"],
)
def test_finetune_command_refuses_bad_videos_in_one_line(
    tmp_path: Path,
    shared_generator: Path,
    capsys: pytest.CaptureFixture[str],
    seconds: float,
    fps: int,
    message: str,
) -> None:
    from edtalk.cli import main

    video = _video(tmp_path / "me.mp4", seconds, fps)
    out = tmp_path / "ft"
    code = main(["finetune", "--video", str(video), "--checkpoint", str(shared_generator), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("edtalk finetune: error: ")
    assert str(video) in err[0] and re.search(message, err[0]), err[0]
    assert not (out / "finetuned.pt").exists()


def test_finetune_command_refuses_a_file_that_is_no_video(
    tmp_path: Path, shared_generator: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edtalk.cli import main

    fake = tmp_path / "me.mp4"
    fake.write_text("not a video")
    code = main(
        ["finetune", "--video", str(fake), "--checkpoint", str(shared_generator), "--out", str(tmp_path)]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and str(fake) in err[0]


def test_frames_of_several_clips_carry_their_mouth_boxes(shards: Path) -> None:
    from datamodules import FramesDataModule
    from datamodules.shards import iter_clips

    clips = {c.key: c for c in iter_clips(shards, "test")}
    keys = sorted(clips)[:2]
    dm = FramesDataModule(shards, image_size=32, batch_size=4, num_workers=0, clips=keys[::-1])
    frames = dm.load_frames()
    assert len(frames) == sum(clips[k].num_frames for k in keys)  # joined in natural order of the ids
    assert np.array_equal(frames.boxes, np.concatenate([clips[k].bbox for k in keys]))
    item = dm.train_dataloader().dataset[0]
    target = int(dm.split()[0][0])
    assert torch.allclose(item["target_box"], torch.from_numpy(frames.boxes[target] * 32 / 256))
    with pytest.raises(ValueError, match=r"data.clip or data.clips"):
        FramesDataModule(shards, clip=keys[0], clips=keys)
    with pytest.raises(ValueError, match=r"no clips of clips \['S99'\]"):
        FramesDataModule(shards, clips=["S99"]).load_frames()


def test_finetune_command_fits_a_small_recording_and_scores_its_held_out_frames(
    tmp_path: Path, shared_generator: Path, shards: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The user's chain end to end on a QCIF-sized recording (a built-in raw clip at 96², with its sound):
    the face is below what dlib's detector finds at that size, so preprocessing must retry it at twice the
    size; then the fit, the new file, and `holdout.json` (the last 20 % of the frames before, after, and
    the first frame copied), whose numbers are recomputed here from the files."""
    import cv2

    from datamodules.preprocess.landmarks import get_backend
    from datamodules.samplers import to_image_tensor
    from edtalk.apps.finetune import HOLDOUT, HOLDOUT_STRIP
    from edtalk.apps.learning import psnr
    from edtalk.cli import main
    from edtalk.io import read_audio, read_video, to_uint8, uint8_to_float, write_video
    from edtalk.stages.reconstruct import drive

    raw = next((shards.parent / "raw").glob("S01/video/front/neutral/level_1/*.mp4"))
    small = np.stack([cv2.resize(f, (96, 96), interpolation=cv2.INTER_AREA) for f in read_video(raw)])
    assert not len(get_backend("dlib").detect(small[0]))  # too small for the detector as it is
    video = write_video(tmp_path / "me.mp4", small, fps=25, audio=read_audio(raw))
    digest = _sha256(shared_generator)
    out = tmp_path / "ft"

    code = main(
        [
            "finetune",
            "--video",
            str(video),
            "--checkpoint",
            str(shared_generator),
            "--out",
            str(out),
            "--debug",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert _sha256(shared_generator) == digest and (out / "finetuned.pt").is_file()
    scores = json.loads((out / HOLDOUT).read_text())
    assert f"{scores['after']:.2f} dB after" in printed
    frames = len(read_video(raw))
    assert scores["frames_validated"] == frames - round(0.8 * frames)

    # recomputed: the validation frames are the clip's last 20 %, rendered from its first frame
    from datamodules.shards import iter_clips, read_index

    root = out / "shards"
    (clip,) = [c for s in read_index(root)["splits"] for c in iter_clips(root, s)]
    crops = uint8_to_float(
        to_image_tensor(clip.frames(range(clip.num_frames)), GeneratorConfig.tiny("full").size)
    )
    held = crops[round(0.8 * len(crops)) :]
    assert scores["copy_source"] == pytest.approx(psnr(crops[:1].expand_as(held), held), abs=1e-4)
    for name, path in (("before", shared_generator), ("after", out / "finetuned.pt")):
        with torch.no_grad():
            rendered = drive(load_generator(path).eval(), crops[:1].expand_as(held), held)
        assert scores[name] == pytest.approx(psnr(rendered, held), abs=1e-3)
    from PIL import Image

    with Image.open(out / HOLDOUT_STRIP) as strip:  # rows before | after | ground truth, 6 frames
        size = held.shape[-1]
        assert strip.size == (6 * size, 3 * size)
        truth = np.asarray(strip)[2 * size :, :size].astype(int)
    assert np.abs(truth - to_uint8(held[0]).numpy().astype(int)).max() <= 1
