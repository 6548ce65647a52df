"""Shared base of our metrics: a mean of per-item values kept as (sum, count) sufficient statistics."""

from __future__ import annotations

from typing import Any

import torch
from torchmetrics import Metric


class MeanMetric(Metric):
    """Mean of per-item scores (frames or videos); `last` holds the previous `update`'s item mean.

    States `total` (float64 sum) and `count` reduce by summation across processes, so the DDP result
    equals the single-process result on the union of the data.
    """

    full_state_update = False
    is_differentiable = False
    total: torch.Tensor
    count: torch.Tensor

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.last = float("nan")

    def _add(self, values: torch.Tensor) -> None:
        values = values.detach().double().reshape(-1)
        self.total += values.sum().to(self.total.device)
        self.count += values.numel()
        self.last = float(values.mean()) if values.numel() else float("nan")

    def compute(self) -> torch.Tensor:
        if int(self.count) == 0:
            return torch.tensor(float("nan"), dtype=torch.float64)
        return self.total / self.count

    def train(self, mode: bool = True) -> MeanMetric:
        return super().train(False)
