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
