"""Our emotion classifier as the `emotion_acc` judge (the network is `edtalk.nn.emotion`: a stage trains it)."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from metrics.judges.base import require_file


def load_emotion_classifier(path: str | Path | None) -> nn.Module:
    """Our `emotion_classifier` export or its stage's Lightning checkpoint (`edtalk fit emotion_classifier`)."""
    from edtalk import weights

    return weights.load(require_file(path, "emotion_classifier"), "emotion_classifier").requires_grad_(False)
