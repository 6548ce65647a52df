"""`edtalk stream`: streamed frames equal offline `edtalk generate` at the exact look-ahead (fp32, tiny
random-init models), the prefix rule below it, a playable fragmented mp4 with the JSON report line, and
one-line messages for a wrong sample rate, an empty, silent, truncated or broken stream."""

from __future__ import annotations

import io
import json
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edtalk.cli import main
from edtalk.config import GeneratorConfig
from edtalk.io import read_video, write_wav
from edtalk.nn.audio2lip import Audio2Lip
from edtalk.nn.generator import Generator
from edtalk.pipeline import Inputs, Pipeline, emotion_vector
from edtalk.pipeline.live import EXACT_LOOKAHEAD, LiveSession, LiveStats, PcmReader
from edtalk.pipeline.render import Renderer
from edtalk.weights import save_official

SIZE, FRAMES = 64, 14


def speech(frames: int, extra: int = 300) -> np.ndarray:
    t = np.arange(frames * 640 + extra) / 16000
    return 0.3 * np.sin(2 * np.pi * 180 * t) * np.sin(2 * np.pi * 4 * t) + 0.05 * np.sin(2 * np.pi * 900 * t)


@pytest.fixture(scope="module")
def models() -> tuple[Generator, Audio2Lip]:
    torch.manual_seed(0)
    gen = Generator(GeneratorConfig.tiny("full", size=SIZE)).eval()
    # random full-scale flow heads make a decoder chaotic (1e-8 on a mouth weight -> 1e-2 on pixels,
    # SPEC parity notes); at 1/10 scale float rounding stays at float rounding
    gen.synthesis.scale_flow_init(0.1)
    a2l = Audio2Lip(gen.cfg.mouth_dim, channels=(8, 16, 16, 32, 32)).eval()
    return gen, a2l


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, models: tuple[Generator, Audio2Lip]) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("stream")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)).save(d / "source.png")
    write_wav(d / "speech.wav", speech(FRAMES))
    save_official(models[0], "edtalk_full", d / "EDTalk.pt")
    save_official(Audio2Lip(), "audio2lip", d / "Audio2Lip.pt")
    return {p.name: p for p in d.iterdir()}


def offline(models: tuple[Generator, Audio2Lip], source: Path, audio: Path) -> torch.Tensor:
    pipe = Pipeline(*models, device="cpu", crop=False, progress=False)
    return torch.cat(list(pipe.stream(Inputs(source, audio=audio, emotion="happy", fix_pose=True))))


def streamed(models: tuple[Generator, Audio2Lip], source: Path, audio: Path, lookahead: int) -> torch.Tensor:
    gen, a2l = models
    renderer = Renderer(gen, chunk_size=2)
    from edtalk.io import from_uint8

    with torch.inference_mode():
        still = renderer.still(from_uint8(np.array(Image.open(source)))[None])
    exp = emotion_vector("happy", gen.cfg.exp_dim, "test")
    session = LiveSession(renderer, a2l, still, exp, lookahead=lookahead)
    out: list[torch.Tensor] = []
    with open(audio, "rb") as fh:  # 100-sample reads: frames become ready mid-block and across blocks
        reader = PcmReader(fh, str(audio), block=100).start()
        session.run(reader, lambda frames, _: out.append(frames), LiveStats())
    return torch.cat(out)


def test_stream_equals_offline_at_exact_lookahead(models, files) -> None:
    ref = offline(models, files["source.png"], files["speech.wav"])
    live = streamed(models, files["source.png"], files["speech.wav"], EXACT_LOOKAHEAD)
    assert live.shape == ref.shape == (FRAMES, 3, SIZE, SIZE)
    assert (live - ref).abs().amax(dim=(1, 2, 3)).max() < 1e-4


def test_short_lookahead_is_offline_of_the_prefix(models, files, tmp_path) -> None:
    """Look-ahead 1: frame t = frame t of offline generate on the first t + 2 frames of audio."""
    live = streamed(models, files["source.png"], files["speech.wav"], 1)
    t = 6
    write_wav(tmp_path / "prefix.wav", speech(FRAMES)[: (t + 2) * 640])
    ref = offline(models, files["source.png"], tmp_path / "prefix.wav")
    assert (live[t] - ref[t]).abs().max() < 1e-4
    full = offline(models, files["source.png"], files["speech.wav"])
    assert (live[t] - full[t]).abs().max() > 1e-4  # the rule is not vacuous: less audio, another mouth


def run_cli(files: dict[str, Path], out: Path, audio: str, capsys, *extra: str) -> tuple[int, list[str]]:
    args = ["stream", "--source", str(files["source.png"]), "--audio", audio, "--out", str(out)]
    args += ["--checkpoint", str(files["EDTalk.pt"]), "--audio2lip", str(files["Audio2Lip.pt"]), "--no-crop"]
    code = main([*args, *extra])
    return code, capsys.readouterr().err.strip().splitlines()


def test_cli_writes_playable_fragmented_mp4_and_json(files, tmp_path, capsys) -> None:
    out = tmp_path / "live.mp4"
    code, err = run_cli(files, out, str(files["speech.wav"]), capsys, "--emotion", "happy", "--realtime")
    assert code == 0, err
    report = json.loads(err[-1])
    assert set(report) == {"first_frame_latency_s", "rtf", "frames", "dropped"}
    assert report["frames"] == FRAMES and report["first_frame_latency_s"] > 0 and report["rtf"] > 0
    assert len(read_video(out)) == FRAMES


def wav_bytes(samples: np.ndarray, rate: int = 16000, announce: int | None = None) -> bytes:
    data = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
    size = len(data) if announce is None else announce
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    return (
        b"RIFF"
        + struct.pack("<I", 36 + size)
        + b"WAVEfmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + struct.pack("<I", size)
        + data
    )


def stdin_of(monkeypatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


def test_wrong_sample_rate_is_one_line(files, tmp_path, capsys, monkeypatch) -> None:
    stdin_of(monkeypatch, wav_bytes(speech(5), rate=8000))
    code, err = run_cli(files, tmp_path / "x.mp4", "-", capsys)
    assert code == 2 and len(err) == 1 and "8000 Hz, expected 16000" in err[0]
    assert not (tmp_path / "x.mp4").exists()


def test_empty_stream_renders_nothing(files, tmp_path, capsys, monkeypatch) -> None:
    stdin_of(monkeypatch, wav_bytes(np.zeros(100)))  # less than one 40 ms frame
    code, err = run_cli(files, tmp_path / "x.mp4", "-", capsys)
    assert code == 2 and "nothing rendered" in err[0], err
    assert json.loads(err[-1])["frames"] == 0
    assert not (tmp_path / "x.mp4").exists()


def test_truncated_and_silent_streams_keep_frames(files, tmp_path, capsys, monkeypatch) -> None:
    stdin_of(monkeypatch, wav_bytes(np.zeros(6 * 640), announce=40 * 640 * 2))  # raw s16 pipe cut short
    code, err = run_cli(files, tmp_path / "x.mp4", "-", capsys)
    assert code == 0, err
    assert any("truncated" in line for line in err) and any("silent" in line for line in err)
    assert json.loads(err[-1])["frames"] == 6 and len(read_video(tmp_path / "x.mp4")) == 6


class Breaks(io.RawIOBase):
    """A pipe that delivers `data`, then fails (the producer died)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:  # type: ignore[no-untyped-def]
        if not self.data:
            raise OSError(32, "Broken pipe")
        n = min(len(buf), len(self.data))
        buf[:n], self.data = self.data[:n], self.data[n:]
        return n


def test_broken_pipe_keeps_frames_so_far(models, files) -> None:
    gen, a2l = models
    renderer = Renderer(gen, chunk_size=2)
    with torch.inference_mode():
        still = renderer.still(torch.zeros(1, 3, SIZE, SIZE))
    session = LiveSession(renderer, a2l, still, None)
    reader = PcmReader(io.BufferedReader(Breaks(wav_bytes(speech(8)))), "pipe").start()
    stats = LiveStats()
    session.run(reader, lambda frames, _: None, stats)
    assert stats.frames == 8 and isinstance(reader.error, OSError)


def test_not_a_wav_file_is_one_line(files, tmp_path, capsys) -> None:
    code, err = run_cli(files, tmp_path / "x.mp4", str(files["source.png"]), capsys)
    assert code == 2 and len(err) == 1 and "is not a WAV file" in err[0]
