"""Face super-resolution of a pipeline render: 512² frames streamed to an mp4 with the clip's sound."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edtalk import io
from edtalk.apps.facesr import FaceRestorer, render_restored
from edtalk.config import GeneratorConfig
from edtalk.nn.audio2lip import Audio2Lip
from edtalk.nn.generator import Generator
from edtalk.nn.gfpgan import GFPGAN, GFPGANConfig
from edtalk.pipeline import Inputs, Pipeline

FRAMES = 4


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Pipeline, FaceRestorer, dict[str, Path]]:
    from PIL import Image

    d = tmp_path_factory.mktemp("facesr")
    torch.manual_seed(0)
    cfg = GeneratorConfig.tiny("full", size=64)
    pipe = Pipeline(
        Generator(cfg),
        Audio2Lip(cfg.mouth_dim, (8, 16, 16, 32, 32)),
        device="cpu",
        crop=False,
        progress=False,
    )
    restorer = FaceRestorer.from_module(GFPGAN(GFPGANConfig.tiny()), batch_size=4)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(d / "face.png")
    t = np.arange(FRAMES * 640 + 100) / io.SAMPLE_RATE
    io.write_wav(d / "speech.wav", (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32))
    io.write_video(d / "clip.mp4", rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8))  # silent
    return pipe, restorer, {p.name: p for p in d.iterdir()}


def test_render_restored_writes_512_with_audio(tmp_path: Path, setup: tuple) -> None:
    pipe, restorer, files = setup
    inputs = Inputs(files["face.png"], audio=files["speech.wav"], emotion="happy")
    result = render_restored(pipe, inputs, tmp_path / "sr.mp4", restorer, progress=False)
    info = io.probe_video(result.path)
    assert (info.width, info.height, info.num_frames, info.has_audio) == (512, 512, FRAMES, True)
    assert result.num_frames == FRAMES and result.fps == 25
    # the written frames are the restored pipeline frames (up to H.264 at crf 18)
    expected = torch.cat([restorer.restore(c) for c in pipe.stream(inputs)])
    back = io.read_video(result.path).astype(np.float32)
    assert np.abs(back - io.to_uint8(expected).numpy()).mean() < 8


def test_render_restored_silent_video_source(tmp_path: Path, setup: tuple) -> None:
    pipe, restorer, files = setup
    result = render_restored(pipe, Inputs(files["clip.mp4"]), tmp_path / "v.mp4", restorer, progress=False)
    info = io.probe_video(result.path)
    assert (info.width, info.num_frames, info.has_audio) == (512, 4, False)


def test_generate_face_sr_writes_512(tmp_path: Path, setup: tuple, capsys: pytest.CaptureFixture) -> None:
    """`edtalk generate --face-sr FILE` with a GFPGAN-layout file (1/16 width; architecture read from it)."""
    from edtalk.cli import main
    from edtalk.weights import save_official

    pipe, restorer, files = setup
    save_official(pipe.generator, "edtalk_full", tmp_path / "EDTalk.pt")
    save_official(Audio2Lip(), "audio2lip", tmp_path / "Audio2Lip.pt")
    save_official(restorer.net, "gfpgan", tmp_path / "GFPGANv1.4.pth")
    args = ["generate", "--source", str(files["face.png"]), "--audio", str(files["speech.wav"]), "--no-crop"]
    args += ["--checkpoint", str(tmp_path / "EDTalk.pt"), "--audio2lip", str(tmp_path / "Audio2Lip.pt")]
    args += ["--emotion", "sad", "--device", "cpu", "--quiet", "--out", str(tmp_path / "out.mp4")]
    assert main([*args, "--face-sr", str(tmp_path / "GFPGANv1.4.pth")]) == 0
    info = io.probe_video(tmp_path / "out.mp4")
    assert (info.width, info.height, info.num_frames, info.has_audio) == (512, 512, FRAMES, True)
    assert "wrote" in capsys.readouterr().err
    assert main([*args, "--face-sr", str(tmp_path / "missing.pth")]) == 2
    err = capsys.readouterr().err
    assert "missing.pth" in err and "releases/download/v1.3.4/GFPGANv1.4.pth" in err
    assert len(err.strip().splitlines()) == 1
