"""Two-process DDP (gloo, CPU) through edtalk.train's Trainer: ranks see different data yet end with
identical weights (upstream unwrapped DDP, so each rank trained its own copy)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

WORKER = Path(__file__).parent / "stages" / "workers.py"


def test_two_process_ddp_keeps_ranks_identical(tmp_path: Path) -> None:
    from datamodules.synthetic import ensure_builtin

    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    proc = subprocess.run(
        [sys.executable, str(WORKER), "ddp", str(tmp_path), str(ensure_builtin())],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert r0["step"] == r1["step"] == 3
    assert r0["batches"] != r1["batches"]  # disjoint data per rank
    diff = [k for k in r0["state"] if not torch.equal(r0["state"][k], r1["state"][k])]
    assert not diff, diff[:5]
    init = torch.load(tmp_path / "reconstruct" / "debug" / "checkpoints" / "last.ckpt", weights_only=True)
    assert init["global_step"] == 3
