"""Writing rendered chunks: an H.264 writer thread that overlaps encoding with rendering, and the original
demos' per-clip min-max pixel map (`--legacy-normalize`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from edtalk.io import FPS, VideoWriter, to_uint8


def write_chunks(
    frames: Iterator[torch.Tensor],
    out: Path,
    num_frames: int,
    soundtrack: np.ndarray | None,
    progress: bool,
) -> Path:
    """Encode chunk i on a writer thread while chunk i+1 renders (H.264 encoding overlaps the GPU).

    Args:
        frames: chunks n x 3 x S x S, float in [-1, 1] or uint8.
        out: the .mp4 to write (25 fps; AAC when `soundtrack` is given).
        num_frames: total frames (for the progress bar).
        soundtrack: 16 kHz mono waveform or None.
        progress: show a progress bar.
    """
    from concurrent.futures import Future, ThreadPoolExecutor

    from tqdm import tqdm

    def write(chunk: torch.Tensor) -> None:
        writer.write(chunk if chunk.dtype == torch.uint8 else to_uint8(chunk))
        bar.update(len(chunk))

    with (
        VideoWriter(out, fps=FPS, audio=soundtrack) as writer,
        tqdm(total=num_frames, unit="frame", desc="generate", disable=not progress) as bar,
        ThreadPoolExecutor(1, thread_name_prefix="edtalk-writer") as pool,
    ):
        pending: Future[None] | None = None
        for chunk in frames:
            if pending is not None:
                pending.result()  # at most one chunk in flight: memory stays flat
            pending = pool.submit(write, chunk)
        if pending is not None:
            pending.result()
    return writer.path


def legacy_frames(frames: Iterator[torch.Tensor], total: int, tmp: Path) -> Iterator[torch.Tensor]:
    """The original demos' pixel map: clamp, min-max over the whole clip, truncate (two passes via disk)."""
    from edtalk.io import legacy_to_uint8

    store: np.ndarray | None = None
    lo, hi, n = float("inf"), float("-inf"), 0
    for chunk in frames:
        x = chunk.clamp(-1, 1)
        if store is None:
            store = np.memmap(tmp / "legacy.f32", dtype=np.float32, mode="w+", shape=(total, *x.shape[1:]))
        store[n : n + len(x)] = x.numpy()
        lo, hi, n = min(lo, float(x.min())), max(hi, float(x.max())), n + len(x)
    assert store is not None
    for i in range(0, n, 16):
        yield legacy_to_uint8(torch.from_numpy(np.array(store[i : i + 16])), value_range=(lo, hi))


class LiveWriter:
    """Fragmented mp4 (H.264 + AAC) written as frames arrive: whatever was written plays even if the
    process dies (one fragment per second: a keyframe every 25 frames).

    Each `write(frames, audio)` appends n frames and their n * 640 audio samples.
    """

    def __init__(self, path: Path, fps: int = FPS, sample_rate: int = 16000) -> None:
        import av

        self.path, self.fps, self.sample_rate = path, fps, sample_rate
        path.parent.mkdir(parents=True, exist_ok=True)
        self.container = av.open(
            str(path),
            mode="w",
            format="mp4",
            # AAC priming keeps its negative timestamps: shifting them would move video frames 1.. by 64 ms
            options={
                "movflags": "frag_keyframe+empty_moov+default_base_moof",
                "avoid_negative_ts": "disabled",
            },
        )
        self.video: av.VideoStream | None = None
        self.audio: av.AudioStream | None = None
        self.frames = self.samples = 0

    def _open(self, height: int, width: int) -> None:
        from fractions import Fraction

        video = self.container.add_stream("libx264", rate=Fraction(self.fps))
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"crf": "18", "preset": "veryfast", "tune": "zerolatency", "g": str(self.fps)}
        audio = self.container.add_stream("aac", rate=self.sample_rate)
        audio.layout = "mono"
        self.video, self.audio = video, audio

    def write(self, frames: torch.Tensor, audio: np.ndarray) -> None:
        """frames: n x 3 x S x S float in [-1, 1]; audio: their 16 kHz samples (float)."""
        from fractions import Fraction

        import av

        images = to_uint8(frames).numpy()  # -> n x S x S x 3
        if self.video is None:
            self._open(images.shape[1], images.shape[2])
        assert self.video is not None and self.audio is not None
        for image in images:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts, frame.time_base = self.frames, Fraction(1, self.fps)
            for packet in self.video.encode(frame):
                self.container.mux(packet)
            self.frames += 1
        if len(audio):
            chunk = av.AudioFrame.from_ndarray(
                np.clip(audio, -1, 1).astype(np.float32)[None], format="flt", layout="mono"
            )
            chunk.sample_rate, chunk.pts, chunk.time_base = (
                self.sample_rate,
                self.samples,
                Fraction(1, self.sample_rate),
            )
            for packet in self.audio.encode(chunk):
                self.container.mux(packet)
            self.samples += len(audio)

    def close(self) -> Path:
        """Flush both encoders and finish the file (also after an error: the frames so far stay playable)."""
        if self.video is not None and self.audio is not None:
            for stream in (self.video, self.audio):
                for packet in stream.encode(None):
                    self.container.mux(packet)
        self.container.close()
        return self.path
