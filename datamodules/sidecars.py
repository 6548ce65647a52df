"""The coefficient sidecar format: per-frame mouth / pose / expression weights beside each shard.

For each shard `<split>-NNNNNN.tar` a sidecar `<split>-NNNNNN.tar.coeffs.npz` lies beside it (`np.savez`):
one float32 array T x (mouth+pose[+exp]) per clip id, columns ordered mouth|pose|exp, and `__dims__` =
[mouth_dim, pose_dim, exp_dim or 0]. Written by `edtalk.coefficients` (extraction with a generator), read
by the DataModules (`datamodules.samplers.CoefficientCache`); no network is needed to read one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edtalk.io import save_npz_atomic

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
