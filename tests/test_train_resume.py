"""Kill-and-resume (a real SIGKILL mid-run) gives bit-identical weights to an uninterrupted run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

WORKER = Path(__file__).parent / "stages" / "workers.py"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(WORKER), *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_kill_and_resume_equals_uninterrupted(tmp_path: Path) -> None:
    full, killed = tmp_path / "full", tmp_path / "killed"
    assert _run("resume", str(full), "6", "0").returncode == 0
    proc = _run("resume", str(killed), "6", "3")
    assert proc.returncode == -9, proc.stderr[-2000:]  # really killed
    assert not (killed / "rank0.pt").exists()
    last = killed / "ckpts" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 3
    proc = _run("resume", str(killed), "6", "0", str(last))
    assert proc.returncode == 0, proc.stderr[-2000:]

    a = torch.load(full / "rank0.pt", weights_only=True)
    b = torch.load(killed / "rank0.pt", weights_only=True)
    assert a["step"] == b["step"] == 6
    assert a["batches"][3:] == b["batches"]  # the resumed run saw the same data stream
    assert a["state"].keys() == b["state"].keys()
    diff = [k for k in a["state"] if not torch.equal(a["state"][k], b["state"][k])]
    assert not diff, diff[:5]  # generator, EMA generator and discriminator
