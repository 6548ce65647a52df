"""InceptionV3 for FID: torch-fidelity's port of the TF 2015-12-05 graph (pytorch-fid's weights)."""

from __future__ import annotations

from pathlib import Path

import torch

from metrics.judges.base import FrozenJudge, require_file


class InceptionFID(FrozenJudge):
    """Pool features of the FID InceptionV3; input B x 3 x H x W in [-1, 1], output B x D float32.

    Wraps `torch_fidelity.FeatureExtractorInceptionV3` so the numbers match torch-fidelity/pytorch-fid
    exactly (uint8 quantisation, TF1-compatible bilinear resize to 299). torch-fidelity reads the file.
    """

    def __init__(self, path: str | Path | None, feature: str = "2048") -> None:
        super().__init__()
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        path = require_file(path, "inception_fid")
        self.feature = feature
        self.net = FeatureExtractorInceptionV3(
            "inception-v3-compat", [feature], feature_extractor_weights_path=str(path)
        )
        self.freeze()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)  # the one quantisation FID expects
        (feat,) = self.net(x)
        return feat
