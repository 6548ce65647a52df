"""Bad media through `preprocess`, `generate`, `lse` and `evaluate` (README "What happens when").

Every case is a real file written by PyAV (tests/faults/media.py) from the built-in talking clip. Each
command either refuses it with one line naming the file and the problem (exit 2), records a skip with a
reason, or handles it (resampling, padding) and says what it made.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edtalk.cli import main
from edtalk.io import read_audio, read_video
from tests.faults.media import bad_media

FRAMES = 20  # 0.8 s clips keep each run short


@pytest.fixture(autouse=True)
def _one_thread(one_thread: None) -> None:
    """Tiny models: one intra-op thread (`one_thread` in tests/conftest.py)."""


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from datamodules.synthetic import ensure_builtin

    raw = next((ensure_builtin().parent / "raw").glob("S01/video/front/neutral/level_1/*.mp4"))
    frames, wav = read_video(raw, max_frames=FRAMES), read_audio(raw)[: FRAMES * 640]
    return bad_media(tmp_path_factory.mktemp("media"), frames, wav)


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory, media: dict[str, Path]) -> dict[str, Path]:
    from edtalk.config import GeneratorConfig
    from edtalk.nn.audio2lip import Audio2Lip
    from edtalk.nn.generator import Generator
    from edtalk.weights import save_official
    from metrics.judges import SyncNetV2

    d = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    save_official(Generator(GeneratorConfig.tiny("full", size=64)), "edtalk_full", d / "EDTalk.pt")
    save_official(Audio2Lip(), "audio2lip", d / "Audio2Lip.pt")
    torch.save(SyncNetV2().state_dict(), d / "syncnet_v2.model")
    Image.fromarray(read_video(media["good"], max_frames=1)[0]).save(d / "face.png")
    return {p.name: p for p in d.iterdir()}


def one_error(capsys: pytest.CaptureFixture[str], command: str) -> str:
    err = capsys.readouterr().err.strip()
    lines = [line for line in err.splitlines() if line.startswith(f"edtalk {command}: error: ")]
    assert len(lines) == 1, err
    return lines[0]


# -- generate ---------------------------------------------------------------------------------------
# case -> (role of the file, None = written, or a regex of the one error line); frames expected when written
UNREADABLE = r"cannot (read|decode) video .*{name}"
GENERATE: dict[str, tuple[str, str | None, int | None]] = {
    "truncated": ("--lip", UNREADABLE, None),
    "zero_bytes": ("--lip", UNREADABLE, None),
    "image": ("--audio", r"image\.mp4 has no audio stream", None),
    "no_face": ("--lip", r"no_face\.mp4: no face", None),
    "two_faces": ("--lip", r"two_faces\.mp4: several faces", None),
    "fps30": ("--lip", None, FRAMES),
    "fps50": ("--lip", None, FRAMES),
    "vfr": ("--lip", None, None),
    "silent": ("--audio", None, FRAMES),
    "audio_short": ("--audio", None, FRAMES // 2),
    "no_audio": ("--audio", r"no_audio\.mp4 has no audio stream", None),
    "audio_8k": ("--audio", None, FRAMES),
    "audio_48k": ("--audio", None, FRAMES),
}
CROPPED = {"no_face", "two_faces"}  # the cases about faces run the auto-crop; the others are crops already


@pytest.mark.parametrize("case", list(GENERATE))
def test_generate(
    case: str,
    media: dict[str, Path],
    weights: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    role, error, frames = GENERATE[case]
    out = tmp_path / "out.mp4"
    argv = ["generate", "--source", str(weights["face.png"]), role, str(media[case])]
    argv += ["--checkpoint", str(weights["EDTalk.pt"]), "--out", str(out), "--quiet", "--device", "cpu"]
    if role == "--audio":
        argv += ["--audio2lip", str(weights["Audio2Lip.pt"])]
    if case not in CROPPED:
        argv.append("--no-crop")
    status = main(argv)
    if error is not None:
        assert status == 2
        assert re.search(error.format(name=re.escape(media[case].name)), one_error(capsys, "generate"))
        assert not out.exists()
        return
    assert status == 0, capsys.readouterr().err
    n = len(read_video(out))
    if role == "--audio":  # the sound sets the length (an AAC frame at 8 kHz is 3.2 video frames long)
        assert frames is not None and abs(n - frames) <= 4, f"{case}: {n} frames for {frames} frames of sound"
        assert abs(n - len(read_audio(media[case])) / 640) <= 1
    elif frames is not None:
        assert abs(n - frames) <= 1, f"{case}: {n} frames for a {frames}-frame input"
    else:  # variable frame rate: the input's duration at 25 fps
        assert abs(n - len(read_video(media[case]))) <= 1


# -- lse --------------------------------------------------------------------------------------------
# case -> None = scored (a JSON line), or a regex of the one error line
LSE: dict[str, str | None] = {
    "truncated": UNREADABLE,
    "zero_bytes": UNREADABLE,
    "image": r"image\.mp4 has no audio stream",
    "fps50": None,
    "vfr": None,
    "silent": None,
    "audio_short": None,
    "no_audio": r"no_audio\.mp4 has no audio stream",
    "audio_8k": None,
    "audio_48k": None,
}


@pytest.mark.parametrize("case", list(LSE))
def test_lse(
    case: str, media: dict[str, Path], weights: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["lse", str(media[case]), "--weights", str(weights["syncnet_v2.model"]), "--json", "--no-crop"]
    status = main(argv)
    error = LSE[case]
    if error is not None:
        assert status == 2
        assert re.search(error.format(name=re.escape(media[case].name)), one_error(capsys, "lse"))
        return
    assert status == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(last) == {"offset", "lse_d", "lse_c"} and all(np.isfinite(v) for v in last.values())


def test_lse_refuses_a_video_without_a_face(
    media: dict[str, Path], weights: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["lse", str(media["no_face"]), "--weights", str(weights["syncnet_v2.model"]), "--json"]
    assert main(argv) == 2
    assert "no face" in one_error(capsys, "lse")


# -- preprocess ---------------------------------------------------------------------------------------
PREPROCESS = {
    "truncated": "unreadable video",
    "zero_bytes": "unreadable video",
    "image": "missing audio",
    "no_face": "no face",
    "two_faces": "several faces",
    "fps30": None,
    "fps50": None,
    "vfr": None,
    "silent": "silent audio",
    "audio_short": "length mismatch",
    "no_audio": "missing audio",
    "audio_8k": None,
    "audio_48k": None,
}


def test_preprocess_skips_with_reasons_and_writes_the_rest(media: dict[str, Path], tmp_path: Path) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    for case in PREPROCESS:
        (folder / media[case].name).symlink_to(media[case])
    argv = ["preprocess", "--input", str(folder), "--layout", "folder", "--out", str(out)]
    assert main([*argv, "--workers", "1", "--no-progress", "--min-frames", "10"]) == 0
    skipped = {Path(r["file"]).stem: r["reason"] for r in json.loads((out / "skipped.json").read_text())}
    assert skipped == {k: v for k, v in PREPROCESS.items() if v}
    from datamodules.shards import iter_clips, verify_shards

    clips = {c.key: c for c in iter_clips(out, "train")}
    assert sorted(clips) == sorted(k for k, v in PREPROCESS.items() if v is None)
    for clip in clips.values():
        assert clip.meta["fps"] == 25 and abs(clip.num_frames - FRAMES) <= 2
        assert len(clip.wav()) == clip.num_frames * 640
    assert verify_shards(out) == []


# -- evaluate -----------------------------------------------------------------------------------------
def test_evaluate_names_an_unreadable_result_video(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from datamodules.shards import iter_clips
    from datamodules.synthetic import ensure_builtin
    from edtalk.io import write_video

    results = tmp_path / "results"
    clip = next(iter_clips(ensure_builtin(), "test"))
    good = write_video(tmp_path / "good.mp4", clip.frames(range(clip.num_frames)), audio=clip.wav())
    results.mkdir()
    (results / f"{clip.key}.mp4").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    argv = ["evaluate", "--videos", f"m={results}", "--split", "builtin", "--max-clips", "1"]
    argv += ["--out", str(tmp_path / "report"), "--weights-dir", str(tmp_path / "none"), "--fid-frames", "1"]
    assert main(argv) == 0  # a long job records a bad item with its reason and goes on (issue 29)
    err = capsys.readouterr().err
    assert clip.key in err and "cannot decode video" in err, err
    failed = list((tmp_path / "report").rglob("*.failed.json"))  # recorded for the next run to retry
    assert len(failed) == 1 and "cannot decode video" in failed[0].read_text()


# -- outputs: a path whose folder is a file; a disk that fills up ----------------------------------------
@pytest.mark.parametrize("command", ["preprocess", "generate"])
def test_output_not_writable(
    command: str,
    media: dict[str, Path],
    weights: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("keep me")
    if command == "preprocess":
        folder = tmp_path / "in"
        folder.mkdir()
        (folder / "good.mp4").symlink_to(media["good"])
        argv = ["preprocess", "--input", str(folder), "--layout", "folder", "--out", str(blocker / "out")]
        argv += ["--workers", "1", "--no-progress"]
    else:
        argv = ["generate", "--source", str(weights["face.png"]), "--lip", str(media["good"]), "--no-crop"]
        argv += ["--checkpoint", str(weights["EDTalk.pt"]), "--out", str(blocker / "out.mp4"), "--quiet"]
    assert main(argv) == 2
    line = one_error(capsys, command)
    assert "a_file" in line and "choose another output path" in line
    assert blocker.read_text() == "keep me"


def test_preprocess_disk_full_while_packing_keeps_the_work(
    media: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """ENOSPC in the middle of a shard: one line, no shard under its final name, the staged clips stay, and
    a rerun with space packs them without processing the videos again."""
    from datamodules.shards import ShardWriter, iter_clips
    from tests.faults.test_training import _FullDisk

    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    for case in ("good", "fps30"):
        (folder / media[case].name).symlink_to(media[case])
    original = ShardWriter._shard

    def full(self: ShardWriter, split: str) -> object:
        shard = original(self, split)
        if not isinstance(shard.tar.fileobj, _FullDisk):
            shard.tar.fileobj = _FullDisk(shard.tar.fileobj, room=8192)
        return shard

    argv = ["preprocess", "--input", str(folder), "--layout", "folder", "--out", str(out), "--workers", "1"]
    argv += ["--no-progress", "--min-frames", "10"]
    with monkeypatch.context() as m:
        m.setattr(ShardWriter, "_shard", full)
        assert main(argv) == 2
    assert "no space left" in one_error(capsys, "preprocess")
    assert not list(out.glob("*.tar")), "no half-written shard under a final name"
    assert len(list((out / ".staging").iterdir())) == 2, "the processed clips are kept"
    assert main(argv) == 0
    assert sorted(c.key for c in iter_clips(out, "train")) == ["fps30", "good"]
