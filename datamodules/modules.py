"""LightningDataModules over shards, one per data shape the stages need.

| DataModule | stages | batch |
|---|---|---|
| `PairDataModule` | reconstruct, finetune | source, target, target_box, pair_fallback |
| `CrossPairDataModule` | mouth_pose | source_a, target_a, source_b, target_b, swap_ab, swap_ba, box_a, box_b |
| `EmotionDataModule` | expression, emotion_classifier | source, target, target_box, emotion, pair_fallback (+ frames, target2) |
| `AudioDataModule` | syncnet, audio2mouth, audio2pose, audio2exp | frames, mel, identity, bbox, face_box, emotion (+ mouth, pose, exp) |

Images in the batches are uint8 B x 3 x S x S (B x T x 3 x S x S for clips): a quarter of the bytes
of float to collate, pass between processes and copy to the GPU. Every stage turns them into float
[-1, 1] after the transfer (`edtalk.io.images_to_float` in `on_after_batch_transfer`); code that reads
a DataModule without a stage calls `images_to_float(batch)` itself. `benchmarks/loader.py` measures
the difference.

Training reads the ``train`` shards resampled (endless, every rank and worker with its own seed) and
cut into epochs of `samples_per_epoch` (default: one sample per training clip) split evenly over
ranks and workers, so DDP ranks always see the same number of batches; an epoch stopped mid-way resumes
where it stopped (`ResumableLoader`). Pair and emotion batches take identity frames from the neutral bank
beside the shards ("pair_fallback": True where a labelled target had to pair within its own clip; see
`datamodules.samplers`). Validation reads the ``test``
shards once, in stored order, with clip-seeded choices: the same set every time. Shards are split
across ranks when there are at least as many shards as ranks (else every rank validates all).
`root=None` uses the built-in dataset (`datamodules.synthetic.ensure_builtin`).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from torch.utils.data import DataLoader

from datamodules.samplers import AudioSampler, CrossPairSampler, EmotionSampler, PairSampler
from datamodules.shards import (
    clip_pipeline,
    dist_info,
    ensure_neutral_bank,
    is_url,
    shard_urls,
    split_clip_count,
)


class ShardDataModule(L.LightningDataModule):
    """Common shard plumbing; subclasses say which sampler builds the samples.

    Args:
        root: shard directory, webdataset URL pattern with ``{split}``, or None (built-in dataset).
        image_size: S, output frames are S x S (stored frames are 256²).
        batch_size: training batch size (validation uses `val_batch_size` or the same).
        num_workers: DataLoader workers per process.
        samples_per_epoch: training samples per epoch over all ranks (default: training clips x
            `samples_per_clip`; required for URL roots).
        samples_per_clip: samples drawn from one clip before moving on.
        shuffle_buffer: clips held in the shuffle buffer (training).
        seed: seed of shard resampling, shuffling and the validation choices.
        val_batch_size: validation batch size.
        bad_shards: a truncated or corrupt shard stops training with an error naming it ("stop"), or is
            skipped from the damage on with a warning naming it ("skip").
        resample: draw training shards with replacement per rank and worker (True), or read every shard
            once per epoch split over ranks and workers (False; `datamodules.shards.EpochShards`: every clip
            exactly once when the clips divide evenly over ranks x workers).
    """

    sampler_class: type[Any] = PairSampler

    def __init__(
        self,
        root: str | Path | None = None,
        image_size: int = 256,
        batch_size: int = 8,
        num_workers: int = 2,
        samples_per_epoch: int | None = None,
        samples_per_clip: int = 1,
        shuffle_buffer: int = 32,
        seed: int = 0,
        val_batch_size: int | None = None,
        bad_shards: Literal["stop", "skip"] = "stop",
        resample: bool = True,
        **sampler_kwargs: Any,
    ) -> None:
        super().__init__()
        self.bad_shards, self.resample = bad_shards, resample
        self.root = root
        self.image_size, self.batch_size, self.num_workers = image_size, batch_size, num_workers
        self.samples_per_epoch, self.samples_per_clip = samples_per_epoch, samples_per_clip
        self.shuffle_buffer, self.seed = shuffle_buffer, seed
        self.val_batch_size = val_batch_size or batch_size
        self.sampler_kwargs = sampler_kwargs

    def prepare_data(self) -> None:
        self.shard_root()

    def setup(self, stage: str | None = None) -> None:
        self.shard_root()

    def shard_root(self) -> str | Path:
        """The shard directory or URL pattern (builds the built-in dataset when `root` is None)."""
        if self.root is None:
            from datamodules.synthetic import ensure_builtin

            self.root = ensure_builtin()
        return self.root

    def sampler(self, deterministic: bool, split: str = "train") -> Any:
        kwargs = dict(self.sampler_kwargs)
        if any(f.name == "neutral_bank" for f in dataclasses.fields(self.sampler_class)):
            kwargs["neutral_bank"] = self.neutral_bank(split, kwargs.get("neutral_bank", "auto"))
        return self.sampler_class(
            image_size=self.image_size,
            samples_per_clip=self.samples_per_clip,
            deterministic=deterministic,
            seed=self.seed,
            **kwargs,
        )

    def neutral_bank(self, split: str, setting: str | None) -> str | None:
        """`data.neutral_bank`: "auto" (default) is the bank beside local shards (`neutral-<split>.npz`,
        written on first use; none for URL roots), a path is that file, null reads neutral frames from the
        stream only (the pairing then depends on how the clips are spread over ranks and workers); a
        "{split}" in the path is replaced by the split (one bank for training, one for validation)."""
        if setting != "auto":
            return None if setting is None else setting.replace("{split}", split)
        path = ensure_neutral_bank(self.shard_root(), split)
        return None if path is None else str(path)

    def epoch_samples(self) -> int:
        if self.samples_per_epoch is not None:
            return self.samples_per_epoch
        clips = split_clip_count(self.shard_root(), "train")
        if clips is None:
            raise ValueError(f"samples_per_epoch is required when root is a URL ({self.root})")
        return clips * self.samples_per_clip

    def samples_per_worker(self, world: int) -> int:
        """Training samples each loader worker of each rank yields per epoch (whole batches, so every rank
        yields the same number of batches)."""
        per_worker = math.ceil(self.epoch_samples() / (world * max(1, self.num_workers)))
        return max(self.batch_size, math.ceil(per_worker / self.batch_size) * self.batch_size)

    def steps_per_epoch(self, world: int) -> int:
        """Training batches (optimiser steps) per epoch on each of `world` ranks."""
        return self.samples_per_worker(world) * max(1, self.num_workers) // self.batch_size

    def train_dataloader(self) -> Any:
        rank, world = dist_info()
        per_worker = self.samples_per_worker(world)
        pipeline = clip_pipeline(
            shard_urls(self.shard_root(), "train"),
            self.sampler(deterministic=False, split="train"),
            resampled=True,
            epoch_shards=not self.resample,
            samples_per_worker=per_worker,
            shuffle=self.shuffle_buffer,
            seed=self.seed,
            rank=rank,
            world_size=world,
            bad_shards=self.bad_shards,
        )
        return ResumableLoader(self._loader(pipeline, self.batch_size), self.seed, self._epoch_progress)

    def _epoch_progress(self) -> tuple[int, int]:
        """(current epoch, batches trained in it) from the Trainer (0, 0 without one)."""
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0, 0
        return trainer.current_epoch, trainer.fit_loop.epoch_loop.batch_progress.current.processed

    def val_dataloader(self) -> DataLoader[Any]:
        rank, world = dist_info()
        urls = shard_urls(self.shard_root(), "test")
        pipeline = clip_pipeline(
            urls,
            self.sampler(deterministic=True, split="test"),
            rank=rank,
            world_size=world,
            split_nodes=len(urls) >= world,
            bad_shards=self.bad_shards,
        )
        return self._loader(pipeline, self.val_batch_size, workers=min(self.num_workers, len(urls)))

    def test_dataloader(self) -> DataLoader[Any]:
        """The test split, as in validation."""
        return self.val_dataloader()

    def _loader(self, pipeline: Any, batch_size: int, workers: int | None = None) -> DataLoader[Any]:
        return make_loader(pipeline, batch_size, self.num_workers if workers is None else workers)


class ResumableLoader:
    """The training DataLoader as a stateful loader whose epochs Lightning can resume mid-way.

    Epoch e's stream depends on (run seed, data seed, e) only: the loader's base seed (hence every worker's)
    comes from a generator seeded with them, and the in-process pipeline stages are told the epoch (`set_epoch`). Lightning
    saves `state_dict()` (epoch, batches trained in it) in every checkpoint and hands it back through
    `load_state_dict` on resume; the first pass then reads and drops the batches that epoch already trained
    on (loader time only), so a run stopped mid-epoch (pre-emption) and resumed trains on what an
    uninterrupted run trains on.
    """

    def __init__(self, loader: DataLoader[Any], seed: int, progress: Any) -> None:
        self.loader, self.seed, self.progress = loader, seed, progress
        self._skip, self._skip_epoch = 0, -1

    def __iter__(self) -> Any:
        epoch, _ = self.progress()
        # the run's seed (`seed_everything`), the data seed and the epoch: nothing drawn from the global RNG
        self.loader.generator = torch.Generator().manual_seed(
            (torch.initial_seed() * 1_000_003 + self.seed * 7_919 + epoch) % 2**63
        )
        for stage in getattr(self.loader.dataset, "pipeline", []):
            if hasattr(stage, "set_epoch"):
                stage.set_epoch(epoch)
        batches = iter(self.loader)
        skip = self._skip if epoch == self._skip_epoch else 0
        self._skip = 0
        for _ in range(skip):
            next(batches, None)
        return batches

    def state_dict(self) -> dict[str, int]:
        epoch, done = self.progress()
        return {"epoch": epoch, "batches": done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._skip, self._skip_epoch = int(state.get("batches", 0)), int(state.get("epoch", -1))


def make_loader(dataset: Any, batch_size: int, workers: int, shuffle: bool = False) -> DataLoader[Any]:
    """The DataLoader every DataModule uses (uint8 batches pinned when a GPU is there)."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=workers,
        persistent_workers=False,
        pin_memory=torch.cuda.is_available(),
        prefetch_factor=2 if workers > 0 else None,
    )


class PairDataModule(ShardDataModule):
    """Same-identity frame pairs {"source", "target"} (reconstruct, finetune)."""

    sampler_class = PairSampler


class CrossPairDataModule(ShardDataModule):
    """Cross-identity pairs with landmark mouth swaps (mouth_pose); extra kwargs: pool_size, margin."""

    sampler_class = CrossPairSampler


class EmotionDataModule(ShardDataModule):
    """Emotional frame pairs with labels (expression, emotion_classifier); kwarg clip_frames=T adds "frames",
    second_target=True adds "target2" (another frame of the target's clip)."""

    sampler_class = EmotionSampler


class AudioDataModule(ShardDataModule):
    """Consecutive frames + aligned mel windows (+ coefficients) for the audio stages.

    Extra kwargs: clip_frames (T, default 5), coefficients (True/False, default: True when every
    local shard has a ``.coeffs.npz`` sidecar).
    """

    sampler_class = AudioSampler

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        if self.sampler_kwargs.get("coefficients") is None:
            self.sampler_kwargs["coefficients"] = self._have_sidecars()

    def _have_sidecars(self) -> bool:
        root = self.shard_root()
        if is_url(root):
            return False
        from datamodules.samplers import CoefficientCache

        urls = shard_urls(root, "train") + shard_urls(root, "test")
        return all(CoefficientCache.path(u).is_file() for u in urls)
