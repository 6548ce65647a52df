"""Bank diagnostics of a generator and the disentanglement score on synthetic coefficients with known factors."""

from __future__ import annotations

import pytest
import torch

from edtalk.config import GeneratorConfig
from edtalk.nn.generator import Generator
from metrics.orthogonality import Disentanglement, bank_diagnostics


def test_bank_diagnostics_of_tiny_generator() -> None:
    gen = Generator(GeneratorConfig.tiny("full"))
    diag = bank_diagnostics(gen)
    k = gen.cfg.motion_dim
    assert diag["gram"].shape == (k, k)
    assert diag["orthonormality_error"] < 1e-6
    assert all(v < 1e-6 for v in diag["overlap"].values())  # QR: orthogonal subspaces
    assert all(0 < v < 1 for v in diag["raw_overlap"].values())  # random learned columns overlap


def _factors(n: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    return {
        "mouth_open": torch.rand(n, generator=g),
        "yaw": torch.randn(n, generator=g),
        "pitch": torch.randn(n, generator=g),
        "roll": torch.randn(n, generator=g),
        "emotion_id": torch.randint(0, 8, (n,), generator=g),
    }


@pytest.mark.parametrize("swap", [False, True])
def test_disentanglement_score(swap: bool) -> None:
    g = torch.Generator().manual_seed(0)
    dims = {"mouth": 4, "pose": 3, "exp": 8}
    metric = Disentanglement(dims)
    to_mouth, to_pose = torch.randn(1, 4, generator=g), torch.randn(3, 3, generator=g)
    for _ in range(3):  # accumulated over batches
        f = _factors(200, g)
        mouth = f["mouth_open"][:, None] * to_mouth + 0.01 * torch.randn(200, 4, generator=g)
        pose = torch.stack([f["yaw"], f["pitch"], f["roll"]], 1) @ to_pose
        exp = torch.nn.functional.one_hot(f["emotion_id"], 8).float() + 0.01 * torch.randn(
            200, 8, generator=g
        )
        coeffs = {"mouth": mouth, "pose": pose, "exp": exp}
        if swap:  # the mouth bank carries pose instead
            coeffs["mouth"] = torch.cat([pose, torch.zeros(200, 1)], 1)
            coeffs["pose"] = mouth[:, :3]
        metric.update(coeffs, f)
    out = metric.compute()
    assert out["correlation"].shape == (15, 15)
    if swap:
        assert out["score"] < 0
    else:
        assert out["score"] > 0.95
        assert (
            out["explained"]["mouth"]["mouth_open"] > 0.99 and out["explained"]["pose"]["mouth_open"] < 0.05
        )
