"""FID between generated and ground-truth frames, from float64 sufficient statistics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchmetrics import Metric

from metrics.functional.fid import frechet_distance, moments
from metrics.judges import InceptionFID


class FID(Metric):
    """Fréchet Inception Distance (torch-fidelity's InceptionV3 and formula).

    `update(images, real)` with images N x 3 x H x W in [-1, 1]. States per side: feature sum (D),
    sum of outer products (D x D) and count, all reduced by summation, so batching and DDP do not
    change the result. Which frames to feed is the caller's protocol (EAT: 5 evenly spaced per video,
    see `metrics.functional.fid.evenly_spaced`).
    """

    higher_is_better = False
    is_differentiable = False
    full_state_update = False
    real_sum: torch.Tensor
    real_outer: torch.Tensor
    real_n: torch.Tensor
    fake_sum: torch.Tensor
    fake_outer: torch.Tensor
    fake_n: torch.Tensor

    def __init__(
        self,
        net: InceptionFID | None = None,
        weights: str | Path | None = None,
        feature: str = "2048",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.net = net if net is not None else InceptionFID(weights, feature)
        dim = int(self.net.feature) if self.net.feature.isdigit() else 1008
        for side in ("real", "fake"):
            self.add_state(f"{side}_sum", torch.zeros(dim, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{side}_outer", torch.zeros(dim, dim, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{side}_n", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    @torch.no_grad()
    def features(self, images: torch.Tensor, batch_size: int = 32) -> np.ndarray:
        """The network's features of `images` (N x D, its dtype), in batches of `batch_size`."""
        feats = [self.net(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
        return torch.cat(feats).numpy() if feats else np.zeros((0, len(self.real_sum)), np.float32)

    @torch.no_grad()
    def update(self, images: torch.Tensor, real: bool, batch_size: int = 32) -> None:
        side = "real" if real else "fake"
        for i in range(0, len(images), batch_size):
            feat = self.net(images[i : i + batch_size]).double()
            setattr(self, f"{side}_sum", getattr(self, f"{side}_sum") + feat.sum(0))
            setattr(self, f"{side}_outer", getattr(self, f"{side}_outer") + feat.t() @ feat)
            setattr(self, f"{side}_n", getattr(self, f"{side}_n") + feat.shape[0])

    def compute(self) -> torch.Tensor:
        mu1, s1 = moments(self.real_sum, self.real_outer, self.real_n)
        mu2, s2 = moments(self.fake_sum, self.fake_outer, self.fake_n)
        return torch.tensor(frechet_distance(mu2, s2, mu1, s1), dtype=torch.float64)

    def train(self, mode: bool = True) -> FID:
        return super().train(False)
