"""Loader throughput of the mouth_pose cross-pair batches: webdataset shards vs an upstream-style LMDB.

Both sides produce the same batch (`datamodules.samplers.CrossPairSampler` keys, 6 images per sample
with two landmark mouth swaps), from the same JPEG bytes, with the same decoder (`decode_jpeg`), the
same swap and resize code and the same number of DataLoader workers; each side delivers its batches
to the training process in the form its training step consumes.

* ``shards`` (ours, the headline): `CrossPairDataModule` — one tar read per clip, resampled shards,
  uint8 images collated in the workers; the stage turns them into float on the device after the
  transfer (`edtalk.io.images_to_float` in `on_after_batch_transfer`), which on a GPU is a few
  microseconds and is not counted here.
* ``lmdb`` (baseline, upstream's way): frames under ``<clip>-<frame:07d>`` keys of one LMDB as
  ``prepare_lmdb.py`` stores them, random access per item, a map-style dataset shuffled by the
  DataLoader, each clip's landmarks loaded from a per-clip ``.npy`` file on every item, and the
  images turned into float [-1, 1] tensors in the worker (upstream's ToTensor + Normalize).
* ``shards_cpu_float``: ours with the float conversion done by the training process on the CPU
  (CPU-only training, where the "device" is this CPU) and counted.
* ``shards_float``: ours with the baseline's float conversion in the worker: the storage format alone.

Rounds alternate the order (the first loader of a process pays for fresh shared memory), and each
side's median is reported.

    python benchmarks/loader.py [--root SHARDS] [--image-size 256] [--batch-size 32] [--workers 2] [--json]

The last line with --json is {"shards_sps", "lmdb_sps", "ratio", "ratio_cpu_float", "ratio_storage_only",
...}. Default data: the built-in set.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datamodules.modules import CrossPairDataModule
from datamodules.mouth_swap import swap_mouth
from datamodules.samplers import to_tensor
from datamodules.shards import decode_jpeg, iter_clips
from edtalk.io import images_to_float

NAMES = ("source_a", "target_a", "source_b", "target_b", "swap_ab", "swap_ba")


def build_lmdb(root: Path, folder: Path) -> list[str]:
    """Copy the train frames (same JPEG bytes) into an upstream-layout LMDB + per-clip landmark files."""
    import lmdb

    env = lmdb.open(str(folder / "frames.lmdb"), map_size=1 << 34)
    keys = []
    with env.begin(write=True) as txn:
        for clip in iter_clips(root, "train"):
            for i in range(clip.num_frames):
                txn.put(f"{clip.key}-{i:07d}".encode(), clip.jpeg(i))
            txn.put(f"{clip.key}-length".encode(), str(clip.num_frames).encode())
            np.save(folder / f"{clip.key}.npy", clip.lmk)
            keys.append(clip.key)
        txn.put(b"length", str(len(keys)).encode())
    env.close()
    return keys


class LmdbCrossPairs(Dataset[dict[str, torch.Tensor]]):
    """Upstream-style map dataset: item i = clip i with a random partner clip, frames from LMDB."""

    def __init__(self, folder: Path, keys: list[str], image_size: int, length: int) -> None:
        self.folder, self.keys, self.image_size, self.length = folder, keys, image_size, length
        self.env: Any = None

    def __len__(self) -> int:
        return self.length

    def _frames(
        self, txn: Any, key: str, rng: np.random.Generator
    ) -> tuple[list[np.ndarray], np.ndarray, int]:
        n = int(txn.get(f"{key}-length".encode()))
        i, t = rng.choice(n, 2, replace=False)
        frames = [decode_jpeg(txn.get(f"{key}-{int(k):07d}".encode())) for k in (i, t)]
        return frames, np.load(self.folder / f"{key}.npy")[t], int(t)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        import lmdb

        if self.env is None:  # opened per worker, as upstream
            self.env = lmdb.open(str(self.folder / "frames.lmdb"), readonly=True, lock=False, readahead=False)
        rng = np.random.default_rng([torch.initial_seed() % 2**63, index])
        key_a = self.keys[index % len(self.keys)]
        key_b = self.keys[int(rng.integers(len(self.keys)))]
        with self.env.begin(write=False) as txn:
            (src_a, tgt_a), lmk_a, _ = self._frames(txn, key_a, rng)
            (src_b, tgt_b), lmk_b, _ = self._frames(txn, key_b, rng)
        swap_ab, _ = swap_mouth(tgt_a, lmk_a, tgt_b, lmk_b)
        swap_ba, _ = swap_mouth(tgt_b, lmk_b, tgt_a, lmk_a)
        images = to_tensor(np.stack([src_a, tgt_a, src_b, tgt_b, swap_ab, swap_ba]), self.image_size)
        return dict(zip(NAMES, images.unbind(0)))


class FloatInWorker:
    """A sampler wrapper that converts the images to float inside the worker (the baseline's output)."""

    def __init__(self, sampler: Any) -> None:
        self.sampler = sampler

    def __call__(self, src: Any) -> Any:
        for sample in self.sampler(src):
            yield images_to_float(sample)


class FloatCrossPairs(CrossPairDataModule):
    def sampler(self, deterministic: bool) -> Any:
        return FloatInWorker(super().sampler(deterministic))


def throughput(loader: DataLoader[Any], batches: int, to_float: bool = False) -> float:
    """Samples per second over `batches` batches after the first (worker start-up excluded)."""
    it = iter(loader)
    next(it)
    count, start = 0, time.perf_counter()
    for _ in range(batches):
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            batch = next(it)
        if to_float:
            batch = images_to_float(batch)
        count += len(batch["swap_ab"])
    return count / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=None, help="shard directory (default: built-in dataset)")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds; medians are reported")
    parser.add_argument(
        "--samples-per-clip", type=int, default=1, help="shard side: samples drawn per clip read"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON line last")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from datamodules.synthetic import ensure_builtin

    root = args.root or ensure_builtin()
    epoch = args.batch_size * (args.batches + 1) * max(1, args.workers)

    def shards(cls: type[CrossPairDataModule], to_float: bool = False) -> float:
        dm = cls(root, args.image_size, args.batch_size, args.workers, samples_per_epoch=epoch,
                 samples_per_clip=args.samples_per_clip)  # fmt: skip
        dm.setup("fit")
        return throughput(dm.train_dataloader(), args.batches, to_float)

    runs: dict[str, Any] = {"shards": lambda: shards(CrossPairDataModule)}
    with tempfile.TemporaryDirectory() as tmp:
        keys = build_lmdb(Path(root), Path(tmp))

        def lmdb() -> float:
            dataset = LmdbCrossPairs(Path(tmp), keys, args.image_size, length=epoch)
            loader = DataLoader(dataset, args.batch_size, shuffle=True, num_workers=args.workers)
            return throughput(loader, args.batches)

        runs.update(lmdb=lmdb, shards_cpu_float=lambda: shards(CrossPairDataModule, to_float=True))
        runs.update(shards_float=lambda: shards(FloatCrossPairs))
        results: dict[str, list[float]] = {name: [] for name in runs}
        for r in range(args.rounds):
            for name in list(runs) if r % 2 == 0 else list(reversed(runs)):
                results[name].append(runs[name]())
    sps = {name: float(np.median(values)) for name, values in results.items()}
    shards_sps, lmdb_sps = sps["shards"], sps["lmdb"]
    ratio = shards_sps / lmdb_sps
    per_worker = shards_sps / max(1, args.workers)
    print(
        f"cross-pair batches {args.batch_size} x 6 x 3 x {args.image_size}^2, {args.workers} workers, "
        f"{args.rounds} rounds, root {root}"
    )
    for name, values in results.items():
        print(f"  {name:16s} " + " ".join(f"{v:6.1f}" for v in values) + " samples/s")
    print(f"shards {shards_sps:.1f} samples/s, LMDB {lmdb_sps:.1f} samples/s, ratio {ratio:.2f}")
    cpu_ratio, storage_ratio = sps["shards_cpu_float"] / lmdb_sps, sps["shards_float"] / lmdb_sps
    print(
        f"float conversion on this CPU counted: ratio {cpu_ratio:.2f}; storage alone: ratio {storage_ratio:.2f}"
    )
    print(
        f"per worker {per_worker:.1f} samples/s = one batch of {args.batch_size} every "
        f"{args.batch_size / per_worker:.2f} s"
    )
    if args.json:
        result = {
            "shards_sps": round(shards_sps, 2),
            "lmdb_sps": round(lmdb_sps, 2),
            "ratio": round(ratio, 3),
            "ratio_cpu_float": round(cpu_ratio, 3),
            "ratio_storage_only": round(storage_ratio, 3),
            "shards_cpu_float_sps": round(sps["shards_cpu_float"], 2),
            "shards_float_sps": round(sps["shards_float"], 2),
        }
        result.update(per_worker_sps=round(per_worker, 2), image_size=args.image_size, workers=args.workers)
        result.update(samples_per_clip=args.samples_per_clip, rounds=args.rounds)
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
