"""DDP: the two-process (gloo, CPU) reduction of every metric state equals one process on all the data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from metrics.fid import FID
from metrics.image import PSNR, SSIM
from metrics.judges import InceptionFID
from metrics.landmarks import LMD
from metrics.orthogonality import Disentanglement


def _data() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    return {
        "pred": torch.rand(6, 3, 32, 32, generator=g) * 2 - 1,
        "gt": torch.rand(6, 3, 32, 32, generator=g) * 2 - 1,
        "lmk_p": torch.rand(6, 4, 68, 2, generator=g) * 64,
        "lmk_g": torch.rand(6, 4, 68, 2, generator=g) * 64,
        "coeff": torch.randn(6, 10, 5, generator=g),
        "fac": torch.randn(6, 10, 4, generator=g),
        "emo": torch.randint(0, 8, (6, 10), generator=g),
    }


def _score(items: range, inception: Path) -> dict[str, Any]:
    d = _data()
    ms: dict[str, Any] = {
        "psnr": PSNR(),
        "ssim": SSIM(),
        "lmd": LMD("face"),
        "fid": FID(InceptionFID(inception, "64")),
    }
    ms["dis"] = Disentanglement({"mouth": 3, "pose": 2})
    for i in items:
        ms["psnr"].update(d["pred"][i : i + 1], d["gt"][i : i + 1])
        ms["ssim"].update(d["pred"][i : i + 1], d["gt"][i : i + 1])
        ms["lmd"].update(d["lmk_p"][i], d["lmk_g"][i])
        ms["fid"].update(d["gt"][i : i + 1], real=True)
        ms["fid"].update(d["pred"][i : i + 1], real=False)
        fac = dict(zip(("mouth_open", "yaw", "pitch", "roll"), d["fac"][i].unbind(1)), emotion_id=d["emo"][i])
        ms["dis"].update({"mouth": d["coeff"][i, :, :3], "pose": d["coeff"][i, :, 3:]}, fac)
    out = {k: m.compute() for k, m in ms.items()}
    out["dis"] = out["dis"]["score"]
    return {k: float(v) for k, v in out.items()}


def _worker(rank: int, init: str, inception: Path, out: Path) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    try:
        torch.save(_score(range(rank, 6, 2), inception), out / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_process_reduction_equals_single_process(tmp_path: Path, inception_file: Path) -> None:
    init = f"file://{tmp_path / 'rendezvous'}"
    mp.start_processes(_worker, args=(init, inception_file, tmp_path), nprocs=2, start_method="spawn")
    single = _score(range(6), inception_file)
    for rank in (0, 1):
        both = torch.load(tmp_path / f"rank{rank}.pt")
        for key, value in single.items():
            assert both[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
