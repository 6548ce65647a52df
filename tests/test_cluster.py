"""The cluster front door: experiments/cluster/slurm.sbatch checked by bash and run against stub SLURM tools
(srun records its command line; scontrol records a requeue), and the world-size rule of edtalk.train."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from edtalk.train import compose, devices_per_node, run_summary, world_size

TEMPLATE = Path(__file__).resolve().parents[1] / "experiments" / "cluster" / "slurm.sbatch"

SRUN = """#!/bin/bash
printf '%s\\n' "$@" > "$STUB_OUT/srun.args"
if [[ -n "${STUB_WAIT:-}" ]]; then
  trap 'echo usr1 > "$STUB_OUT/task.signal"; exit 0' USR1
  touch "$STUB_OUT/started"
  for _ in $(seq 200); do sleep 0.05; done
fi
"""
SCONTROL = """#!/bin/bash
printf '%s\\n' "$@" > "$STUB_OUT/scontrol.args"
"""


def _stubs(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("srun", SRUN), ("scontrol", SCONTROL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "STUB_OUT": str(tmp_path),
        "SLURM_NNODES": "2",
        "SLURM_NTASKS_PER_NODE": "4(x2)",
        "SLURM_JOB_ID": "4242",
        "EXPERIMENT": "expression",
        "DATA": "/shared/shards",
        "INIT_FROM": "/shared/mp.ckpt",
        "RUN_ROOT": str(tmp_path / "runs"),
        "EXTRA": "data.num_workers=6 trainer.precision=bf16-mixed",
    }


def test_template_parses_and_builds_the_fit_command(tmp_path: Path) -> None:
    subprocess.run(["bash", "-n", str(TEMPLATE)], check=True)
    env = _stubs(tmp_path)
    subprocess.run(["bash", str(TEMPLATE)], check=True, env=env, cwd=tmp_path, capture_output=True)
    args = (tmp_path / "srun.args").read_text().split("\n")
    assert args[:3] == ["--kill-on-bad-exit=1", "edtalk", "fit"] and "expression" in args
    expected = {
        "trainer.num_nodes=2",
        "trainer.devices=4",
        "init_from=/shared/mp.ckpt",
        "data.root=/shared/shards",
    }
    assert expected | {"data.num_workers=6", "trainer.precision=bf16-mixed"} <= set(args)
    assert "ckpt_path=last" not in args  # nothing to resume yet
    last = tmp_path / "runs" / "expression" / "main" / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"")
    subprocess.run(["bash", str(TEMPLATE)], check=True, env=env, cwd=tmp_path, capture_output=True)
    assert "ckpt_path=last" in (tmp_path / "srun.args").read_text().split("\n")
    missing = {k: v for k, v in env.items() if k != "EXPERIMENT"}
    proc = subprocess.run(["bash", str(TEMPLATE)], env=missing, cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode != 0 and "set EXPERIMENT" in proc.stderr


def test_pre_emption_notice_reaches_the_tasks_and_requeues(tmp_path: Path) -> None:
    env = {**_stubs(tmp_path), "STUB_WAIT": "1"}
    proc = subprocess.Popen(["bash", str(TEMPLATE)], env=env, cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while not (tmp_path / "started").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGUSR1)  # what `--signal=B:USR1@180` sends the batch shell
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert (tmp_path / "task.signal").read_text().strip() == "usr1"
    assert (tmp_path / "scontrol.args").read_text().split() == ["requeue", "4242"]


@pytest.mark.parametrize(
    ("overrides", "per_node", "world"),
    [
        (["trainer.devices=4", "trainer.accelerator=cpu"], 4, 4),
        (["trainer.devices=2", "trainer.num_nodes=2"], 2, 4),
        (["trainer.devices=auto", "trainer.accelerator=cpu", "trainer.num_nodes=3"], 1, 3),
        (["trainer.devices=[0,1,2]", "trainer.num_nodes=2"], 3, 6),
        (["trainer.devices='0,1'"], 2, 2),
    ],
)
def test_world_size_rule(overrides: list[str], per_node: int, world: int) -> None:
    cfg = compose(
        "mouth_pose", [*overrides, "data.batch_size=3", "model.optim.scale_lr_with_world_size=true"]
    )
    assert devices_per_node(cfg) == per_node and world_size(cfg) == world
    lines = "\n".join(run_summary(cfg))
    assert f"world_size: {world}" in lines and f"global_batch: {3 * world}" in lines
    assert f"model.optim.g_lr={0.0016 * world:.6g}" in lines and "scaled x world_size" in lines
