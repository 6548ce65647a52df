"""Live rendering: 16 kHz speech as it arrives -> frames as soon as their look-ahead is in (`edtalk stream`).

A frame needs audio beyond its own 40 ms: its mel window reaches ~2.3 frames ahead (SPEC 4.1) and the
mouth smoothing (k = 3) the next frame's window. With look-ahead L, frame t is rendered once frames
0 .. t + L of audio have arrived, and it equals frame t of an offline render of the first t + L + 1
frames of that audio (the whole audio near its end). From L = `EXACT_LOOKAHEAD` (4 frames, 160 ms) on,
no mel frame a window or the smoothing reads depends on later audio: the streamed video equals
`edtalk generate` on the whole audio.

Mel frames are computed on a short segment ending at the prefix (pre-emphasis and the centred STFT
only reach 3 hops back), so each frame costs O(1) audio work however long the stream runs.

| class          | does                                                                              |
|----------------|-----------------------------------------------------------------------------------|
| `PcmReader`    | a WAV or raw s16le stream (file, stdin, pipe) -> float32 blocks on a reader thread  |
| `LiveMouth`    | prefix of the waveform -> smoothed Audio2Lip mouth weights of frame t              |
| `LiveSession`  | the loop: wait for audio, render ready frames in chunks, write them, count drops   |
| `photo_session`| a session for a photo file (crop, encode once, emotion): `edtalk stream`, the page |
"""

from __future__ import annotations

import queue
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from torch import nn

from edtalk.io import MediaError
from edtalk.nn.generator import Generator
from edtalk.pipeline.media import SAMPLES_PER_FRAME
from edtalk.pipeline.render import Renderer, StillSource, autocast, default_chunk_size, float32

SAMPLE_RATE = 16000
EXACT_LOOKAHEAD = 4  # frames: (t + 1 + L) * 640 >= 200 * (mel rows of frame t + 1) + 400 for every t
HOP = 200
N_FFT = 800
SEGMENT_MARGIN = 3  # mel frames recomputed before the first one needed (pre-emphasis + STFT reach)


class StreamError(MediaError):
    """The audio stream cannot be used (wrong format or sample rate)."""


# -- input -----------------------------------------------------------------------------------------
def read_wav_header(fh: BinaryIO, name: str) -> tuple[bytes, bool, int | None]:
    """Consume a RIFF/WAVE header up to its data chunk.

    Returns:
        (bytes already read past the header, samples are float32, data bytes the header announces or
        None for streams that do not say).

    Raw streams (no "RIFF") are taken as 16 kHz mono s16le: the bytes read are returned as data.

    Raises:
        StreamError: a WAV that is not 16 kHz mono 16-bit PCM / 32-bit float.
    """
    head = _read_exact(fh, 12)
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return head, False, None
    fmt: tuple[int, int, int, int] | None = None
    while True:
        chunk = _read_exact(fh, 8)
        if len(chunk) < 8:
            raise StreamError(f"{name}: the WAV header ends before its data chunk")
        kind, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
        if kind == b"data":
            announced = size if 0 < size < 0xFFFFFFFF else None
            break
        body = _read_exact(fh, size + size % 2)
        if kind == b"fmt ":
            tag, channels, rate = struct.unpack("<HHI", body[:8])
            bits = struct.unpack("<H", body[14:16])[0]
            fmt = (tag, channels, rate, bits)
    if fmt is None:
        raise StreamError(f"{name}: WAV without a fmt chunk")
    tag, channels, rate, bits = fmt
    if rate != SAMPLE_RATE:
        raise StreamError(
            f"{name}: sample rate {rate} Hz, expected 16000; resample first, e.g. "
            "`ffmpeg -i IN -ar 16000 -ac 1 -f wav -`"
        )
    if channels != 1 or (tag, bits) not in ((1, 16), (3, 32), (0xFFFE, 16)):
        raise StreamError(
            f"{name}: {channels} channel(s), {bits}-bit (format {tag}); expected mono 16-bit PCM or "
            "32-bit float: `ffmpeg -i IN -ar 16000 -ac 1 -f wav -`"
        )
    return b"", tag == 3, announced


def _read_exact(fh: BinaryIO, n: int) -> bytes:
    out = b""
    while len(out) < n:
        got = fh.read(n - len(out))
        if not got:
            break
        out += got
    return out


class PcmReader:
    """Reads a 16 kHz mono stream on a thread; `get()` returns float32 blocks (None = end of stream).

    Args:
        fh: binary stream (a file, stdin's buffer, a named pipe).
        name: label in messages.
        realtime: pace reading at real time (a file standing in for a microphone).
        block: samples per read (20 ms).
    """

    def __init__(self, fh: BinaryIO, name: str, realtime: bool = False, block: int = 320) -> None:
        self.fh, self.name, self.realtime, self.block = fh, name, realtime, block
        self.leftover, self.is_float, announced = read_wav_header(fh, name)
        self.raw = announced is None and not self.is_float and len(self.leftover) > 0  # no RIFF header
        width = 4 if self.is_float else 2
        self.announced = announced // width if announced is not None else None  # samples
        self.queue: queue.Queue[np.ndarray | None] = queue.Queue()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="edtalk-pcm", daemon=True)

    def start(self) -> PcmReader:
        self.thread.start()
        return self

    def _run(self) -> None:
        width = 4 if self.is_float else 2
        pending, start, sent = self.leftover, time.perf_counter(), 0
        try:
            while True:
                data = self.fh.read(self.block * width)
                pending += data or b""
                usable = len(pending) - len(pending) % width
                if usable:
                    raw, pending = pending[:usable], pending[usable:]
                    samples = (
                        np.frombuffer(raw, "<f4").copy()
                        if self.is_float
                        else np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
                    )
                    if self.realtime:  # deliver no earlier than the samples would be spoken
                        time.sleep(
                            max(0.0, start + (sent + len(samples)) / SAMPLE_RATE - time.perf_counter())
                        )
                    sent += len(samples)
                    self.queue.put(samples)
                if not data:
                    break
        except (OSError, ValueError) as err:  # a pipe that broke under us ends the stream
            self.error = err
        finally:
            self.queue.put(None)


# -- audio -> mouth --------------------------------------------------------------------------------
class LiveMouth:
    """Smoothed Audio2Lip mouth weights of frame t from a prefix of the waveform, as offline would give.

    A frame's raw weights are cached once its window no longer depends on audio still to come.
    """

    def __init__(self, audio2lip: nn.Module, device: torch.device) -> None:
        self.audio2lip, self.device = audio2lip, device
        self.cache: dict[int, torch.Tensor] = {}

    def windows(self, wav: np.ndarray, frames: list[int], num_frames: int) -> tuple[torch.Tensor, list[bool]]:
        """Mel windows (F x 1 x 80 x 16) of `frames` of the clip wav[:num_frames*640], and whether each is
        final (reads no sample past the prefix, so longer audio cannot change it)."""
        from edtalk.mel import mel_spectrogram, window_rows

        n_samples = num_frames * SAMPLES_PER_FRAME
        rows = window_rows(num_frames, 1 + n_samples // HOP)[frames]  # -> F x 16 global mel frames
        first = max(0, int(rows.min()) - SEGMENT_MARGIN)
        end = min(n_samples, (int(rows.max()) + SEGMENT_MARGIN + 1) * HOP)  # the STFT reaches 2 hops ahead
        mel = mel_spectrogram(wav[first * HOP : end])  # local frame k = global frame first + k
        stacked = mel[rows - first]  # -> F x 16 x 80
        final = [int(r.max()) * HOP + N_FFT // 2 <= n_samples for r in rows]
        windows = np.ascontiguousarray(stacked.transpose(0, 2, 1)[:, None], dtype=np.float32)
        return torch.from_numpy(windows), final

    def raw(self, wav: np.ndarray, frames: list[int], num_frames: int) -> dict[int, torch.Tensor]:
        """Unsmoothed 1 x 20 weights of `frames` (cached where final)."""
        todo = [f for f in frames if f not in self.cache]
        out = {f: self.cache[f] for f in frames if f in self.cache}
        if todo:
            windows, final = self.windows(wav, todo, num_frames)
            coeffs = self.audio2lip(windows.to(self.device)).float()  # -> F x 20
            for f, c, keep in zip(todo, coeffs, final, strict=True):
                out[f] = c[None]
                if keep:
                    self.cache[f] = c[None]
        return out

    def mouth(self, wav: np.ndarray, t: int, num_frames: int) -> torch.Tensor:
        """1 x 20 smoothed mouth weights of frame t of the clip wav[:num_frames*640] (t < num_frames)."""
        from edtalk.mel import SMOOTHING_KERNEL

        frames = [f for f in (t - 1, t, t + 1) if 0 <= f < num_frames]
        raw = self.raw(wav, frames, num_frames)
        self.cache.pop(t - 3, None)  # frames before t - 1 are never read again
        out = torch.zeros_like(raw[t])
        for f in frames:  # zero padding at both ends, as smooth_coefficients
            out = out + SMOOTHING_KERNEL[f - t + 1] * raw[f]
        return out


# -- the loop ------------------------------------------------------------------------------------------
@dataclass
class LiveStats:
    """What `edtalk stream` reports (its last stderr line)."""

    first_frame_latency_s: float | None = None
    rtf: float | None = None
    frames: int = 0
    dropped: int = 0
    notes: list[str] = field(default_factory=list)

    def report(self) -> dict[str, float | int | None]:
        return {
            "first_frame_latency_s": self.first_frame_latency_s,
            "rtf": self.rtf,
            "frames": self.frames,
            "dropped": self.dropped,
        }


class LiveSession:
    """Renders a photo driven by streaming speech.

    Args:
        renderer: the renderer (generator on its device, eval mode).
        audio2lip: mouth weights from mel windows.
        source: the photo's `StillSource` (encoded once).
        exp: 1 x 10 expression weights, or None (the source's expression; also None for lip-pose).
        lookahead: frames of audio past frame t required before rendering it (>= 0).
        max_lag: with pacing, seconds a frame may fall behind its audio before it is dropped
            (the previous frame is repeated; None = never drop).
    """

    def __init__(
        self,
        renderer: Renderer,
        audio2lip: nn.Module,
        source: StillSource,
        exp: torch.Tensor | None,
        lookahead: int = EXACT_LOOKAHEAD,
        max_lag: float | None = None,
    ) -> None:
        if lookahead < 0:
            raise ValueError(f"--lookahead must be >= 0 frames, got {lookahead}")
        self.renderer, self.source, self.exp = renderer, source, exp
        self.mouth = LiveMouth(audio2lip, source.enc.w_a.device)
        self.lookahead, self.max_lag = lookahead, max_lag
        self.components = renderer.components
        with torch.inference_mode(), float32(renderer.generator):
            self.q = renderer.generator.basis()  # once per stream

    def warm_up(self) -> None:
        """Pay the one-time costs (mel filterbank, kernel selection) before the first audio arrives."""
        from edtalk.mel import mel_basis

        mel_basis()
        wav = np.zeros((1 + self.lookahead + 1) * SAMPLES_PER_FRAME, np.float32)
        with torch.inference_mode():
            motion = self.motion(wav, 0, 1, None)
            self.renderer.chunk_frames(self.source, motion, self.q)
        self.mouth.cache.clear()

    def motion(self, wav: np.ndarray, start: int, stop: int, total: int | None) -> dict[str, torch.Tensor]:
        """Bank weights of frames [start, stop): mouth from the audio prefix each frame may see."""
        mouths = []
        for t in range(start, stop):
            prefix = t + 1 + self.lookahead if total is None else min(total, t + 1 + self.lookahead)
            mouths.append(self.mouth.mouth(wav, t, prefix))
        n = stop - start
        own = self.source.own
        motion = {"mouth": torch.cat(mouths), "pose": own["pose"].expand(n, -1)}
        if "exp" in self.components:
            motion["exp"] = (self.exp if self.exp is not None else own["exp"]).expand(n, -1)
        return motion

    def run(
        self, reader: PcmReader, write: Callable[[torch.Tensor, np.ndarray], None], stats: LiveStats
    ) -> np.ndarray:
        """Pull audio, render every frame once its look-ahead is in, `write(frames, their audio)`.

        Returns the waveform received (cut to whole frames). `stats` is filled as frames go out.
        """
        blocks: list[np.ndarray] = []
        wav = np.zeros(0, np.float32)
        done, ended, t_first, busy = 0, False, 0.0, 0.0
        last: torch.Tensor | None = None
        while True:
            ready = self._ready(len(wav), done, ended)
            if not ended:
                ended = self._pull(reader, blocks, wait=ready <= 0)
                if blocks:
                    wav = np.concatenate([wav, *blocks])
                    blocks.clear()
                    t_first = t_first or time.perf_counter()
                ready = self._ready(len(wav), done, ended)
            if ready <= 0:
                if ended:
                    break
                continue
            done, last = self._drop(done, ready, t_first, last, wav, write, stats)
            stop = done + min(self.renderer.chunk_size, self._ready(len(wav), done, ended))
            if stop <= done:
                continue
            tick = time.perf_counter()
            total = len(wav) // SAMPLES_PER_FRAME if ended else None
            with torch.inference_mode():
                motion = self.motion(wav, done, stop, total)
                frames = self.renderer.chunk_frames(self.source, motion, self.q, done).float().cpu()
            busy += time.perf_counter() - tick
            write(frames, wav[done * SAMPLES_PER_FRAME : stop * SAMPLES_PER_FRAME])
            if stats.first_frame_latency_s is None:
                stats.first_frame_latency_s = round(time.perf_counter() - t_first, 4)
            done, last = stop, frames[-1:]
            stats.frames = done
            stats.rtf = round(busy / (done * SAMPLES_PER_FRAME / SAMPLE_RATE), 4)
        return wav[: done * SAMPLES_PER_FRAME]

    def _ready(self, samples: int, done: int, ended: bool) -> int:
        """Frames whose look-ahead is in (all remaining whole frames once the stream has ended)."""
        have = samples // SAMPLES_PER_FRAME
        return (have if ended else have - self.lookahead) - done

    def _pull(self, reader: PcmReader, blocks: list[np.ndarray], wait: bool) -> bool:
        """Move queued blocks into `blocks` (waiting for one when there is nothing to render); True at the end."""
        try:
            item = reader.queue.get(timeout=None if wait and not blocks else 0.0)
        except queue.Empty:
            return False
        while True:
            if item is None:
                return True
            blocks.append(item)
            try:
                item = reader.queue.get_nowait()
            except queue.Empty:
                return False

    def _drop(
        self,
        done: int,
        ready: int,
        t_first: float,
        last: torch.Tensor | None,
        wav: np.ndarray,
        write: Callable[[torch.Tensor, np.ndarray], None],
        stats: LiveStats,
    ) -> tuple[int, torch.Tensor | None]:
        """With pacing: frames whose audio arrived more than `max_lag` ago repeat the last frame instead."""
        if self.max_lag is None or last is None:
            return done, last
        due = t_first + (done + 1 + self.lookahead) * SAMPLES_PER_FRAME / SAMPLE_RATE
        behind = int((time.perf_counter() - due - self.max_lag) * SAMPLE_RATE / SAMPLES_PER_FRAME)
        skip = max(0, min(behind, ready - 1))
        if skip:
            write(
                last.expand(skip, -1, -1, -1),
                wav[done * SAMPLES_PER_FRAME : (done + skip) * SAMPLES_PER_FRAME],
            )
            stats.dropped += skip
            stats.frames = done + skip
        return done + skip, last


def photo_session(
    generator: Generator,
    audio2lip: nn.Module,
    photo: Path,
    *,
    device: torch.device,
    emotion: str | None = None,
    name: str = "the generator",
    chunk_size: int | None = None,
    crop: bool = True,
    lookahead: int = EXACT_LOOKAHEAD,
    max_lag: float | None = None,
    bf16: bool = False,
) -> LiveSession:
    """A `LiveSession` for a photo file: models on `device`, the photo cropped (or resized) to the
    generator's size and encoded once, `emotion` (a name or mix, None = the photo's own) as weights.

    Raises:
        ModeError: an emotion for a lip-pose generator.
    """
    import tempfile

    from edtalk.io import from_uint8
    from edtalk.pipeline.inputs import ModeError, emotion_vector
    from edtalk.pipeline.media import Media

    gen, a2l = generator.eval().to(device), audio2lip.eval().to(device)
    exp = None
    if emotion is not None:
        if not gen.cfg.has_expression:
            raise ModeError(f"{name} is a lip-pose generator: an emotion needs the full EDTalk.pt")
        exp = emotion_vector(emotion, gen.cfg.exp_dim, name).to(device)
    renderer = Renderer(gen, chunk_size or default_chunk_size(device))
    with tempfile.TemporaryDirectory(prefix="edtalk-") as tmp:
        image = Media(Path(tmp), gen.cfg.size, crop).image(photo)
    with torch.inference_mode(), autocast(device, bf16):
        source = renderer.still(from_uint8(np.array(image))[None].to(device))
    return LiveSession(renderer, a2l, source, exp, lookahead=lookahead, max_lag=max_lag)
