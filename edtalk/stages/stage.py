"""`EDTalkStage`: what every training stage shares, whichever way it optimises.

`GANStage` (`edtalk.stages.base`, manual optimisation: one G and one D update per step) and
`SupervisedStage` (`edtalk.stages.supervised`, automatic optimisation of one network) sit on top of it.
The base holds, written once:

* the stage interface `edtalk fit` uses: `Config` (the `model:` dataclass), `build(cfg, resume)`,
  `prepare_debug(cfg, debug_export)` (what `--debug` needs first; run by the training entry point);
* the data contract: uint8 images from the DataModules -> float [-1, 1] on the device
  (`on_after_batch_transfer`);
* sample grids (source | ... | output) as PNG under `<run>/samples/` and to image-capable loggers;
* the checkpoint payload `checkpoint["edtalk"]` = {version, stage, <stage's own entries>, resolved
  run config, RNG states}, and the RNG restore on resume;
* the frozen-parameter guard: parameters a `trainable:` glob leaves out are frozen and their exact
  bytes fingerprinted when training starts and verified unchanged when it ends;
* small numerics both families use: PSNR of [-1, 1] images, Adam betas, fixed judges kept out of
  checkpoints (`keep_out_of_checkpoints`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import numpy as np
import torch
from torch import nn

from edtalk.io import images_to_float
from edtalk.stages.params import apply_trainable, fingerprint

# How a stage's `prepare_debug` gets another experiment's `--debug` export: (experiment, cfg) -> the
# exported network file, trained first if missing. The training entry point passes
# `edtalk.train.debug_export`; stages never import `edtalk.train`.
DebugExport = Callable[[str, Any], Path]


class EDTalkStage(L.LightningModule):
    """The shared base of every training stage (see the module docstring).

    Subclasses set `Config`, `stage_name` and `cfg` (with `samples_num` and `samples_every_n_steps`),
    and add their own entries to the checkpoint payload with `checkpoint_payload`.
    """

    Config: ClassVar[type[Any]]
    stage_name: ClassVar[str] = "stage"
    cfg: Any

    def __init__(self, run_config: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.run_config = run_config or {}
        self.sample_dir: Path | None = None  # set by `edtalk fit` to `<run>/samples`
        self.frozen_names: list[str] = []
        self._guarded: nn.Module | None = None
        self._frozen_prints: dict[str, str] = {}
        self._frozen_what = "parameters"

    # -- the interface `edtalk fit` uses -------------------------------------------------------------
    @classmethod
    def build(cls, cfg: Any, resume: bool = False) -> EDTalkStage:
        """Instantiate from a composed run config, injecting the networks it makes (each stage)."""
        raise NotImplementedError

    @classmethod
    def prepare_debug(cls, cfg: Any, debug_export: DebugExport) -> None:
        """Make what a `--debug` run of this stage needs beyond `requires` (default: nothing).

        Called by the training entry point (`edtalk.train.debug_dependency`) after `init_from` is set
        to the `requires` stage's debug checkpoint. It may change `cfg` (e.g. `data.root`, a judge
        file); `debug_export(experiment, cfg)` gives another experiment's debug export.
        """

    # -- data contract ---------------------------------------------------------------------------------
    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        # uint8 images from the DataModules -> float [-1, 1], on the device
        return images_to_float(batch) if isinstance(batch, dict) else batch

    # -- samples -----------------------------------------------------------------------------------
    def sample_due(self) -> bool:
        """True on the steps `samples_every_n_steps` asks for (rank 0 only)."""
        every = self.cfg.samples_every_n_steps
        return every > 0 and self.global_step % every == 0 and self.trainer.is_global_zero

    @torch.no_grad()
    def log_samples(self, columns: list[torch.Tensor], tag: str) -> Path | None:
        """Grid, one row per sample and one column per image kind: PNG in the run dir + image loggers.

        Args:
            columns: image kinds, each N x 3 x H x W in [-1, 1] (e.g. [source, driver, output]).
            tag: "train" or "val" (file name `<tag>_step<step>.png`, logger key `samples/<tag>`).
        """
        from PIL import Image
        from torchvision.utils import make_grid

        from edtalk.io import to_uint8

        n = min(self.cfg.samples_num, columns[0].shape[0])
        rows = torch.stack([c[:n].detach().float().cpu() for c in columns], 1).flatten(0, 1)  # -> (N*K)x3xHxW
        grid = to_uint8(make_grid(rows, nrow=len(columns), padding=2, pad_value=-1)).numpy()  # -> H'xW'x3
        path = None
        if self.sample_dir is not None:
            path = self.sample_dir / f"{tag}_step{self.global_step:07d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(grid).save(path)
        for logger in self.loggers:
            if hasattr(logger, "log_image"):
                logger.log_image(key=f"samples/{tag}", images=[grid], step=self.global_step)
        return path

    # -- checkpoints -------------------------------------------------------------------------------
    def checkpoint_payload(self) -> dict[str, Any]:
        """The stage's own entries of `checkpoint["edtalk"]` (e.g. the generator config)."""
        return {}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["edtalk"] = {
            "version": 1,
            "stage": self.stage_name,
            **self.checkpoint_payload(),
            "config": self.run_config,
            "rng": rng_state(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        rng = checkpoint.get("edtalk", {}).get("rng")
        if rng is not None:
            set_rng_state(rng)

    # -- frozen-parameter guard ----------------------------------------------------------------------
    def freeze_except(
        self, module: nn.Module, globs: Sequence[str], verify: bool = True, what: str = "parameters"
    ) -> list[str]:
        """Train only `module`'s parameters matching `globs`; freeze the rest and (with `verify`) check
        their bytes are unchanged when training ends. Returns the trainable names.

        Args:
            what: how the error names the guarded parameters ("generator parameters").
        """
        trainable, self.frozen_names = apply_trainable(module, globs)
        self._guarded = module if verify else None
        self._frozen_what = what
        return trainable

    def on_train_start(self) -> None:
        if self._guarded is not None:
            self._frozen_prints = fingerprint(self._guarded, self.frozen_names)

    def on_train_end(self) -> None:
        self.verify_frozen()

    def before_final_checkpoint(self) -> None:
        """Called once training has ended, just before the final last.ckpt is written (`edtalk.train.FinalCheckpoint`;
        not after a pre-emption stop): a stage's last change to its weights (mouth_pose's `model.mouth_subspace`)."""

    def verify_frozen(self) -> None:
        """Raise if any frozen parameter changed (bit-exact) since training started."""
        if not self._frozen_prints or self._guarded is None:
            return
        now = fingerprint(self._guarded, self._frozen_prints)
        changed = [k for k, v in now.items() if v != self._frozen_prints[k]]
        if changed:
            raise RuntimeError(
                f"frozen {self._frozen_what} changed during training: {changed[:5]} ({len(changed)})"
            )


# -- numerics both families use ------------------------------------------------------------------------
def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean PSNR (dB) over the images of `... x 3 x H x W` tensors in [-1, 1] (`pred` clamped first).

    Peak-to-peak range 2 -> peak^2 = 4; the MSE of an exact match is floored at 1e-10.
    """
    mse = (pred.clamp(-1, 1) - target).pow(2).flatten(-3).mean(-1)  # -> ... (one value per image)
    return (10 * torch.log10(4.0 / mse.clamp_min(1e-10))).mean()


def adam_betas(betas: Sequence[float], name: str = "model.optim.betas") -> tuple[float, float]:
    """Adam's (beta1, beta2) from a config list, refusing any other length."""
    if len(betas) != 2:
        raise ValueError(f"{name} needs two values (Adam betas), got {list(betas)}")
    return float(betas[0]), float(betas[1])


SCHEDULES = ("constant", "cosine")  # `model.optim.schedule` of every stage


def check_schedule(name: str) -> None:
    """`model.optim.schedule` must be one of SCHEDULES (for the optimiser configs' `__post_init__`)."""
    if name not in SCHEDULES:
        raise ValueError(f"model.optim.schedule={name!r}: expected one of {SCHEDULES}")


def cosine_factor(step: int, total: int) -> float:
    """The cosine schedule's multiplier of the base rate after `step` of `total` optimiser steps: 1 -> 0."""
    return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))


def step_schedule(
    optimizer: torch.optim.Optimizer, schedule: str, module: L.LightningModule
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The rate schedule of `optimizer` (None for "constant"): with "cosine" every group's rate is its base rate
    x `cosine_factor(trainer.global_step, trainer.max_steps)`, read from the trainer's step count (so a resumed
    run stays on the curve). Step it once per training batch."""
    check_schedule(schedule)
    if schedule == "constant":
        return None
    total = int(module.trainer.max_steps)
    if total <= 0:
        raise ValueError(
            f"model.optim.schedule={schedule} anneals over trainer.max_steps, which is {total}: set "
            "trainer.max_steps (or model.optim.schedule=constant)"
        )
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda _: cosine_factor(module.trainer.global_step, total)
    )


def keep_out_of_checkpoints(module: nn.Module) -> None:
    """Turn a fixed module's parameters and buffers into non-persistent buffers: not saved, not
    optimised, not synced. For judges rebuilt from their own files on every start (VGG, the SyncNet
    expert)."""
    for m in module.modules():
        for name, p in list(m._parameters.items()):
            if p is not None:
                del m._parameters[name]
                m.register_buffer(name, p.detach().requires_grad_(False), persistent=False)
        m._non_persistent_buffers_set.update(m._buffers)


# -- RNG state in checkpoints ------------------------------------------------------------------------
def rng_state() -> dict[str, Any]:
    """Global RNG states (torch, CUDA, numpy, python), in types `torch.load(weights_only=True)` accepts."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    numpy_state = (
        kind,
        torch.from_numpy(np.array(keys, dtype=np.uint32)),
        int(pos),
        int(has_gauss),
        float(gauss),
    )
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": numpy_state,
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` saved (CUDA only when the device count matches)."""
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy(), pos, has_gauss, gauss))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
