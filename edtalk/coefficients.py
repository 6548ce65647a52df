"""Per-frame mouth / pose / expression weights of every clip in a shard directory (for the audio stages).

The coefficient sidecar format lives in `datamodules.sidecars` (the DataModules read it; re-exported
here: `sidecar_path`, `write_sidecar`, `open_sidecar` / `Sidecar`). For each shard `<split>-NNNNNN.tar` a
sidecar `<split>-NNNNNN.tar.coeffs.npz` lies beside it (`np.savez`): one float32 array
T x (mouth+pose[+exp]) per clip id, columns ordered mouth|pose|exp, and `__dims__` =
[mouth_dim, pose_dim, exp_dim or 0]. Frames are resized to the generator's size exactly as the
DataModules do. Writing is atomic per shard; existing sidecars are skipped unless `overwrite`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from datamodules.sidecars import DIMS_KEY, PARTS, SUFFIX, Sidecar, open_sidecar, sidecar_path, write_sidecar

if TYPE_CHECKING:
    from edtalk.nn.generator import Generator

# the format (re-exported here): datamodules.sidecars, which the DataModules read without this module
__all__ = ["DIMS_KEY", "PARTS", "SUFFIX", "Sidecar", "open_sidecar", "sidecar_path", "write_sidecar"]


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


def link_shards(src: Path, dst: Path) -> Path:
    """Link every file of the shard directory `src` but its coefficient sidecars into `dst` (made if missing),
    so sidecars extracted there never land beside a shared dataset. Returns `dst`."""
    dst.mkdir(parents=True, exist_ok=True)
    for item in src.iterdir():
        link = dst / item.name
        if item.is_file() and not item.name.endswith(SUFFIX) and not link.exists():
            link.symlink_to(item.resolve())
    return dst


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


def part_rows(urls: Sequence[str], part: str = "mouth") -> np.ndarray:
    """Every frame's `part` weights ("mouth" | "pose" | "exp") in the sidecars of `urls`: N x dim float64."""
    fix = "extract coefficients first (`edtalk extract`)"
    rows = []
    for url in urls:
        side = open_sidecar(url, fix)
        rows += [side.parts(clip)[part] for clip in side.clip_ids]
    if not rows:
        raise ValueError(f"no clips in the sidecars of {len(urls)} shard(s) ({', '.join(urls[:2])} ...)")
    return np.concatenate(rows).astype(np.float64)


def principal_subspace(rows: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(mean D, basis D x k): the k leading principal directions of `rows` (N x D), the fewest that hold
    at least `fraction` of the variance (1.0: all D)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"principal_subspace: fraction={fraction}, expected a number in (0, 1]")
    mean = rows.mean(0)
    variance, vectors = np.linalg.eigh(np.cov(rows - mean, rowvar=False))
    variance, vectors = variance[::-1].clip(min=0), vectors[:, ::-1]  # -> decreasing
    held = np.cumsum(variance) / max(float(variance.sum()), 1e-30)
    k = len(variance) if fraction >= 1 else int(np.searchsorted(held, fraction) + 1)
    return mean, np.ascontiguousarray(vectors[:, : min(k, len(variance))])


@torch.no_grad()
def confine_linear_(
    weight: torch.Tensor, bias: torch.Tensor, mean: torch.Tensor, basis: torch.Tensor, bias_scale: float = 1.0
) -> None:
    """In place: a linear layer's outputs onto mean + span(basis) (D x k, orthonormal columns):
    W <- B B^T W and the effective bias (`bias` x `bias_scale`) b <- mean + B B^T (b - mean)."""
    keep = (basis @ basis.T).to(weight)
    mean = mean.to(weight)
    weight.copy_(keep @ weight)
    bias.copy_((mean + keep @ (bias * bias_scale - mean)) / bias_scale)
