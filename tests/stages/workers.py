"""Subprocess entry points for the DDP and kill-and-resume tests (run as scripts, never imported by pytest).

python tests/stages/workers.py ddp OUT SHARDS       two-process gloo DDP through edtalk.train's builders
python tests/stages/workers.py resume OUT STEPS KILL_AT [CKPT]
python tests/stages/workers.py preempt OUT STEPS SIGNAL_AT SIGNAL [CKPT]   SIGTERM/SIGUSR1 at a step
python tests/stages/workers.py cli OUT EDTALK_ARGS...   `edtalk ...` with Dump (and the state at the start)
"""

from __future__ import annotations

import copy
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
        key = next(k for k in ("source", "source_a", "frames") if k in batch)
        self.batches.append(hashlib.sha1(batch[key].numpy().tobytes()).hexdigest())

    def on_train_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        """What a resumed run starts from: its step and optimiser states (after the checkpoint is loaded)."""
        self.start = {
            "start_step": trainer.global_step,
            "start_optim": [copy.deepcopy(opt.state_dict()) for opt in trainer.optimizers],
        }

    def on_train_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        state = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
        torch.save(
            {
                "state": state,
                "batches": self.batches,
                "step": trainer.global_step,
                **getattr(self, "start", {}),
            },
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


class SignalAt(L.Callback):
    """Send this process `sig` when step `at` begins (a cluster's pre-emption notice mid-epoch)."""

    def __init__(self, at: int, sig: str) -> None:
        self.at, self.sig = at, getattr(signal, sig)

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        if self.at and trainer.global_step == self.at:
            os.kill(os.getpid(), self.sig)


def preempt(out: Path, steps: int, at: int, sig: str, ckpt: str | None) -> None:
    from edtalk.train import Preemption
    from tests.stages.helpers import SeededData, make_stage, trainer

    torch.set_num_threads(1)
    L.seed_everything(0)
    module = make_stage("reconstruct", ema_decay=0.9)
    out.mkdir(parents=True, exist_ok=True)
    callbacks = [Preemption(out / "preempt.ckpt"), SignalAt(at, sig), Dump(out)]
    t = trainer(out, steps, callbacks=callbacks)
    t.fit(module, datamodule=SeededData("reconstruct", n=3, batch=2), ckpt_path=ckpt)


def cli(out: Path, argv: list[str]) -> None:
    """`edtalk ARGV` (e.g. under torchrun) with `Dump(out)` added to the fit's callbacks."""
    import edtalk.train
    from edtalk.cli import main

    build = edtalk.train.build_callbacks
    extra: list[L.Callback] = [Dump(out)]
    if os.environ.get("SIGNAL_AT"):  # "STEP:SIGNAL": a pre-emption notice when STEP begins
        step, sig = os.environ["SIGNAL_AT"].split(":")
        extra.append(SignalAt(int(step), sig))
    edtalk.train.build_callbacks = lambda cfg, run_dir: [*build(cfg, run_dir), *extra]  # type: ignore[assignment]
    out.mkdir(parents=True, exist_ok=True)
    sys.exit(main(argv))


if __name__ == "__main__":
    mode, out = sys.argv[1], Path(sys.argv[2])
    if mode == "cli":
        cli(out, sys.argv[3:])
    elif mode == "ddp":
        ddp(out, Path(sys.argv[3]))
    elif mode == "preempt":
        preempt(
            out, int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6] if len(sys.argv) > 6 else None
        )
    else:
        resume(out, int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] if len(sys.argv) > 5 else None)
