"""Per-frame mouth / pose / expression weights of every clip in a shard directory (for the audio stages).

For each shard `<split>-NNNNNN.tar` a sidecar `<split>-NNNNNN.tar.coeffs.npz` is written beside it
(`np.savez`): one float32 array T x (mouth+pose[+exp]) per clip id, columns ordered mouth|pose|exp,
and `__dims__` = [mouth_dim, pose_dim, exp_dim or 0]. Frames are resized to the generator's size
exactly as the DataModules do. Writing is atomic per shard; existing sidecars are skipped unless
`overwrite`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edtalk.nn.generator import Generator

SUFFIX = ".coeffs.npz"


def sidecar_path(shard: str | Path) -> Path:
    """`<shard>.coeffs.npz` for a local shard path."""
    return Path(str(shard).removeprefix("file:") + SUFFIX)


@torch.no_grad()
def clip_coefficients(gen: Generator, frames: torch.Tensor, batch_size: int = 64) -> np.ndarray:
    """frames: T x 3 x S x S in [-1, 1] -> T x (mouth+pose[+exp]) float32 (mouth|pose|exp)."""
    device = next(gen.parameters()).device
    rows = []
    for chunk in frames.split(batch_size):
        coef = gen.coefficients(chunk.to(device))
        rows.append(torch.cat([coef[k] for k in ("mouth", "pose", "exp") if k in coef], 1).float().cpu())
    return torch.cat(rows).numpy()


def dims_of(gen: Generator) -> np.ndarray:
    c = gen.cfg
    return np.array([c.mouth_dim, c.pose_dim, c.exp_dim if c.has_expression else 0], dtype=np.int64)


def extract_shard(gen: Generator, shard: str, batch_size: int = 64) -> tuple[Path, int]:
    """Write the sidecar of one local shard. Returns (path, number of clips)."""
    from datamodules.samplers import to_tensor
    from datamodules.shards import Clip, clip_pipeline

    arrays: dict[str, np.ndarray] = {}
    for sample in clip_pipeline([shard], rank=0, world_size=1):
        clip = Clip(sample)
        frames = to_tensor(clip.frames(range(clip.num_frames)), gen.cfg.size)  # -> T x 3 x S x S
        arrays[clip.key] = clip_coefficients(gen, frames, batch_size)
    out = sidecar_path(shard)
    tmp = out.with_name(f".{out.name}.tmp.npz")
    payload: dict[str, Any] = {"__dims__": dims_of(gen), **arrays}
    np.savez(tmp, **payload)
    os.replace(tmp, out)
    return out, len(arrays)


def extract_coefficients(
    gen: Generator,
    root: str | Path,
    splits: Sequence[str] = ("train", "test"),
    batch_size: int = 64,
    overwrite: bool = False,
    progress: Callable[[str], None] | None = None,
) -> list[Path]:
    """Sidecars for every shard of `splits` under the shard directory `root`. Returns the written paths."""
    from datamodules.shards import is_url, shard_urls

    if is_url(root):
        raise ValueError(f"extract-coefficients writes sidecars beside local shards; {root} is a URL")
    gen = gen.eval()
    written = []
    for split in splits:
        for shard in shard_urls(root, split):
            if sidecar_path(shard).is_file() and not overwrite:
                if progress:
                    progress(f"skip {sidecar_path(shard)} (exists; --overwrite to redo)")
                continue
            path, n = extract_shard(gen, shard, batch_size)
            written.append(path)
            if progress:
                progress(f"wrote {path} ({n} clips)")
    return written
