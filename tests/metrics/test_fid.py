"""FID against torch-fidelity given the same (random) Inception weights; accumulation invariance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch_fidelity

from edtalk.io import from_uint8
from metrics.fid import FID
from metrics.functional.fid import evenly_spaced
from metrics.judges import InceptionFID, JudgeWeightsMissing


class _Images(torch.utils.data.Dataset):
    def __init__(self, images: np.ndarray) -> None:
        self.images = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()  # -> N x 3 x H x W uint8

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


def _sets(n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    real = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    fake = (real.astype(int) * 2 // 5 + rng.integers(0, 40, real.shape)).astype(np.uint8)  # darker, noisier
    return real, fake


def test_fid_matches_torch_fidelity(inception_file: Path) -> None:
    real, fake = _sets()
    ref = torch_fidelity.calculate_metrics(
        input1=_Images(fake),
        input2=_Images(real),
        fid=True,
        feature_layer_fid="64",
        feature_extractor_weights_path=str(inception_file),
        cuda=False,
        batch_size=48,
        verbose=False,
        cache=False,
        save_cpu_ram=True,
    )["frechet_inception_distance"]
    metric = FID(InceptionFID(inception_file, feature="64"))
    for i in range(0, len(real), 24):  # uneven batches: 24 + 16 on both sides
        metric.update(from_uint8(real[i : i + 24]), real=True)
        metric.update(from_uint8(fake[i : i + 24]), real=False)
    ours = float(metric.compute())
    assert ref > 0.01, ref
    assert ours == pytest.approx(ref, rel=1e-4, abs=1e-6)


def test_fid_identical_sets_is_zero(inception_file: Path) -> None:
    real, _ = _sets(12)
    metric = FID(InceptionFID(inception_file, feature="64"))
    metric.update(from_uint8(real), real=True)
    metric.update(from_uint8(real), real=False)
    assert abs(float(metric.compute())) < 1e-3


def test_evenly_spaced_protocol() -> None:
    assert evenly_spaced(101) == [0, 25, 50, 75, 100]
    assert evenly_spaced(3) == [0, 1, 2]


def test_missing_inception_weights_message(tmp_path: Path) -> None:
    with pytest.raises(JudgeWeightsMissing, match="weights-inception-2015-12-05"):
        FID(weights=tmp_path / "missing.pth")
