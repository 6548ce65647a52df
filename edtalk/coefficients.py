"""Per-frame mouth / pose / expression weights of every clip in a shard directory (for the audio stages).

This module owns the coefficient sidecar format; everything else reads and writes it through here
(`sidecar_path`, `write_sidecar`, `open_sidecar` / `Sidecar`). For each shard `<split>-NNNNNN.tar` a
sidecar `<split>-NNNNNN.tar.coeffs.npz` lies beside it (`np.savez`): one float32 array
T x (mouth+pose[+exp]) per clip id, columns ordered mouth|pose|exp, and `__dims__` =
[mouth_dim, pose_dim, exp_dim or 0]. Frames are resized to the generator's size exactly as the
DataModules do. Writing is atomic per shard; existing sidecars are skipped unless `overwrite`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from edtalk.io import save_npz_atomic

if TYPE_CHECKING:  # the format half below needs no network: readers (datamodules) stay light
    from edtalk.nn.generator import Generator

SUFFIX = ".coeffs.npz"
DIMS_KEY = "__dims__"
PARTS = ("mouth", "pose", "exp")  # column blocks, in order


def sidecar_path(shard: str | Path) -> Path:
    """`<shard>.coeffs.npz` for a local shard path or `file:` URL."""
    return Path(str(shard).removeprefix("file:") + SUFFIX)


def write_sidecar(
    shard: str | Path, dims: Sequence[int] | np.ndarray, arrays: Mapping[str, np.ndarray]
) -> Path:
    """Write the sidecar of `shard` atomically: {clip id: T x sum(dims)} and `__dims__` = dims (3 ints)."""
    out = sidecar_path(shard)
    payload: dict[str, Any] = {DIMS_KEY: np.asarray(dims, dtype=np.int64), **arrays}
    return save_npz_atomic(out, payload)


class Sidecar:
    """One sidecar, opened lazily by numpy (`np.load` of an .npz reads an array when it is asked for)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._data = np.load(path)
        mouth, pose, exp = (int(d) for d in self._data[DIMS_KEY])
        self.dims = (mouth, pose, exp)

    @property
    def clip_ids(self) -> Iterable[str]:
        """The clip ids it holds, in stored order."""
        return (k for k in self._data.files if k != DIMS_KEY)

    def __contains__(self, clip_id: str) -> bool:
        return clip_id != DIMS_KEY and clip_id in self._data

    def parts(self, clip_id: str) -> dict[str, np.ndarray]:
        """{"mouth": T x 20, "pose": T x 6[, "exp": T x 10]}: the clip's columns split by `__dims__`."""
        coeffs = self._data[clip_id]
        bounds = np.cumsum([0, *self.dims])
        parts = {name: coeffs[:, bounds[k] : bounds[k + 1]] for k, name in enumerate(PARTS)}
        return {k: v for k, v in parts.items() if v.shape[1] > 0}


def open_sidecar(shard: str | Path, fix: str) -> Sidecar:
    """The sidecar of `shard`, or `FileNotFoundError` naming it and `fix` (how to write it)."""
    path = sidecar_path(shard)
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing: {fix}")
    return Sidecar(path)


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
    """`__dims__` of a generator's sidecars: [mouth_dim, pose_dim, exp_dim or 0]."""
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
    return write_sidecar(shard, dims_of(gen), arrays), len(arrays)


def extract_coefficients(
    gen: Generator,
    root: str | Path,
    splits: Sequence[str] = ("train", "test"),
    batch_size: int = 64,
    overwrite: bool = False,
    progress: Callable[[str], None] | None = None,
) -> list[Path]:
    """Sidecars for every shard of `splits` under the shard directory `root`. Returns the written paths."""
    from datamodules.shards import fill_sidecars

    gen = gen.eval()

    def write(shard: str) -> tuple[Path, str]:
        path, n = extract_shard(gen, shard, batch_size)
        return path, f"{n} clips"

    return fill_sidecars(root, splits, sidecar_path, write, "extract-coefficients", overwrite, progress)


def emotion_vectors(
    root: str | Path, splits: Sequence[str] = ("train",), levels: Sequence[int] | None = None
) -> dict[str, dict[str, Any]]:
    """Per-emotion expression weights of a trained full generator, from its coefficient sidecars.

    The original release ships eight 1 x 10 vectors "extracted" from its own model (SPEC 4.x); these
    are the same thing for any generator: the mean over clips of each clip's mean ELN coefficients,
    per MEAD emotion (taken from MEAD-style clip ids ``<speaker>#<emotion>#level_<k>#<nnn>``; other
    clips are ignored).

    Args:
        root: shard directory whose sidecars `edtalk extract-coefficients` wrote (full generator).
        splits: which splits' clips to average.
        levels: only these MEAD intensity levels (None: all).

    Returns:
        {emotion: {"weights": 1 x 10 float32 array, "clips": count}} for the emotions present.
    """
    from datamodules.shards import shard_urls
    from edtalk.emotions import EMOTIONS

    sums: dict[str, list[np.ndarray]] = {}
    for split in splits:
        for shard in shard_urls(root, split):
            sidecar = open_sidecar(shard, f"run `edtalk extract-coefficients CKPT --shards {root}`")
            if sidecar.dims[2] == 0:
                raise ValueError(
                    f"{sidecar.path} has no expression weights: extract with a full (expression) generator"
                )
            for key in sidecar.clip_ids:
                parts = key.split("#")
                if len(parts) != 4 or parts[1] not in EMOTIONS:
                    continue
                level = parts[2].removeprefix("level_")
                if levels is not None and (not level.isdigit() or int(level) not in levels):
                    continue
                sums.setdefault(parts[1], []).append(sidecar.parts(key)["exp"].mean(0))
    if not sums:
        raise ValueError(f"no MEAD-style emotional clips (<speaker>#<emotion>#level_<k>#<nnn>) in {root}")
    return {
        name: {"weights": np.mean(sums[name], 0, keepdims=True).astype(np.float32), "clips": len(sums[name])}
        for name in EMOTIONS
        if name in sums
    }
