"""Loader throughput of the mouth_pose cross-pair batches: webdataset shards vs an upstream-style LMDB.

Both sides produce the same batch (`datamodules.samplers.CrossPairSampler` keys, 6 images per sample
with two landmark mouth swaps), use the same JPEG bytes, the same decoder (`decode_jpeg`), the same
swap and resize code, and the same number of DataLoader workers. The baseline reads the frames the way
upstream's ``prepare_lmdb.py`` stores them (``<clip>-<frame:07d>`` keys in one LMDB, random access per
item, a map-style dataset shuffled by the DataLoader) and, like upstream's datasets, loads each clip's
landmarks from a per-clip ``.npy`` file on every item.

    python benchmarks/loader.py [--root SHARDS] [--image-size 256] [--batch-size 32] [--workers 2] [--json]

The last line with --json is {"shards_sps", "lmdb_sps", "ratio", ...}. Default data: the built-in set.
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


def throughput(loader: DataLoader[Any], batches: int) -> float:
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
        count += len(batch["swap_ab"])
    return count / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=None, help="shard directory (default: built-in dataset)")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument(
        "--samples-per-clip", type=int, default=1, help="shard side: samples drawn per clip read"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON line last")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from datamodules.synthetic import ensure_builtin

    root = args.root or ensure_builtin()
    epoch = args.batch_size * (args.batches + 1) * max(1, args.workers)
    dm = CrossPairDataModule(
        root,
        args.image_size,
        args.batch_size,
        args.workers,
        samples_per_epoch=epoch,
        samples_per_clip=args.samples_per_clip,
    )
    dm.setup("fit")
    shards_sps = throughput(dm.train_dataloader(), args.batches)
    with tempfile.TemporaryDirectory() as tmp:
        keys = build_lmdb(Path(root), Path(tmp))
        dataset = LmdbCrossPairs(Path(tmp), keys, args.image_size, length=epoch)
        loader = DataLoader(dataset, args.batch_size, shuffle=True, num_workers=args.workers)
        lmdb_sps = throughput(loader, args.batches)
    ratio = shards_sps / lmdb_sps
    per_worker = shards_sps / max(1, args.workers)
    print(
        f"cross-pair batches {args.batch_size} x 6 x 3 x {args.image_size}^2, {args.workers} workers, root {root}"
    )
    print(f"shards {shards_sps:.1f} samples/s, LMDB {lmdb_sps:.1f} samples/s, ratio {ratio:.2f}")
    print(
        f"per worker {per_worker:.1f} samples/s = one batch of {args.batch_size} every {args.batch_size / per_worker:.2f} s"
    )
    if args.json:
        result = {
            "shards_sps": round(shards_sps, 2),
            "lmdb_sps": round(lmdb_sps, 2),
            "ratio": round(ratio, 3),
        }
        result.update(per_worker_sps=round(per_worker, 2), image_size=args.image_size, workers=args.workers)
        result.update(samples_per_clip=args.samples_per_clip)
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
