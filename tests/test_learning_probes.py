"""The learning table's probe data from the second process (`learning_probes`, an early task of the demo plan)
are used only for the weights and shards they were taken from; anything else is collected again."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import torch

from edtalk.apps.tasks import PROBES_FILE, cached_probes, save_probes
from edtalk.config import GeneratorConfig
from edtalk.nn.generator import Generator


def tiny(seed: int) -> Generator:
    torch.manual_seed(seed)
    return Generator(
        GeneratorConfig(size=64, style_dim=64, channel_multiplier=0.0625, max_channels=16)
    ).eval()


def test_probe_data_are_used_for_the_same_weights_and_shards_only(tmp_path: Path) -> None:
    shards = tmp_path / "shards"
    shards.mkdir()
    (shards / "train-000000.tar").write_bytes(b"x" * 10)
    job = SimpleNamespace(out=tmp_path / "out", shards=shards)
    assert cached_probes(job, {"floor": tiny(0)}) == ({}, {})  # none written yet
    save_probes(job.out / PROBES_FILE, shards, {"floor": tiny(0), "mouth_pose": tiny(1)}, {"floor": "tr0", "mouth_pose": "tr1"}, {"floor": "te0", "mouth_pose": "te1"})  # fmt: skip
    # the same weights (rebuilt with the same seed) are found; other weights are not
    assert cached_probes(job, {"floor": tiny(0), "mouth_pose": tiny(1)}) == (
        {"floor": "tr0", "mouth_pose": "tr1"},
        {"floor": "te0", "mouth_pose": "te1"},
    )
    assert cached_probes(job, {"floor": tiny(0), "mouth_pose": tiny(2), "ours": tiny(3)}) == (
        {"floor": "tr0"},
        {"floor": "te0"},
    )
    # a shard rewritten since: nothing is taken
    stat = (shards / "train-000000.tar").stat()
    os.utime(shards / "train-000000.tar", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert cached_probes(job, {"floor": tiny(0)}) == ({}, {})
    assert not list(job.out.rglob(".*.tmp"))  # written under a temporary name and renamed
