"""`edtalk preprocess` end to end: broken inputs give a correct skip report, 30 fps is resampled,
and a run killed mid-way resumes without redoing or losing clips."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

from datamodules.shards import iter_clips, jpeg_offsets, read_index, verify_shards
from edtalk.cli import main
from edtalk.io import read_audio, read_video, write_video


@pytest.fixture(scope="module")
def raw_clip(builtin: Path) -> Path:
    """One raw built-in clip (256² talking astronaut, 25 fps, AAC speech)."""
    return next((builtin.parent / "raw").glob("S01/video/front/neutral/level_1/*.mp4"))


def _broken_folder(folder: Path, good: Path) -> dict[str, str]:
    """Inputs and the reason each is expected to be skipped for (None: written)."""
    frames, wav = read_video(good), read_audio(good)
    n = len(frames)
    folder.mkdir()
    shutil.copy(good, folder / "good.mp4")
    idx = np.floor(np.arange(round(n * 30 / 25)) * 25 / 30).astype(int)
    write_video(folder / "fps30.mp4", frames[idx], fps=30, audio=wav)
    data = good.read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 2])
    noise = np.random.default_rng(0).integers(0, 255, frames.shape, dtype=np.uint8)
    write_video(folder / "noface.mp4", noise, audio=wav)
    write_video(folder / "silent.mp4", frames, audio=np.zeros_like(wav))
    write_video(folder / "short.mp4", frames[:10], audio=wav[: 10 * 640])
    write_video(folder / "mismatch.mp4", frames, audio=wav[: len(wav) // 2])
    write_video(folder / "mute.mp4", frames)
    write_video(folder / "twofaces.mp4", np.concatenate([frames, frames[:, :, ::-1]], 2), audio=wav)
    return {
        "good": "", "fps30": "", "truncated": "unreadable video", "noface": "no face", "silent": "silent audio",
        "short": "too short", "mismatch": "length mismatch", "mute": "missing audio", "twofaces": "several faces",
    }  # fmt: skip


def test_broken_inputs_are_reported_and_good_ones_written(tmp_path: Path, raw_clip: Path) -> None:
    expected = _broken_folder(tmp_path / "in", raw_clip)
    out = tmp_path / "out"
    argv = ["preprocess", "--input", str(tmp_path / "in"), "--layout", "folder", "--out", str(out)]
    assert main([*argv, "--workers", "1", "--no-progress"]) == 0
    skipped = {Path(r["file"]).stem: r["reason"] for r in json.loads((out / "skipped.json").read_text())}
    assert skipped == {k: v for k, v in expected.items() if v}
    clips = {c.key: c for c in iter_clips(out, "train")}
    assert sorted(clips) == ["fps30", "good"]
    n = len(read_video(raw_clip))
    for clip in clips.values():
        assert abs(clip.num_frames - n) <= 1, "30 fps input must come out at 25 fps with the same duration"
        assert clip.lmk.shape == (clip.num_frames, 68, 2) and clip.frame(0).shape == (256, 256, 3)
        assert clip.meta["fps"] == 25 and len(clip.mel()) == 1 + clip.num_frames * 640 // 200
    # the 30 fps copy shows the same face motion: landmarks agree with the 25 fps original
    t = min(c.num_frames for c in clips.values())
    assert np.abs(clips["fps30"].lmk[:t] - clips["good"].lmk[:t]).mean() < 3.0
    assert verify_shards(out) == []


def test_killed_run_resumes_without_redoing_finished_clips(tmp_path: Path, raw_clip: Path) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    for i in range(6):
        shutil.copy(raw_clip, folder / f"clip{i}.mp4")
    cmd = [sys.executable, "-m", "edtalk.cli", "preprocess", "--input", str(folder), "--out", str(out)]
    proc = subprocess.Popen([*cmd, "--workers", "1", "--no-progress"], start_new_session=True)
    deadline = time.monotonic() + 120
    while not list((out / ".staging").glob("*.tar")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # a real kill: no cleanup handlers run
    proc.wait()
    staged = sorted((out / ".staging").glob("*.tar"))
    assert 1 <= len(staged) < 6 and not list(out.glob("*.tar")), "killed before packing"
    for path in staged:  # every staged clip is complete; unfinished work only exists as *.partial
        with tarfile.open(path) as tar:
            members = {n.split(".", 1)[1]: tar.extractfile(n).read() for n in tar.getnames()}  # type: ignore[union-attr]
        offsets, _ = jpeg_offsets(members["jpgs"])
        assert len(offsets) - 1 == json.loads(members["json"])["num_frames"] > 0
    done_before = {p.name.removesuffix(".tar") for p in staged}
    from datamodules.preprocess.pipeline import preprocess

    report = preprocess(folder, "folder", out, workers=1, progress=False)
    assert report.already_done == len(done_before) and report.written == 6  # staged clips packed, not redone
    index = read_index(out)
    keys = [c for s in index["shards"] for c in s["clips"]]
    assert sorted(keys) == [f"clip{i}" for i in range(6)]
    assert not list(out.rglob("*.partial")) and not list((out / ".staging").glob("*"))
    # a third run has nothing left to do
    again = preprocess(folder, "folder", out, workers=1, progress=False)
    assert again.written == 0 and again.already_done == 6 and again.total == 6
