"""Stage `emotion_classifier`: the judge behind the emotion-accuracy metric (Emotion-FAN protocol).

A video-level classifier (`edtalk.nn.emotion.EmotionClassifier`: frame encoder + self/relation
attention pooling) over the 8 MEAD emotions, trained with cross-entropy on clips of T frames
(EmotionDataModule with `clip_frames`). Validation logs `val/accuracy` (top-1 per clip).

The file the evaluation loads is the export `<run>/checkpoints/emotion_classifier.pt` (our checkpoint
format, kind `emotion_classifier`): copy it to `<weights dir>/emotion_classifier.ckpt`, which
`metrics.runner.load_emotion_classifier` reads; or load it with
`edtalk.stages.supervised.load_network(path, "emotion_classifier")`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from edtalk.nn.emotion import EmotionClassifier, EmotionClassifierConfig
from edtalk.stages.supervised import StageConfig, SupervisedStage, resolved, scaled


@dataclass
class EmotionClassifierStageConfig(StageConfig):
    """`model:` of the emotion_classifier stage (widths times `width`).

    Attributes:
        num_classes: emotion labels (8 MEAD emotions).
        input_size: frames are resized to this side.
        backbone: "conv" or "resnet18" (random init, nothing downloaded).
        channels: conv backbone widths.
        dim: frame feature size.
        dropout: before the classifier.
        label_smoothing: of the cross-entropy.
    """

    num_classes: int = 8
    input_size: int = 112
    backbone: str = "conv"
    channels: list[int] = field(default_factory=lambda: [32, 64, 128, 256, 256])
    dim: int = 256
    dropout: float = 0.2
    label_smoothing: float = 0.0


def network_config(cfg: EmotionClassifierStageConfig) -> EmotionClassifierConfig:
    """The `EmotionClassifierConfig` a stage config describes."""
    return EmotionClassifierConfig(
        num_classes=cfg.num_classes,
        input_size=cfg.input_size,
        backbone=cfg.backbone,  # type: ignore[arg-type]
        channels=scaled(tuple(cfg.channels), cfg.width),
        dim=scaled((cfg.dim,), cfg.width)[0],
        dropout=cfg.dropout,
    )


class EmotionClassifierStage(SupervisedStage):
    """Cross-entropy training of the video-level emotion classifier."""

    Config: ClassVar[type[StageConfig]] = EmotionClassifierStageConfig
    stage_name: ClassVar[str] = "emotion_classifier"
    kind: ClassVar[str] = "emotion_classifier"
    cfg: EmotionClassifierStageConfig

    @classmethod
    def build(cls, cfg: Any, resume: bool = False) -> EmotionClassifierStage:
        model_cfg, run_config = resolved(cfg)
        net_cfg = network_config(model_cfg)
        return cls(EmotionClassifier(net_cfg), net_cfg.to_dict(), model_cfg, run_config)

    def compute(self, batch: dict[str, torch.Tensor], train: bool) -> dict[str, torch.Tensor]:
        if "frames" not in batch:
            raise KeyError(
                "emotion_classifier needs clips: set data.clip_frames=T (> 0) for EmotionDataModule"
            )
        logits = self.net(batch["frames"])  # -> B x 8
        labels = batch["emotion"]
        loss = F.cross_entropy(logits, labels, label_smoothing=self.cfg.label_smoothing)
        acc = (logits.argmax(1) == labels).to(logits.dtype).mean()
        return {"loss": loss, "accuracy": acc}
