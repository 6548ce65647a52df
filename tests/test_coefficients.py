"""The coefficient sidecar format has one owner (`edtalk.coefficients`); the DataModules read it through it."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from datamodules.samplers import CoefficientCache
from edtalk.coefficients import (
    SUFFIX,
    open_sidecar,
    part_rows,
    principal_subspace,
    sidecar_path,
    write_sidecar,
)


def _arrays(dims: tuple[int, int, int], rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        key: rng.standard_normal((t, sum(dims))).astype(np.float32) for key, t in (("b#1", 7), ("a#2", 4))
    }


@pytest.mark.parametrize("dims", [(20, 6, 10), (20, 6, 0)], ids=["full", "lip_pose"])
def test_written_sidecar_reads_back_split_by_dims(tmp_path: Path, dims: tuple[int, int, int]) -> None:
    shard = tmp_path / "train-000000.tar"
    arrays = _arrays(dims, np.random.default_rng(0))
    path = write_sidecar(f"file:{shard}", dims, arrays)
    assert path == sidecar_path(shard) == Path(f"{shard}{SUFFIX}") and path.is_file()
    assert not list(tmp_path.glob(".*tmp*"))  # written atomically: no temporary left behind
    raw = np.load(path)  # the stored layout, read without the owner
    assert raw["__dims__"].tolist() == list(dims) and set(raw.files) == {"__dims__", *arrays}
    sidecar = open_sidecar(shard, "unused")
    assert sidecar.dims == dims and list(sidecar.clip_ids) == ["b#1", "a#2"]
    assert "__dims__" not in sidecar and "a#2" in sidecar and "c#3" not in sidecar
    for key, full in arrays.items():
        parts = sidecar.parts(key)
        assert list(parts) == [n for n, d in zip(("mouth", "pose", "exp"), dims) if d]
        assert np.array_equal(np.concatenate(list(parts.values()), 1), full)
        assert [p.shape[1] for p in parts.values()] == [d for d in dims if d]


def test_the_sampler_cache_reads_through_the_owner(tmp_path: Path) -> None:
    shard = tmp_path / "test-000000.tar"
    arrays = _arrays((20, 6, 10), np.random.default_rng(1))
    write_sidecar(shard, (20, 6, 10), arrays)
    cache = CoefficientCache()
    assert CoefficientCache.path(f"file:{shard}") == sidecar_path(shard)
    got = cache.get(SimpleNamespace(url=f"file:{shard}", key="a#2"))  # the two fields a Clip has
    assert np.array_equal(got["exp"], arrays["a#2"][:, 26:]) and got["mouth"].shape == (4, 20)
    with pytest.raises(KeyError, match="no coefficients for clip z#9"):
        cache.get(SimpleNamespace(url=f"file:{shard}", key="z#9"))
    with pytest.raises(FileNotFoundError, match=r"other-000000\.tar\.coeffs\.npz missing: extract"):
        cache.get(SimpleNamespace(url=str(tmp_path / "other-000000.tar"), key="a#2"))


def test_principal_subspace_keeps_the_fewest_directions_holding_the_fraction(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rotation, _ = np.linalg.qr(rng.normal(size=(20, 20)))
    scales = np.array([10.0, 3.0] + [0.01] * 18)  # variances 100, 9, 1e-4 x 18
    latent = rng.normal(size=(4000, 20)) * scales
    rows = latent @ rotation.T + 5.0  # an offset, as trained weights have
    shards = [tmp_path / f"train-00000{i}.tar" for i in range(2)]
    for shard, part in zip(shards, np.array_split(rows, 2)):
        write_sidecar(shard, (20, 6, 0), {"a#1": np.concatenate([part, np.zeros((len(part), 6))], 1)})
    read = part_rows([str(s) for s in shards], "mouth")
    assert read.shape == (4000, 20) and np.allclose(read, rows, atol=1e-5)  # float32 on disk
    for fraction, k in ((0.5, 1), (0.95, 2), (0.9999, 2), (1.0, 20)):  # 2 hold 109 of 109.0018
        mean, basis = principal_subspace(read, fraction)
        assert basis.shape == (20, k) and np.allclose(basis.T @ basis, np.eye(k), atol=1e-9)
        assert np.allclose(mean, rows.mean(0), atol=1e-5)
    _, two = principal_subspace(read, 0.95)
    assert np.allclose(np.abs(two.T @ rotation[:, :2]), np.eye(2), atol=0.01)  # the two large directions
    with pytest.raises(ValueError, match="fraction=0"):
        principal_subspace(read, 0.0)
    with pytest.raises(FileNotFoundError, match="edtalk extract"):
        part_rows([str(tmp_path / "train-000009.tar")])
