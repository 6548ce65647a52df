"""`edtalk generate`: every mode writes a playable 25 fps H.264 + AAC mp4 of the right length; bad inputs fail in one line."""

from __future__ import annotations

import re
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from edtalk.cli import main
from edtalk.config import GeneratorConfig
from edtalk.io import write_video, write_wav
from edtalk.nn.audio2exp import Audio2Exp, Audio2ExpConfig
from edtalk.nn.audio2lip import Audio2Lip
from edtalk.nn.audio2pose import Audio2Pose, Audio2PoseConfig
from edtalk.nn.generator import Generator
from edtalk.weights import save_checkpoint, save_official

SIZE = 64
SPEECH_FRAMES = 12  # floor((12 * 640 + 300) / 640)
DRIVER_FRAMES = 5


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("generate")
    torch.manual_seed(0)
    save_official(Generator(GeneratorConfig.tiny("full", size=SIZE)), "edtalk_full", d / "EDTalk.pt")
    save_official(
        Generator(GeneratorConfig.tiny("lip_pose", size=SIZE)), "edtalk_lip_pose", d / "lip_pose.pt"
    )
    save_official(Audio2Lip(), "audio2lip", d / "Audio2Lip.pt")
    save_checkpoint(Audio2Pose(Audio2PoseConfig.tiny()), "audio2pose", d / "audio2pose.pt")
    save_checkpoint(Audio2Exp(Audio2ExpConfig.tiny()), "audio2exp", d / "audio2exp.pt")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)).save(d / "source.png")
    from skimage import data

    Image.fromarray(data.astronaut()).save(d / "photo.png")  # an un-cropped 512^2 photo with one face
    t = np.arange(SPEECH_FRAMES * 640 + 300) / 16000
    write_wav(d / "speech.wav", 0.3 * np.sin(2 * np.pi * 180 * t) * np.sin(2 * np.pi * 4 * t))
    write_wav(d / "blip.wav", np.zeros(500))
    hum = (0.2 * np.sin(2 * np.pi * 300 * np.arange(3200) / 16000)).astype(np.float32)
    write_video(
        d / "driver.mp4", rng.integers(0, 256, (DRIVER_FRAMES, SIZE, SIZE, 3), dtype=np.uint8), audio=hum
    )
    write_video(d / "clip.mp4", rng.integers(0, 256, (7, SIZE, SIZE, 3), dtype=np.uint8), audio=hum)
    return {p.name: p for p in d.iterdir()}


AUDIO = ["--audio", "speech.wav", "--audio2lip", "Audio2Lip.pt"]
MODES = {
    # the interface other checks rely on: official files, un-cropped photo, named emotion
    "audio_emotion": (["--source", "photo.png", *AUDIO, "--emotion", "happy", "--crop"], SPEECH_FRAMES),
    "emotion_mix": (["--source", "source.png", *AUDIO, "--emotion", "happy:0.7,sad:0.3"], SPEECH_FRAMES),
    "exp_video_pose_video": (
        [
            "--source",
            "source.png",
            *AUDIO,
            "--exp-driver",
            "driver.mp4",
            "--pose",
            "driver.mp4",
            "--extend",
            "hold",
        ],
        SPEECH_FRAMES,
    ),
    "exp_image": (["--source", "source.png", *AUDIO, "--exp-driver", "source.png"], SPEECH_FRAMES),
    "lip_pose_fixed": (
        ["--source", "source.png", *AUDIO, "--fix-pose", "--checkpoint", "lip_pose.pt"],
        SPEECH_FRAMES,
    ),
    "no_expression_pose_video": (
        ["--source", "source.png", *AUDIO, "--no-expression", "--pose", "driver.mp4"],
        SPEECH_FRAMES,
    ),
    "audio2pose": (
        ["--source", "source.png", *AUDIO, "--audio2pose", "audio2pose.pt", "--pose-temperature", "0.5"],
        SPEECH_FRAMES,
    ),
    "emotion_auto": (
        ["--source", "source.png", *AUDIO, "--audio2exp", "audio2exp.pt", "--emotion", "auto"],
        SPEECH_FRAMES,
    ),
    "lip_from_video": (["--source", "source.png", "--lip", "driver.mp4"], DRIVER_FRAMES),
    "change_video_lip": (["--source", "clip.mp4", *AUDIO, "--checkpoint", "lip_pose.pt"], SPEECH_FRAMES),
    "video_driven": (
        [
            "--source",
            "source.png",
            "--lip",
            "driver.mp4",
            "--pose",
            "driver.mp4",
            "--exp-driver",
            "driver.mp4",
        ],
        DRIVER_FRAMES,
    ),
    "legacy_normalize": (
        ["--source", "source.png", *AUDIO, "--emotion", "sad", "--legacy-normalize"],
        SPEECH_FRAMES,
    ),
}


def cli_args(args: list[str], files: dict[str, Path], out: Path) -> list[str]:
    argv = [str(files[a]) if a in files else a for a in args]
    if "--crop" in argv:
        argv.remove("--crop")
    else:
        argv.append("--no-crop")
    if "--checkpoint" not in argv:
        argv += ["--checkpoint", str(files["EDTalk.pt"])]
    return ["generate", *argv, "--out", str(out), "--quiet", "--device", "cpu"]


def read_back(path: Path) -> tuple[int, float, str, str | None, float]:
    """(decoded frames, fps, video codec, audio codec, audio seconds) read with PyAV."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        fps = float(video.average_rate)
        codec = video.codec_context.name
        audio = container.streams.audio[0] if container.streams.audio else None
        seconds = float(audio.duration * audio.time_base) if audio is not None and audio.duration else 0.0
        frames = sum(1 for _ in container.decode(video=0))
        return frames, fps, codec, audio.codec_context.name if audio is not None else None, seconds


@pytest.mark.parametrize("mode", sorted(MODES))
def test_every_mode_writes_a_playable_mp4(mode: str, files: dict[str, Path], tmp_path: Path) -> None:
    args, frames = MODES[mode]
    out = tmp_path / f"{mode}.mp4"
    assert main(cli_args(args, files, out)) == 0
    n, fps, vcodec, acodec, seconds = read_back(out)
    assert (n, fps, vcodec, acodec) == (frames, 25.0, "h264", "aac")
    assert abs(seconds - frames / 25) < 0.1  # the soundtrack is cut to the video


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--source", "source.png", *AUDIO, "--checkpoint", "Audio2Lip.pt"],
            "Audio2Lip.pt holds no generator",
        ),
        (
            ["--source", "source.png", "--audio", "speech.wav", "--audio2lip", "EDTalk.pt"],
            "expected audio2lip",
        ),
        (
            ["--source", "source.png", "--audio", "blip.wav", "--audio2lip", "Audio2Lip.pt"],
            "shorter than one video frame",
        ),
        (["--source", "source.png", *AUDIO, "--crop"], "source.png: no face found"),
        (["--source", "speech.wav", *AUDIO], "cannot decode video .*speech.wav|has no video stream"),
        (
            ["--source", "source.png", *AUDIO, "--emotion", "happy", "--checkpoint", "lip_pose.pt"],
            "lip-pose generator",
        ),
    ],
)
def test_bad_inputs_give_one_line(
    args: list[str], message: str, files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(cli_args(args, files, tmp_path / "bad.mp4")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("edtalk generate: error: ")
    assert re.search(message, err), err
    assert not (tmp_path / "bad.mp4").exists()


def test_builtin_samples_with_auto_crop(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--write-samples` inputs drive the video modes with the tracked video crop and the photo alignment."""
    assert main(["generate", "--write-samples", str(tmp_path / "samples")]) == 0
    s = {p.name: p for p in (tmp_path / "samples").iterdir()}
    assert sorted(s) == ["angry.png", "photo.png", "speech.wav", "talk.mp4"]
    args = ["--source", str(s["photo.png"]), "--lip", str(s["talk.mp4"]), "--pose", str(s["talk.mp4"])]
    args += ["--exp-driver", str(s["angry.png"]), "--checkpoint", str(files["EDTalk.pt"])]
    out = tmp_path / "video_driven.mp4"
    assert main(["generate", *args, "--out", str(out), "--quiet", "--device", "cpu"]) == 0
    n, fps, _, acodec, _ = read_back(out)
    with av.open(str(s["talk.mp4"])) as talk:
        expected = sum(1 for _ in talk.decode(video=0))  # the sample is written at 25 fps
    assert (n, fps, acodec) == (expected, 25.0, "aac")
