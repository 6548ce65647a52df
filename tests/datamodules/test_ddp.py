"""Two CPU processes (gloo) read the shards: disjoint clips that together cover the split."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import DataLoader

from datamodules import PairDataModule
from datamodules.shards import clip_pipeline, read_index, shard_urls


def _keys(src: Iterable[dict[str, Any]]) -> Iterator[dict[str, str]]:
    for sample in src:
        yield {"key": sample["__key__"]}


def _rank_main(rank: int, root: str, out: str, init: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=2)
    try:
        pipeline = clip_pipeline(shard_urls(root, "train"), _keys)  # rank from the process group
        loader = DataLoader(pipeline, batch_size=None, num_workers=2, multiprocessing_context="fork")
        keys = [item["key"] for item in loader]
        dm = PairDataModule(root, image_size=32, batch_size=2, num_workers=0)
        dm.setup("fit")
        train_batches = sum(1 for _ in dm.train_dataloader())
        gathered: list[object] = [None, None]
        dist.all_gather_object(gathered, {"keys": keys, "train_batches": train_batches})
        if rank == 0:
            Path(out).write_text(json.dumps(gathered))
    finally:
        dist.destroy_process_group()


def test_two_process_ddp_read_is_disjoint_and_complete(tiny_shards: Path, tmp_path: Path) -> None:
    out = tmp_path / "seen.json"
    mp.start_processes(
        _rank_main, args=(str(tiny_shards), str(out), str(tmp_path / "init")), nprocs=2, start_method="spawn"
    )
    rank0, rank1 = json.loads(out.read_text())
    a, b = set(rank0["keys"]), set(rank1["keys"])
    assert len(a) == len(rank0["keys"]) and len(b) == len(rank1["keys"])  # no clip twice within a rank
    assert not a & b
    train = {c for s in read_index(tiny_shards)["shards"] if s["split"] == "train" for c in s["clips"]}
    assert a | b == train and len(a) == len(b) == 6
    assert rank0["train_batches"] == rank1["train_batches"] == 3  # 12 clips / 2 ranks / batch 2
    assert torch.distributed.is_available()
