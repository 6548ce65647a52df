"""Kill-and-resume (a real SIGKILL mid-run) gives bit-identical weights to an uninterrupted run."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
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


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGUSR1"])
def test_preemption_signal_checkpoints_stops_and_resumes_like_uninterrupted(tmp_path: Path, sig: str) -> None:
    """A pre-emption notice during step 2 (the third batch of the first 3-batch epoch): `edtalk.train.Preemption`
    finishes that batch, writes the checkpoint (step 3), and stops the fit cleanly (exit 0, no step 4);
    resuming from it ends with the weights of a run that was never interrupted. (The checkpoint lands on
    the epoch boundary: a notice earlier in an epoch resumes at the right step, but this test's loader, like
    Lightning's map-style loaders, restarts the epoch's data on resume.)"""
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert _run("preempt", str(full), "6", "0", sig).returncode == 0
    proc = _run("preempt", str(cut), "6", "2", sig)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ckpt = cut / "preempt.ckpt"
    assert torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"] == 3
    assert torch.load(cut / "rank0.pt", weights_only=True)["step"] == 3  # stopped there, not at 6
    proc = _run("preempt", str(cut), "6", "0", sig, str(ckpt))
    assert proc.returncode == 0, proc.stderr[-2000:]
    a = torch.load(full / "rank0.pt", weights_only=True)
    b = torch.load(cut / "rank0.pt", weights_only=True)
    assert a["step"] == b["step"] == 6
    assert a["batches"][3:] == b["batches"]
    diff = [k for k in a["state"] if not torch.equal(a["state"][k], b["state"][k])]
    assert not diff, diff[:5]


def test_preemption_mid_epoch_through_edtalk_fit_resumes_like_uninterrupted(tmp_path: Path) -> None:
    """`edtalk fit` on shards (16 steps per epoch, one loader worker): SIGUSR1 during step 2, checkpoint at
    step 3 (mid-epoch), resume with ckpt_path=last: the shard loader skips the batches the epoch already
    trained on (`datamodules.modules.ResumableLoader`), so steps 4-5 and the weights equal an uninterrupted run's."""
    from tests.test_train_multinode import _shards

    shards = _shards(tmp_path / "shards")

    def fit(name: str, steps: int, *extra: str, signal_at: str = "") -> subprocess.CompletedProcess[str]:
        args = [
            "fit", "reconstruct", "--debug", f"run.root={tmp_path / name}", f"data.root={shards}",
            "trainer.accelerator=cpu", "data.batch_size=1", "data.num_workers=1", f"trainer.max_steps={steps}",
            "trainer.val_check_interval=100", "checkpoint.every_n_steps=100", "logger.wandb=false",
            "model.samples_every_n_steps=0", *extra,
        ]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "SIGNAL_AT": signal_at}
        cmd = [sys.executable, str(WORKER), "cli", str(tmp_path / name / "dump"), *args]
        return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)

    assert fit("full", 5).returncode == 0
    with (tmp_path / "full" / "reconstruct" / "debug" / "logs" / "version_0" / "metrics.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r.get("data/pair_targets")]
    # the per-epoch pairing count (every speaker has a neutral clip in the bank: no fallback)
    assert [(float(r["data/pair_targets"]), float(r["data/pair_fallbacks"])) for r in rows] == [(5.0, 0.0)]
    proc = fit("cut", 5, signal_at="2:SIGUSR1")
    assert proc.returncode == 128 + 10, proc.stderr[-2000:]  # ends as SIGUSR1 would (a plan stops too)
    last = tmp_path / "cut" / "reconstruct" / "debug" / "checkpoints" / "last.ckpt"
    state = torch.load(last, map_location="cpu", weights_only=False)
    assert state["global_step"] == 3
    proc = fit("cut", 5, "ckpt_path=last")
    assert proc.returncode == 0, proc.stderr[-2000:]
    a = torch.load(tmp_path / "full" / "dump" / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "dump" / "rank0.pt", weights_only=True)
    assert a["step"] == b["step"] == 5 and b["start_step"] == 3
    assert a["batches"][3:] == b["batches"]  # the resumed epoch reads on where the stopped one was
    diff = [k for k in a["state"] if not torch.equal(a["state"][k], b["state"][k])]
    assert not diff, diff[:5]
