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

from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from edtalk.nn.emotion import EmotionClassifier, EmotionClassifierConfig
from edtalk.stages.supervised import StageConfig, SupervisedStage, resolved, scaled


@dataclass
class EmotionClassifierStageConfig(StageConfig):
    """`model:` of the emotion_classifier stage.

    Attributes:
        network: the `EmotionClassifier` architecture at `width` 1 (`model.network.backbone`,
            `.input_size`, `.channels`, `.dim`, `.dropout`, `.num_classes`); `channels` and `dim` are
            multiplied by `width`.
        label_smoothing: of the cross-entropy.
    """

    network: EmotionClassifierConfig = field(default_factory=EmotionClassifierConfig)
    label_smoothing: float = 0.0


def network_config(cfg: EmotionClassifierStageConfig) -> EmotionClassifierConfig:
    """The `EmotionClassifierConfig` the stage builds: `cfg.network` at `cfg.width`."""
    net = cfg.network
    return replace(net, channels=scaled(net.channels, cfg.width), dim=scaled((net.dim,), cfg.width)[0])


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
