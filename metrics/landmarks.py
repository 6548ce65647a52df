"""M-LMD and F-LMD (EAT protocol): one value per video, averaged over videos."""

from __future__ import annotations

from typing import Any

import torch

from metrics.base import MeanMetric
from metrics.functional.landmarks import lmd


class LMD(MeanMetric):
    """`update(pred_lmk T x 68 x 2, gt_lmk T x 68 x 2)` per video; region "mouth" (M-LMD) / "face" (F-LMD)."""

    higher_is_better = False

    def __init__(self, region: str = "mouth", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if region not in ("mouth", "face"):
            raise ValueError(f"LMD region must be 'mouth' or 'face', got {region!r}")
        self.region = region

    def values(self, preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The video's LMD as a 1-element tensor (one item per video)."""
        return lmd(preds, target, self.region).reshape(1)

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        self._add(self.values(preds, target))
