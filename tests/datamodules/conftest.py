"""Fixtures for the data tests: the built-in dataset (built once, cached) and tiny hand-made shards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from datamodules.shards import ClipRecord, ShardWriter


@pytest.fixture(scope="session")
def builtin() -> Path:
    """The built-in dataset's shard directory (built through the real pipeline on first use)."""
    from datamodules.synthetic import ensure_builtin

    return ensure_builtin()


def make_clip(key: str, split: str, num_frames: int = 12, size: int = 32, seed: int = 0) -> ClipRecord:
    """A clip whose frame t is a flat image of grey level 8 t (so a frame's index is readable)."""
    rng = np.random.default_rng(seed)
    frames = np.stack([np.full((size, size, 3), 8 * t, np.uint8) for t in range(num_frames)])
    lmk = rng.uniform(0, size, (num_frames, 68, 2)).astype(np.float32)
    bbox = np.tile(np.array([1, 2, 3, 4], np.float32), (num_frames, 1))
    wav = (0.1 * rng.standard_normal(num_frames * 640)).astype(np.float32)
    meta = {
        "dataset": "test",
        "speaker": key.split("#")[0],
        "emotion": "happy",
        "emotion_id": 4,
        "level": "level_1",
    }
    return ClipRecord(key, frames, wav, lmk, bbox, {**meta, "fps": 25, "split": split})


@pytest.fixture
def tiny_shards(tmp_path: Path) -> Path:
    """12 train clips in 6 shards and 3 test clips in 2 shards."""
    root = tmp_path / "shards"
    with ShardWriter(root, max_clips=2) as writer:
        for i in range(12):
            writer.write(make_clip(f"A{i % 3}#happy#level_1#{i:03d}", "train", seed=i))
        for i in range(3):
            writer.write(make_clip(f"B0#happy#level_1#{i:03d}", "test", seed=100 + i))
    return root
