"""Subprocess entry points for the DDP and kill-and-resume tests (run as scripts, never imported by pytest).

python tests/stages/workers.py ddp OUT SHARDS       two-process gloo DDP through edtalk.train's builders
python tests/stages/workers.py resume OUT STEPS KILL_AT [CKPT]
"""

from __future__ import annotations

import hashlib
import os
import signal
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import lightning as L
import torch


class Dump(L.Callback):
    """Per rank: a hash of every training batch and the final weights."""

    def __init__(self, out: Path) -> None:
        self.out, self.batches = out, []  # type: ignore[var-annotated]

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: Any, batch: Any, batch_idx: int) -> None:
        key = "source" if "source" in batch else "source_a"
        self.batches.append(hashlib.sha1(batch[key].numpy().tobytes()).hexdigest())

    def on_train_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        state = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
        torch.save(
            {"state": state, "batches": self.batches, "step": trainer.global_step},
            self.out / f"rank{trainer.global_rank}.pt",
        )


def ddp(out: Path, shards: Path) -> None:
    from edtalk.stages import stage_class
    from edtalk.train import build_datamodule, build_trainer, compose, resolve_run

    overrides = [
        f"run.root={out}",
        f"data.root={shards}",
        "trainer.devices=2",
        "trainer.strategy=ddp",
        "trainer.max_steps=3",
        "trainer.val_check_interval=3",
        "checkpoint.every_n_steps=3",
    ]
    cfg = compose("reconstruct", overrides, debug=True)
    run_dir, _ = resolve_run(cfg)
    L.seed_everything(0)
    module = stage_class(cfg.stage).build(cfg)
    trainer = build_trainer(cfg, run_dir)
    trainer.callbacks.append(Dump(out))
    trainer.fit(module, datamodule=build_datamodule(cfg))


class KillAt(L.Callback):
    """SIGKILL this process when step `at` begins (the checkpoint of step `at` is on disk by then)."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        if self.at and trainer.global_step == self.at:
            os.kill(os.getpid(), signal.SIGKILL)


def resume(out: Path, steps: int, kill_at: int, ckpt: str | None) -> None:
    from lightning.pytorch.callbacks import ModelCheckpoint

    from tests.stages.helpers import SeededData, make_stage, trainer

    torch.set_num_threads(1)
    L.seed_everything(0)
    module = make_stage("reconstruct", ema_decay=0.9)
    ckpts = ModelCheckpoint(dirpath=out / "ckpts", save_last=True, save_top_k=0, every_n_train_steps=1)
    t = trainer(out, steps, callbacks=[ckpts, KillAt(kill_at), Dump(out)], enable_checkpointing=True)
    t.fit(module, datamodule=SeededData("reconstruct", n=3, batch=2), ckpt_path=ckpt)


if __name__ == "__main__":
    mode, out = sys.argv[1], Path(sys.argv[2])
    if mode == "ddp":
        ddp(out, Path(sys.argv[3]))
    else:
        resume(out, int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] if len(sys.argv) > 5 else None)
