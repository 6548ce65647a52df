"""A rehearsed multi-node run: `torchrun` with 2 nodes x 2 processes on localhost (gloo, CPU) through
`edtalk fit` for a visual stage (reconstruct) and an audio stage (syncnet), then the world-size-4
reconstruct checkpoint resumed at world size 2 (one node x 2 processes)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules.shards import ShardWriter
from tests.datamodules.conftest import make_clip

WORKER = Path(__file__).parent / "stages" / "workers.py"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _shards(root: Path) -> Path:
    """8 speakers x (1 neutral + 1 happy) training clips in 8 shards, 4 test clips in 4 shards."""
    with ShardWriter(root, max_clips=2) as writer:
        for i in range(16):
            clip = make_clip(
                f"S{i // 2}#{'neutral' if i % 2 == 0 else 'happy'}#level_1#{i:03d}", "train", 16, seed=i
            )
            if i % 2 == 0:
                clip.meta.update(emotion="neutral", emotion_id=0)
            clip.frames = clip.frames // 2 + np.uint8(7 * i)  # every clip its own pixels
            writer.write(clip)
        for i in range(4):
            writer.write(make_clip(f"T{i}#happy#level_1#{i:03d}", "test", 16, seed=100 + i))
    return root


def _torchrun(nodes: int, node_rank: int, port: int, out: Path, args: list[str]) -> subprocess.Popen[str]:
    cmd = [
        sys.executable, "-m", "torch.distributed.run", f"--nnodes={nodes}", "--nproc-per-node=2",
        f"--node-rank={node_rank}", "--master-addr=127.0.0.1", f"--master-port={port}",
        str(WORKER), "cli", str(out), *args,
    ]  # fmt: skip
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "WANDB_MODE": "disabled",
        "PYTHONPATH": str(WORKER.parents[2]),
    }
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait(procs: list[subprocess.Popen[str]]) -> str:
    """Wait for the launchers; returns node 0's output."""
    outs = []
    for proc in procs:
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, out[-3000:]
        outs.append(out)
    return outs[0]


BN_STATS = ("running_mean", "running_var")


def _same_weights_other_data(out: Path) -> None:
    """The four ranks' dumps: step 2 each, each its own batches, identical weights. BatchNorm running
    statistics (the lip-sync expert's) are rank-local: each rank normalises over its own batch, as the
    original's per-GPU batches did (docs/cluster.md; `trainer.sync_batchnorm=true` makes them global)."""
    dumps = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(4)]
    assert [d["step"] for d in dumps] == [2, 2, 2, 2]
    assert len({tuple(d["batches"]) for d in dumps}) == 4  # every rank read its own data
    for d in dumps[1:]:
        diff = [k for k in d["state"] if not torch.equal(d["state"][k], dumps[0]["state"][k])]
        assert diff == [k for k in diff if k.endswith(BN_STATS)], diff[:5]


@pytest.mark.slow
def test_two_nodes_train_in_step_and_resume_at_world_size_two(tmp_path: Path) -> None:
    shards = _shards(tmp_path / "shards")
    common = [
        "fit", "reconstruct", "--debug", f"run.root={tmp_path / 'runs'}", f"data.root={shards}",
        "trainer.accelerator=cpu", "trainer.strategy=ddp", "data.num_workers=1", "data.batch_size=1",
        "trainer.val_check_interval=2", "checkpoint.every_n_steps=2", "logger.wandb=false",
        "model.samples_every_n_steps=0",
    ]  # fmt: skip
    four = [*common, "trainer.devices=2", "trainer.num_nodes=2", "trainer.max_steps=2", "data.resample=false"]
    port = _port()
    out = _wait([_torchrun(2, r, port, tmp_path / "w4", four) for r in (0, 1)])
    assert "world_size: 4 (trainer.num_nodes=2 x 2 per node" in out and "global_batch: 4 " in out
    _same_weights_other_data(tmp_path / "w4")
    last = tmp_path / "runs" / "reconstruct" / "debug" / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 2

    two = [*common, "trainer.devices=2", "trainer.num_nodes=1", "trainer.max_steps=3", "ckpt_path=last"]
    _wait([_torchrun(1, 0, _port(), tmp_path / "w2", two)])
    for r in range(2):
        d = torch.load(tmp_path / "w2" / f"rank{r}.pt", weights_only=False)
        assert d["start_step"] == 2 and d["step"] == 3
        for saved, loaded in zip(ckpt["optimizer_states"], d["start_optim"], strict=True):
            for i, state in saved["state"].items():
                assert all(
                    torch.equal(state[k], loaded["state"][i][k]) for k in state if torch.is_tensor(state[k])
                )

    audio = [  # batch 2: the lip-sync expert has BatchNorm
        "fit", "syncnet", "--debug", f"run.root={tmp_path / 'runs'}", f"data.root={shards}",
        "trainer.accelerator=cpu", "trainer.strategy=ddp", "data.num_workers=1", "data.batch_size=2",
        "trainer.val_check_interval=2", "checkpoint.every_n_steps=2", "logger.wandb=false",
        "trainer.devices=2", "trainer.num_nodes=2", "trainer.max_steps=2", "data.resample=false",
    ]  # fmt: skip
    port = _port()
    _wait([_torchrun(2, r, port, tmp_path / "audio", audio) for r in (0, 1)])
    _same_weights_other_data(tmp_path / "audio")
