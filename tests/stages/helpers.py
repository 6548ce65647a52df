"""Tiny stages and fixed batches for the stage tests (real modules, real Lightning Trainer)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from edtalk.config import GeneratorConfig
from edtalk.losses import VGGPyramidLoss
from edtalk.nn.discriminator import Discriminator
from edtalk.nn.generator import Generator
from edtalk.stages import stage_class
from edtalk.stages.base import GANStage
from tests.learn import seed_torch

SIZE = 64
KEYS = {
    "reconstruct": ("source", "target"),
    "finetune": ("source", "target"),
    "expression": ("source", "target"),
    "mouth_pose": ("source_a", "target_a", "source_b", "target_b", "swap_ab", "swap_ba"),
}
VARIANT = {"reconstruct": "lip_pose", "finetune": "lip_pose", "mouth_pose": "lip_pose", "expression": "full"}


def smooth_images(n: int, seed: int, size: int = SIZE) -> torch.Tensor:
    """n x 3 x size x size smooth random images in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 8, 8, generator=g) * 2 - 1
    return F.interpolate(low, size=size, mode="bicubic", align_corners=False).clamp(-1, 1)


def make_batch(stage: str, batch: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    keys = KEYS[stage]
    imgs = smooth_images(batch * len(keys), seed).chunk(len(keys))
    out = dict(zip(keys, imgs))
    if stage == "expression":
        out["emotion"] = torch.arange(batch) % 8
    return out


def make_stage(stage: str, with_d: bool = True, **cfg_overrides: Any) -> GANStage:
    cls = stage_class(stage)
    cfg = cls.Config()
    cfg.perceptual.init, cfg.perceptual.width = "random", 0.125
    cfg.samples_every_n_steps = 0
    for k, v in cfg_overrides.items():
        obj = cfg
        *path, last = k.split(".")
        for p in path:
            obj = getattr(obj, p)
        setattr(obj, last, v)
    seed_torch()
    gen = Generator(GeneratorConfig.tiny(VARIANT[stage]))
    disc = Discriminator(SIZE, 0.125, 16) if with_d else None
    perceptual = VGGPyramidLoss(init="random", width=0.125) if cfg.loss.vgg > 0 else None
    return cls(gen, disc, perceptual, cfg)


class _Repeat(Dataset):  # type: ignore[type-arg]
    def __init__(self, batch: dict[str, torch.Tensor], n: int) -> None:
        self.batch, self.n = batch, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.batch


class FixedBatchData(L.LightningDataModule):
    """The same batch every step (for overfitting), `length` steps per epoch."""

    def __init__(self, batch: dict[str, torch.Tensor], length: int = 1000) -> None:
        super().__init__()
        self.batch, self.length = batch, length

    def train_dataloader(self) -> DataLoader:  # type: ignore[type-arg]
        return DataLoader(_Repeat(self.batch, self.length), batch_size=None)

    def val_dataloader(self) -> DataLoader:  # type: ignore[type-arg]
        return DataLoader(_Repeat(self.batch, 1), batch_size=None)


class _Seeded(Dataset):  # type: ignore[type-arg]
    """Distinct deterministic batches per index (for resume / DDP tests)."""

    def __init__(self, stage: str, n: int, batch: int) -> None:
        self.stage, self.n, self.b = stage, n, batch

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return make_batch(self.stage, self.b, seed=1000 + i)


class SeededData(L.LightningDataModule):
    def __init__(self, stage: str, n: int = 8, batch: int = 2, shuffle: bool = True) -> None:
        super().__init__()
        self.stage, self.n, self.b, self.shuffle = stage, n, batch, shuffle

    def train_dataloader(self) -> DataLoader:  # type: ignore[type-arg]
        return DataLoader(_Seeded(self.stage, self.n, self.b), batch_size=None, shuffle=self.shuffle)


class LossRecorder(L.Callback):
    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self.rows.append({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/")})


def trainer(root: Path, steps: int, **kwargs: Any) -> L.Trainer:
    args: dict[str, Any] = {
        "default_root_dir": str(root),
        "max_steps": steps,
        "accelerator": "cpu",
        "devices": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
        "limit_val_batches": 0,
    }
    args.update(kwargs)
    return L.Trainer(**args)
