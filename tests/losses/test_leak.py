"""`edtalk.losses.linear_leak` (ours; mouth_pose's `model.loss.leak`): the in-batch, ridge-whitened R² of a
nuisance on codes.

What it must do: read a nuisance that the codes carry linearly however small its share (and whatever the
codes' scale), read little from codes independent of it, and, as a loss, take the nuisance out of a trained
encoder's codes while they keep what another term asks of them, so that a probe fitted afterwards on fresh data
cannot read it.
"""

from __future__ import annotations

import pytest
import torch

from edtalk.losses import linear_leak


def held_out_r2(codes: torch.Tensor, target: torch.Tensor) -> float:
    """R² of a ridge read-out of `target` (N,) from standardised codes, fitted on the first half, scored on the rest
    (the learning table's probe, in short)."""
    half = codes.shape[0] // 2
    z = (codes - codes[:half].mean(0)) / codes[:half].std(0)
    x = torch.cat([z, torch.ones(z.shape[0], 1)], 1)
    w = torch.linalg.solve(
        x[:half].t() @ x[:half] + 0.1 * torch.eye(x.shape[1]), x[:half].t() @ target[:half, None]
    )
    pred = (x[half:] @ w).squeeze(1)
    test = target[half:]
    return float(1 - (test - pred).pow(2).sum() / (test - test.mean()).pow(2).sum())


def test_it_reads_a_small_share_at_any_scale_and_little_from_independent_codes() -> None:
    gen = torch.Generator().manual_seed(0)
    other = torch.randn(256, 8, generator=gen)
    nuisance = torch.randn(256, 3, generator=gen)
    # three codes repeat three others up to a 5 % share of the nuisance: their differences read it exactly
    mixed = torch.cat([other, other[:, :3] + 0.05 * nuisance], 1)
    scale = torch.tensor([1e-3, 1.0, 1e3, 1.0, 1.0, 1.0, 1.0, 10.0, 1.0, 1e2, 1.0])
    assert float(linear_leak(mixed, nuisance, ridge=1e-4)) > 0.9
    assert float(linear_leak(mixed * scale, nuisance, ridge=1e-4)) == pytest.approx(
        float(linear_leak(mixed, nuisance, ridge=1e-4)), rel=1e-3
    )
    assert float(linear_leak(other, nuisance, ridge=1e-4)) < 0.1  # chance: about D / B = 0.03
    assert float(linear_leak(other[:1], nuisance[:1])) == 0.0


def test_as_a_loss_it_takes_the_nuisance_out_of_an_encoder() -> None:
    """A small MLP encoder of [signal, nuisance (3), other (16)] into 20 codes, trained to keep the signal in its
    first code, batches of 16 (the mouth stage's drivers at batch 4): with the term a probe on fresh data reads the
    nuisance at R² < 0.35, without it > 0.7 (the encoder has no reason to drop it; 0.85-0.95 / 0.13-0.23 measured
    with this setup over torch seeds 0-7); the signal stays (R² > 0.98 measured, > 0.95 asked)."""
    r2 = {}
    for weight in (0.0, 1.0):
        torch.manual_seed(0)
        encoder = torch.nn.Sequential(torch.nn.Linear(20, 32), torch.nn.Tanh(), torch.nn.Linear(32, 20))
        opt = torch.optim.Adam(encoder.parameters(), lr=1e-2)
        gen = torch.Generator().manual_seed(1)
        for _ in range(600):
            x = torch.randn(16, 20, generator=gen)  # column 0: the signal, 1-3: the nuisance, 4-19: other
            codes = encoder(x)
            loss = (codes[:, 0] - x[:, 0]).pow(2).mean() + weight * linear_leak(codes, x[:, 1:4])
            opt.zero_grad()
            loss.backward()
            opt.step()
        fresh = torch.randn(4000, 20, generator=gen)
        with torch.no_grad():
            codes = encoder(fresh)
        r2[weight] = max(held_out_r2(codes, fresh[:, k]) for k in (1, 2, 3))
        assert held_out_r2(codes, fresh[:, 0]) > 0.95
    assert r2[0.0] > 0.7 and r2[1.0] < 0.35, r2


def test_mismatched_rows_are_refused() -> None:
    with pytest.raises(ValueError, match="rows"):
        linear_leak(torch.zeros(4, 2), torch.zeros(3, 1))
