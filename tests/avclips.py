"""Real media for the tests: clips written by PyAV with chosen frame rates, stream start times and channels,
and the ffmpeg command line as the reference when it is installed."""

from __future__ import annotations

import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

FFMPEG = shutil.which("ffmpeg")
NO_FFMPEG = "the ffmpeg command line is not installed (`make system-deps` installs it)"


def write_clip(
    path: Path,
    frames: np.ndarray,
    fps: float | Fraction,
    audio: np.ndarray | None = None,
    rate: int = 16000,
    codec: str = "pcm_s16le",
    audio_start: float = 0.0,
    video_start: float = 0.0,
    layout: str | None = None,
) -> Path:
    """T x H x W x 3 uint8 frames (H.264, near lossless) + C x N float audio, each stream from its start time (s).

    `.mov` keeps PCM sample-exact; `.mp4` takes AAC. Start times are written as the first timestamps, so the
    container records them (an edit list in MP4/MOV).
    """
    fps = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        video.options = {"crf": "1", "preset": "ultrafast"}
        video.codec_context.time_base = 1 / fps
        sound = None
        if audio is not None:
            sound = container.add_stream(codec, rate=rate)
            sound.layout = layout or {1: "mono", 2: "stereo", 6: "5.1"}[audio.shape[0]]
        first = round(video_start * fps)
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts, frame.time_base = first + i, 1 / fps
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
        if sound is not None and audio is not None:
            _encode_audio(container, sound, audio, rate, round(audio_start * rate))
    return path


def _encode_audio(
    container: av.container.OutputContainer, stream: av.AudioStream, audio: np.ndarray, rate: int, first: int
) -> None:
    step = 1024
    for i in range(0, audio.shape[1], step):
        chunk = np.ascontiguousarray(audio[:, i : i + step], np.float32)
        frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=stream.layout.name)
        frame.sample_rate, frame.pts, frame.time_base = rate, first + i, Fraction(1, rate)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)


def ffmpeg(*args: str) -> None:
    """Run the ffmpeg CLI quietly; a failure shows its message."""
    assert FFMPEG is not None
    done = subprocess.run([FFMPEG, "-v", "error", "-y", *args], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"ffmpeg {' '.join(args)} failed: {done.stderr}")


def ffmpeg_mono16k(video: Path, out: Path) -> np.ndarray:
    """syncnet_python's audio extraction: `-async 1 -ac 1 -vn -acodec pcm_s16le -ar 16000` -> int16 samples."""
    from scipy.io import wavfile

    ffmpeg(
        "-i", str(video), "-async", "1", "-ac", "1", "-vn", "-acodec", "pcm_s16le", "-ar", "16000", str(out)
    )
    rate, samples = wavfile.read(out)
    assert rate == 16000
    return samples


def index_frames(n: int, size: int = 64) -> np.ndarray:
    """n frames whose content encodes their index (top half: i % 16, bottom half: i // 16), robust to codecs."""
    frames = np.zeros((n, size, size, 3), np.uint8)
    for i in range(n):
        frames[i, : size // 2] = (i % 16) * 16 + 8
        frames[i, size // 2 :] = (i // 16) * 32 + 16
    return frames


def frame_index(image: np.ndarray) -> int:
    """The index `index_frames` drew into an H x W x 3 image."""
    h = image.shape[0] // 2
    low = round((float(image[:h].mean()) - 8) / 16)
    return low + 16 * round((float(image[h:].mean()) - 16) / 32)
