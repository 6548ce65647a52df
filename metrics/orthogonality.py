"""Orthogonality diagnostics of a generator's bases banks and the disentanglement score (built-in data)."""

from __future__ import annotations

from typing import Any

import torch
from torchmetrics import Metric

from edtalk.nn.generator import Generator
from metrics.functional.orthogonality import (
    bank_gram,
    correlation,
    cross_overlap,
    disentanglement_score,
    explained,
    raw_cosines,
    second_moment,
)

FACTORS = ("mouth_open", "yaw", "pitch", "roll")
NUM_EMOTIONS = 8


@torch.no_grad()
def bank_diagnostics(gen: Generator) -> dict[str, Any]:
    """Gram of Q, cosines of the learned (pre-QR) columns, and cross-bank overlaps of both."""
    q = gen.basis().detach().double()
    blocks = gen.banks.split(q)
    raw_w = gen.banks.mouth_pose.detach().double()
    if gen.banks.expression is not None:
        raw_w = torch.cat([raw_w, gen.banks.expression.detach().double()], 1)
    raw = gen.banks.split(raw_w)
    names = list(blocks)
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
    return {
        "gram": bank_gram(q),
        "raw_cosines": raw_cosines(raw_w),
        "orthonormality_error": float((bank_gram(q) - torch.eye(q.shape[1], dtype=q.dtype)).abs().max()),
        "overlap": {f"{a}-{b}": cross_overlap(blocks[a], blocks[b]) for a, b in pairs},
        "raw_overlap": {f"{a}-{b}": cross_overlap(raw[a], raw[b]) for a, b in pairs},
        "sizes": {k: v.shape[1] for k, v in blocks.items()},
    }


class Disentanglement(Metric):
    """Accumulates [coefficients | factors | 1] second moments over frames of a split.

    `update(coeffs {"mouth": N x 20, "pose": N x 6[, "exp": N x 10]}, factors {"mouth_open": N, "yaw": N,
    "pitch": N, "roll": N, "emotion_id": N} or None)`. `compute()` -> {"correlation": K x K of the
    coefficients, "explained": {bank: {factor: adj. R^2}}, "score": float}.
    """

    higher_is_better = True
    is_differentiable = False
    full_state_update = False
    moment: torch.Tensor

    def __init__(self, dims: dict[str, int], with_factors: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dims = dict(dims)
        self.with_factors = with_factors
        width = sum(self.dims.values()) + (len(FACTORS) + NUM_EMOTIONS if with_factors else 0) + 1
        self.add_state("moment", torch.zeros(width, width, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, coeffs: dict[str, torch.Tensor], factors: dict[str, torch.Tensor] | None = None) -> None:
        cols = [coeffs[k].detach().double().reshape(-1, d) for k, d in self.dims.items()]
        if self.with_factors:
            if factors is None:
                raise ValueError("Disentanglement(with_factors=True) needs the ground-truth factors")
            n = cols[0].shape[0]
            cols += [torch.as_tensor(factors[f]).double().reshape(n, 1) for f in FACTORS]
            emo = torch.as_tensor(factors["emotion_id"]).long().reshape(-1).expand(n)
            cols.append(torch.nn.functional.one_hot(emo, NUM_EMOTIONS).double())
        self.moment += second_moment(torch.cat(cols, 1).to(self.moment.device))

    def _index(self) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
        comps, start = {}, 0
        for k, d in self.dims.items():
            comps[k] = list(range(start, start + d))
            start += d
        facs = {f: [start + i] for i, f in enumerate(FACTORS)}
        facs["emotion"] = list(range(start + len(FACTORS), start + len(FACTORS) + NUM_EMOTIONS))
        return comps, facs

    def compute(self) -> dict[str, Any]:
        k = sum(self.dims.values())
        corr = correlation(self.moment)[:k, :k]
        out: dict[str, Any] = {"correlation": corr}
        if self.with_factors:
            comps, facs = self._index()
            table = explained(self.moment, comps, facs)
            out.update(explained=table, score=disentanglement_score(table))
        return out
