"""The catalogue's bad media, written for real (PyAV/FFmpeg inside the wheel) from one good talking clip.

`bad_media(folder, frames, wav)` writes every case and returns {case: path}; `CASES` names them in the
order of the README table "What happens when".
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from edtalk.io import write_video

CASES = (
    "truncated",
    "zero_bytes",
    "image",
    "no_face",
    "two_faces",
    "fps30",
    "fps50",
    "vfr",
    "silent",
    "audio_short",
    "no_audio",
    "audio_8k",
    "audio_48k",
)


def resample_frames(frames: np.ndarray, fps: float) -> np.ndarray:
    """The 25 fps frames shown at `fps` (nearest earlier frame), same duration."""
    n = round(len(frames) * fps / 25)
    return frames[np.floor(np.arange(n) * 25 / fps).astype(int)]


def write_av(
    path: Path, frames: np.ndarray, times: np.ndarray, wav: np.ndarray | None = None, rate: int = 16000
) -> Path:
    """H.264 frames shown at `times` (seconds; uneven = variable frame rate) + AAC mono audio at `rate` Hz."""
    tb = Fraction(1, 1000)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        video.codec_context.time_base = tb
        audio = container.add_stream("aac", rate=rate) if wav is not None else None
        if audio is not None:
            audio.layout = "mono"
        for image, t in zip(frames, times):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts, frame.time_base = round(t * 1000), tb
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if audio is not None and wav is not None:
            for i in range(0, len(wav), 1024):
                chunk = np.ascontiguousarray(wav[None, i : i + 1024], np.float32)
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
                frame.sample_rate, frame.pts, frame.time_base = rate, i, Fraction(1, rate)
                container.mux(audio.encode(frame))
            container.mux(audio.encode(None))
    return path


def resample_wav(wav: np.ndarray, rate: int) -> np.ndarray:
    """16 kHz samples at another rate (linear interpolation; the content only has to stay speech-like)."""
    n = round(len(wav) * rate / 16000)
    return np.interp(np.arange(n) * 16000 / rate, np.arange(len(wav)), wav).astype(np.float32)


def bad_media(folder: Path, frames: np.ndarray, wav: np.ndarray) -> dict[str, Path]:
    """Write every case of `CASES` from a good 25 fps clip (T x H x W x 3 uint8 + 16 kHz mono audio)."""
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    good = write_video(folder / "good.mp4", frames, audio=wav)
    data = good.read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (folder / "zero_bytes.mp4").write_bytes(b"")
    buf = folder / "image.png"
    Image.fromarray(frames[0]).save(buf)
    buf.rename(folder / "image.mp4")  # a still image under a video name
    noise = np.random.default_rng(0).integers(0, 255, frames.shape, dtype=np.uint8)
    write_video(folder / "no_face.mp4", noise, audio=wav)
    write_video(folder / "two_faces.mp4", np.concatenate([frames, frames[:, :, ::-1]], 2), audio=wav)
    for fps in (30, 50):
        more = resample_frames(frames, fps)
        write_av(folder / f"fps{fps}.mp4", more, np.arange(len(more)) / fps, wav)
    # variable frame rate: 20 and 40 fps stretches alternating every 10 frames (mean 25 fps-ish)
    steps = np.where((np.arange(len(frames)) // 10) % 2 == 0, 1 / 20, 1 / 40)
    times = np.concatenate([[0.0], np.cumsum(steps)[:-1]])
    shown = frames[np.minimum((times * 25).round().astype(int), len(frames) - 1)]
    write_av(folder / "vfr.mp4", shown, times, wav)
    write_video(folder / "silent.mp4", frames, audio=np.zeros_like(wav))
    write_video(folder / "audio_short.mp4", frames, audio=wav[: len(wav) // 2])
    write_video(folder / "no_audio.mp4", frames)
    for rate in (8000, 48000):
        write_av(
            folder / f"audio_{rate // 1000}k.mp4",
            frames,
            np.arange(len(frames)) / 25,
            resample_wav(wav, rate),
            rate,
        )
    for case in CASES:
        out[case] = folder / f"{case}.mp4"
    out["good"] = good
    return out
