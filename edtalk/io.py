"""Video / audio I/O (PyAV) and the one pixel convention.

Pixels: networks see float NCHW in [-1, 1]; files hold uint8 HWC. `to_uint8` / `from_uint8` are the
only conversions (round-to-nearest after clamping: no per-clip min-max stretch). `legacy_to_uint8`
reproduces the original demos' global stretch for comparisons only.

Video in: `read_video` decodes any container PyAV knows, resampled to a fixed fps by nearest
timestamp (frame i shows the source frame displayed at t = i / fps); `read_video_ffmpeg_rate` picks
frames as `ffmpeg -r 25` does (syncnet_python's LSE protocol). Audio in: `read_audio` gives the samples
`ffmpeg -async 1 -ac 1 -ar 16000` gives (sound aligned to the picture's start, FFmpeg's downmix and
resampler). Video out: `VideoWriter` streams H.264 (yuv420p) frames and muxes AAC audio with timestamps
(no priming delay), so memory stays flat in the video length.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import av
import numpy as np
import torch

FPS = 25
SAMPLE_RATE = 16000


class MediaError(ValueError):
    """An input media file cannot be used (unreadable, no stream, too short...)."""


# -- pixels ------------------------------------------------------------------------------------
def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] (... x 3 x H x W) -> uint8 (... x H x W x 3), clamped, rounded to nearest."""
    x = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.movedim(-3, -1).cpu()


def from_uint8(images: torch.Tensor | np.ndarray) -> torch.Tensor:
    """uint8 (... x H x W x 3) -> float32 [-1, 1] (... x 3 x H x W)."""
    t = torch.as_tensor(np.asarray(images)) if isinstance(images, np.ndarray) else images
    return uint8_to_float(t.movedim(-1, -3)).contiguous()


def uint8_to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (... x 3 x H x W, channels first) -> float32 [-1, 1] (x / 127.5 - 1)."""
    return images.float().div_(127.5).sub_(1.0)


def images_to_float(batch: dict[str, Any]) -> dict[str, Any]:
    """The last step of the data contract: every uint8 tensor of a batch (an image, ... x 3 x H x W) -> float32 [-1, 1].

    The DataModules hand images over as uint8 (a quarter of the bytes to collate, pass between
    processes and copy to the GPU, and no float conversion in the loader workers); the training
    stages call this in `on_after_batch_transfer`, i.e. on the device. Other entries and float
    images pass through unchanged, so it is safe to call twice.
    """
    return {
        k: uint8_to_float(v) if isinstance(v, torch.Tensor) and v.dtype == torch.uint8 else v
        for k, v in batch.items()
    }


def legacy_to_uint8(images: torch.Tensor, value_range: tuple[float, float] | None = None) -> torch.Tensor:
    """The original demos' `save_video`: clamp, then min-max stretch over the whole clip, truncate.

    `value_range` gives the clip's (min, max) after clamping when `images` is one chunk of a longer clip.
    """
    x = images.detach().float().clamp(-1, 1)
    lo, hi = value_range if value_range is not None else (float(x.min()), float(x.max()))
    x = (x - lo) / max(hi - lo, 1e-12) * 255
    return x.to(torch.uint8).movedim(-3, -1).cpu()


# -- video -------------------------------------------------------------------------------------
@dataclass
class VideoInfo:
    path: Path
    fps: float
    num_frames: int
    width: int
    height: int
    duration: float
    has_audio: bool


def probe_video(path: str | Path) -> VideoInfo:
    """Stream facts of a video file; MediaError names the file when it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"video not found: {path}")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError(f"{path} has no video stream")
            vs = container.streams.video[0]
            fps = float(vs.average_rate or vs.guessed_rate or 0)
            duration = float(vs.duration * vs.time_base) if vs.duration and vs.time_base else 0.0
            if not duration and container.duration:
                duration = container.duration / av.time_base
            frames = vs.frames or (round(duration * fps) if fps else 0)
            return VideoInfo(
                path, fps, int(frames), vs.width, vs.height, duration, bool(container.streams.audio)
            )
    except av.FFmpegError as err:
        raise MediaError(f"cannot read video {path}: {err}; is the file complete and a video?") from err


def iter_frames(path: str | Path, fps: float | None = FPS) -> Iterator[np.ndarray]:
    """Yield RGB uint8 H x W x 3 frames, resampled to `fps` by nearest earlier timestamp (None: as stored)."""
    path = Path(path)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError(f"{path} has no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            yield from _resample(container.decode(stream), fps, path)
    except av.FFmpegError as err:
        raise MediaError(
            f"cannot decode video {path}: {err}; re-encode it (e.g. ffmpeg -i in.mp4 out.mp4)"
        ) from err


def _resample(frames: Iterable[av.VideoFrame], fps: float | None, path: Path) -> Iterator[np.ndarray]:
    """Output frame i shows the last source frame displayed at or before t = i / fps."""
    next_index = 0
    prev: np.ndarray | None = None
    start = prev_t = 0.0
    delta = 0.0
    for n, frame in enumerate(frames):
        image = frame.to_ndarray(format="rgb24")
        if fps is None:
            yield image
            continue
        t = float(frame.time) if frame.time is not None else n / fps
        if n == 0:
            start = t
        t -= start
        if prev is not None:
            delta = t - prev_t
            while next_index / fps < t - 1e-6:
                yield prev
                next_index += 1
        prev, prev_t = image, t
    if prev is not None and fps is not None:
        end = prev_t + (delta if delta > 0 else 1.0 / fps)
        while next_index / fps < end - 1e-6:
            yield prev
            next_index += 1


def read_video(path: str | Path, fps: float | None = FPS, max_frames: int | None = None) -> np.ndarray:
    """All frames as T x H x W x 3 uint8 (for short clips; use `iter_frames` to stream)."""
    frames = []
    for i, frame in enumerate(iter_frames(path, fps)):
        if max_frames is not None and i >= max_frames:
            break
        frames.append(frame)
    if not frames:
        raise MediaError(f"{path} contains no decodable video frames")
    return np.stack(frames)


# -- `ffmpeg -r` frame-rate conversion ----------------------------------------------------------
_FF_EPS = 1.0 / (1 << 17)  # ffmpeg nudges every positive timestamp off exact midpoints by 2^-17 tick


def ffmpeg_rate_indices(times: Sequence[float], durations: Sequence[float], fps: float = FPS) -> list[int]:
    """Source frame index of each output frame when syncnet_python converts a video to `fps`.

    syncnet_python runs `ffmpeg -i IN -r 25 video.avi` and then `ffmpeg -i video.avi -f image2 %06d.jpg`.
    Both passes are FFmpeg's output frame-rate logic (fftools `do_video_out`, FFmpeg 4.4-6.0), checked
    against the CLI on 20, 24, 29.97, 30 and 50 fps clips (tests/test_io_media.py):

    1. `.avi` makes `-r 25` variable-rate ("vfr"). Counting in output ticks (1/fps s), with frame k at
       t_k = time since the video's first frame times fps (+2^-17), d_k = its duration rounded to whole
       ticks (kept fractional when that rounds to 0) and n the next tick: a frame whose end
       t_k + d_k <= n - 0.6 is dropped; otherwise it is written at tick n, or at round(t_k) when it
       ends more than 0.6 tick past n (a gap); n becomes that tick + 1. A frame that starts before n is
       moved to n. So downsampling drops a frame only once the drift reaches 0.6 tick
       (30 fps: frames 10, 16, 22, ... go, not 5, 11, 17 as nearest-timestamp picking would).
    2. The `.avi` read back at constant rate: a gap of g ticks before a frame is filled by repeating
       that frame (g >= 2: round(g - 0.6) copies of the previous frame first), as `-vsync cfr` does.
    """
    ticks = _vfr_ticks(times, durations, fps)
    return _cfr_fill(ticks)


def _vfr_ticks(times: Sequence[float], durations: Sequence[float], fps: float) -> list[tuple[int, int]]:
    """Pass 1 (`-r fps` into .avi): (output tick, source index) of every kept frame."""
    out: list[tuple[int, int]] = []
    next_tick = 0
    for k, (t, d) in enumerate(zip(times, durations, strict=True)):
        sync = t * fps
        sync += math.copysign(_FF_EPS, sync) if sync else 0.0
        duration = float(round(d * fps)) or d * fps
        delta0 = sync - next_tick
        delta = delta0 + duration
        if delta0 < 0 < delta:  # starts before the next tick: clipped to it
            sync = next_tick
        if delta <= -0.6:
            continue
        if delta > 0.6:
            next_tick = round(sync)
        out.append((next_tick, k))
        next_tick += 1
    return out


def _cfr_fill(ticks: Sequence[tuple[int, int]]) -> list[int]:
    """Pass 2 (.avi -> images, constant rate): gaps between ticks filled by repeated frames."""
    out: list[int] = []
    next_tick, history, last = 0, [0, 0, 0], -1
    for tick, k in ticks:
        delta0 = max(tick + (_FF_EPS if tick else 0.0) - next_tick, 0.0)
        delta = delta0 + 1
        copies, previous = 1, 0
        if delta > 1.1:
            copies = round(delta)
            previous = min(round(delta0 - 0.6), copies) if delta0 > 1.1 and last >= 0 else 0
        out += [last] * previous + [k] * (copies - previous)
        next_tick += copies
        history = [previous, *history[:2]]
        last = k
    out += [last] * sorted(history)[1]  # at the end: the median of the last three previous-frame counts
    return out


def read_video_ffmpeg_rate(path: str | Path, fps: float = FPS) -> np.ndarray:
    """T x H x W x 3 uint8 frames converted to `fps` as syncnet_python's `ffmpeg -r` does (see
    `ffmpeg_rate_indices`); times count from the video stream's first frame."""
    path = Path(path)
    images, times, durations = _decode_timed(path)
    return np.stack([images[i] for i in ffmpeg_rate_indices(times, durations, fps)])


def frame_timing(frame: Any, stream: Any, index: int) -> tuple[float, float]:
    """(time, duration) in seconds of decoded frame `index` of `stream`, as `read_video_ffmpeg_rate` reads
    them: the frame's own timestamp and duration where the container has them, else the stream's rate."""
    rate = float(stream.average_rate or stream.guessed_rate or FPS)
    stamp = float(frame.time) if frame.time is not None else index / rate
    tb = frame.time_base or stream.time_base
    return stamp, float(frame.duration * tb) if frame.duration and tb else 1.0 / rate


def _decode_timed(path: Path) -> tuple[list[np.ndarray], list[float], list[float]]:
    """Every stored frame, its time since the first frame (s) and its duration (s)."""
    images: list[np.ndarray] = []
    stamps: list[float] = []
    durations: list[float] = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError(f"{path} has no video stream")
            stream = container.streams.video[0]
            for n, frame in enumerate(container.decode(stream)):
                images.append(frame.to_ndarray(format="rgb24"))
                stamp, duration = frame_timing(frame, stream, n)
                stamps.append(stamp)
                durations.append(duration)
    except av.FFmpegError as err:
        raise MediaError(
            f"cannot decode video {path}: {err}; re-encode it (e.g. ffmpeg -i in.mp4 out.mp4)"
        ) from err
    if not images:
        raise MediaError(f"{path} contains no decodable video frames")
    return images, [t - stamps[0] for t in stamps], durations


# -- audio -------------------------------------------------------------------------------------
MIN_ASYNC_S = 0.001  # aresample async=1: a start offset under 1 ms is left alone
MIN_HARD_COMP_S = 0.1  # ... and a hole between frames' timestamps up to 0.1 s too


def read_audio(path: str | Path, sample_rate: int = SAMPLE_RATE, align_to_video: bool = True) -> np.ndarray:
    """Mono float32 samples in [-1, 1] at `sample_rate` from any audio or video file, as FFmpeg makes them.

    The same samples as `ffmpeg -i FILE -async 1 -ac 1 -ar RATE` (syncnet_python's audio extraction):
    * timing (`align_to_video`): sample 0 is the video stream's first instant, so audio frame i pairs with
      video frame i. A sound stream that starts later than the picture is padded at the front with silence,
      one that starts earlier is trimmed (`-async 1`, i.e. `aresample=async=1:first_pts=0`; it pads to the
      container start, which is the video start whenever the video does not start after the audio).
      The start is the first decoded audio frame's timestamp (codec priming handled by the decoder).
    * downmix: FFmpeg's default channel matrix normalised as for its integer outputs (`-ac 1` writing
      s16): stereo -> (L + R) / 2, 5.1 -> FFmpeg's centre/surround mix levels scaled so no sum clips.
      (A float output in FFmpeg would not normalise: (L + R) / sqrt(2), 3 dB louder, able to clip.)
    * resampling: FFmpeg's default swresample filter (the one `-ar` uses), computed in float.
    """
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"audio not found: {path}")
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise MediaError(f"{path} has no audio stream; give a .wav/.mp3 or a video with sound")
            stream = container.streams.audio[0]
            video_start = _video_start(container) if align_to_video else None
            return _decode_mono(container, stream, sample_rate, video_start)
    except av.FFmpegError as err:
        raise MediaError(f"cannot decode audio {path}: {err}") from err


def _video_start(container: av.container.InputContainer) -> float | None:
    """Start time in seconds of the first video stream (None: none, or only cover art as in an mp3)."""
    moving = [v for v in container.streams.video if not v.disposition & av.stream.Disposition.attached_pic]
    if not moving:
        return None
    vs = moving[0]
    if vs.start_time is None or vs.time_base is None:
        return 0.0
    return float(vs.start_time * vs.time_base)


def _mono_graph(stream: av.AudioStream, frame: av.AudioFrame, sample_rate: int) -> av.filter.Graph:
    """abuffer -> aresample (FFmpeg default filter, matrix normalised to max 1) -> flt mono -> sink."""
    graph = av.filter.Graph()
    src = graph.add_abuffer(
        sample_rate=frame.sample_rate,
        format=frame.format.name,
        layout=frame.layout.name,
        time_base=stream.time_base or Fraction(1, frame.sample_rate),
    )
    resample = graph.add("aresample", f"{sample_rate}:rematrix_maxval=1.0")
    fmt = graph.add("aformat", f"sample_fmts=flt:channel_layouts=mono:sample_rates={sample_rate}")
    sink = graph.add("abuffersink")
    src.link_to(resample)
    resample.link_to(fmt)
    fmt.link_to(sink)
    graph.configure()
    return graph


def _decode_mono(
    container: av.container.InputContainer,
    stream: av.AudioStream,
    sample_rate: int,
    video_start: float | None,
) -> np.ndarray:
    """All of `stream` as mono float32 at `sample_rate`, its timing made FFmpeg's when `video_start` (s) is given.

    Like `aresample=async=1:first_pts=0`: a late start, and a hole of more than 0.1 s between two frames'
    timestamps, are filled with silence at the input rate, before resampling (so the resampler's phase is
    FFmpeg's); an early start is trimmed in output samples. (Overlapping timestamps are not trimmed.)
    """
    chunks: list[np.ndarray] = []
    graph: av.filter.Graph | None = None
    trim, expected = 0, None
    for frame in container.decode(stream):
        if graph is None:
            graph = _mono_graph(stream, frame, sample_rate)
            offset = _start_offset(frame, video_start)
            pad = round(offset * frame.sample_rate) if offset > 0 else 0
            trim = round(-offset * sample_rate) if offset < 0 else 0
            expected = float(frame.time) if frame.time is not None and video_start is not None else None
        else:
            pad = _hole(frame, expected)
            expected = None if expected is None else expected + pad / frame.sample_rate
        if pad:
            graph.push(_silence(frame, pad))
        if expected is not None:
            expected += frame.samples / frame.sample_rate
        frame.pts = None  # the graph only converts; timing was applied above
        graph.push(frame)
        chunks.extend(_pull_all(graph))
    if graph is not None:
        graph.push(None)
        chunks.extend(_pull_all(graph))
    samples = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    return samples[trim:]


def _hole(frame: av.AudioFrame, expected: float | None) -> int:
    """Input samples of silence owed before `frame`: its timestamp past `expected` by more than 0.1 s
    (`-async 1`'s min_hard_comp), else 0."""
    if expected is None or frame.time is None:
        return 0
    gap = float(frame.time) - expected
    return round(gap * frame.sample_rate) if gap > MIN_HARD_COMP_S else 0


def _start_offset(frame: av.AudioFrame, video_start: float | None) -> float:
    """Seconds the sound starts after the picture (0 when not aligning or within `-async 1`'s 1 ms)."""
    if video_start is None or frame.time is None:
        return 0.0
    offset = float(frame.time) - video_start
    return offset if abs(offset) > MIN_ASYNC_S else 0.0


def _silence(like: av.AudioFrame, samples: int) -> av.AudioFrame:
    """`samples` of digital silence in the format, layout and rate of `like`."""
    frame = av.AudioFrame(format=like.format.name, layout=like.layout.name, samples=samples)
    fill = b"\x80" if like.format.name in ("u8", "u8p") else b"\x00"  # unsigned 8-bit silence is 128
    for plane in frame.planes:
        plane.update(fill * plane.buffer_size)
    frame.sample_rate = like.sample_rate
    return frame


def _pull_all(graph: av.filter.Graph) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    while True:
        try:
            frame = graph.pull()
        except (av.BlockingIOError, av.EOFError):
            return out
        out.append(frame.to_ndarray().reshape(-1))


def write_wav(path: str | Path, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Path:
    """16-bit PCM mono wav."""
    import soundfile as sf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.clip(samples, -1, 1), sample_rate, subtype="PCM_16")
    return path


# -- writing -----------------------------------------------------------------------------------
class VideoWriter:
    """Streaming H.264 writer at a fixed fps, with optional AAC audio muxed in.

    The file is written to a temporary name and renamed on a clean close, so an interrupted render
    never leaves a truncated video at `path`. Audio longer than the video is cut to its length.

    Example:
        with VideoWriter("out.mp4", audio=wav) as w:
            w.write(frames_uint8)  # T x H x W x 3
    """

    def __init__(
        self,
        path: str | Path,
        fps: int = FPS,
        audio: np.ndarray | None = None,
        sample_rate: int = SAMPLE_RATE,
        crf: int = 18,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix or '.mp4'}")
        self.fps, self.crf = fps, crf
        self.audio, self.sample_rate = audio, sample_rate
        self.frames_written = 0
        self._container = av.open(str(self._tmp), mode="w", format="mp4")
        self._video: av.VideoStream | None = None
        self._audio: av.AudioStream | None = None

    def _open_stream(self, height: int, width: int) -> av.VideoStream:
        stream = self._container.add_stream("libx264", rate=Fraction(self.fps))
        stream.width, stream.height = width + width % 2, height + height % 2
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(self.crf), "preset": "veryfast"}
        return stream

    def write(self, frames: np.ndarray | torch.Tensor) -> None:
        """frames: T x H x W x 3 uint8 (or one H x W x 3 frame)."""
        arr = frames.numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
        if arr.ndim == 3:
            arr = arr[None]
        if arr.dtype != np.uint8:
            raise TypeError(
                f"VideoWriter.write expects uint8 frames, got {arr.dtype}; use edtalk.io.to_uint8"
            )
        if self._video is None:
            self._video = self._open_stream(arr.shape[1], arr.shape[2])
            if self.audio is not None:  # every stream must exist before the first packet is muxed
                self._audio = self._container.add_stream("aac", rate=self.sample_rate)
                self._audio.layout = "mono"
        for image in arr:
            if image.shape[0] % 2 or image.shape[1] % 2:
                image = np.pad(image, ((0, image.shape[0] % 2), (0, image.shape[1] % 2), (0, 0)), mode="edge")
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            for packet in self._video.encode(frame):
                self._container.mux(packet)
            self.frames_written += 1

    def _mux_audio(self) -> None:
        if self.audio is None or self._audio is None:
            return
        n = min(len(self.audio), math.ceil(self.frames_written / self.fps * self.sample_rate))
        samples = np.clip(self.audio[:n], -1, 1).astype(np.float32)
        stream = self._audio
        step = 1024 * 16
        for i in range(0, len(samples), step):
            frame = av.AudioFrame.from_ndarray(samples[None, i : i + step], format="flt", layout="mono")
            frame.sample_rate = self.sample_rate
            # timestamps make the encoder's priming (1024 samples of AAC) negative, so the muxer writes an
            # edit list that skips it; without them the sound plays 64 ms (1.6 frames at 16 kHz) late
            frame.pts, frame.time_base = i, Fraction(1, self.sample_rate)
            for packet in stream.encode(frame):
                self._container.mux(packet)
        for packet in stream.encode(None):
            self._container.mux(packet)

    def close(self) -> Path:
        if self._video is not None:
            for packet in self._video.encode(None):
                self._container.mux(packet)
        self._mux_audio()
        self._container.close()
        if self.frames_written == 0:
            self._tmp.unlink(missing_ok=True)
            raise MediaError(f"no frames were written to {self.path}")
        self._tmp.replace(self.path)
        return self.path

    def abort(self) -> None:
        self._container.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_video(
    path: str | Path, frames: np.ndarray | torch.Tensor, fps: int = FPS, audio: np.ndarray | None = None
) -> Path:
    """Write T x H x W x 3 uint8 frames (plus optional mono float audio at 16 kHz) in one call."""
    with VideoWriter(path, fps=fps, audio=audio) as writer:
        writer.write(frames)
    return writer.path


def save_npz_atomic(path: str | Path, payload: Mapping[str, Any]) -> Path:
    """`np.savez(path, **payload)` written under a temporary name and renamed: a crash mid-write never
    leaves a partial file under `path` (readers of sidecars see the old file or the new one)."""
    out = Path(path)
    tmp = out.with_name(f".{out.name}.tmp.npz")
    np.savez(tmp, **payload)
    os.replace(tmp, out)
    return out
