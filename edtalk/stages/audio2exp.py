"""Stage `audio2exp`: speech -> the 10 expression weights of the ELN bank, with an emotion auxiliary task.

Our own design, not the paper's: the paper uses HuBERT speech-emotion features and EmoBERTa text
features with modality masking (never released); ours reads mel windows by default, HuBERT features
(+ text, with modality masking) as an option.
The network (`edtalk.nn.audio2exp.Audio2Exp`) pools per-frame features of our own audio encoder into an
utterance-level feature (Emotion-FAN attention pooling) and regresses the clip's expression weights
(the mean over its frames of the coefficients extracted by the expression generator), with a
cross-entropy over the 8 MEAD emotions as auxiliary loss (weight `model.loss.emotion`; clips with unknown emotion, label -1, are
left out of it). It lets `edtalk generate --emotion auto` drive the expression from speech alone.

Batch (AudioDataModule over emotional clips with full-generator coefficient sidecars; long windows,
e.g. `data.clip_frames=50`): mel B x T x 1 x 80 x 16, exp B x T x 10, emotion B.

Anchors alone (ours; the demo profile): with `model.exp_anchor` > 0 and `data.coefficients=false` (and
`requires: null`) every clip's target is its emotion's anchor, so the stage reads no generator and can
train before the expression stage exists; each clip then needs its emotion label.

The paper's input path (experiments/audio2exp_hubert.yaml): `model.network.input=hubert` reads the batch's
"hubert" B x T x D (`data.hubert=true`: the `<shard>.hubert.npz` sidecars of `edtalk extract-hubert`)
instead of mel, and with `model.network.text_dim` > 0 the per-clip "text" B x D_text (`data.text=true`:
`<shard>.text.npz`), randomly dropping one modality per clip with `model.network.modality_mask`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from edtalk.nn.audio2exp import Audio2Exp, Audio2ExpConfig
from edtalk.stages.expression import emotion_anchors
from edtalk.stages.stage import DebugExport
from edtalk.stages.supervised import (
    StageConfig,
    SupervisedStage,
    debug_coefficient_data,
    resolved,
    scaled,
    tie_to_generator,
)


@dataclass
class Audio2ExpLoss:
    """Weights against the expression MSE (weight 1).

    Attributes:
        emotion: weight of the emotion cross-entropy.
    """

    emotion: float = 0.1


@dataclass
class Audio2ExpStageConfig(StageConfig):
    """`model:` of the audio2exp stage.

    Attributes:
        network: the `Audio2Exp` architecture at `width` 1 (`model.network.hidden`, `.audio.dim`, ...);
            its channel counts are multiplied by `width` and `exp_dim` follows `generator.exp_dim`.
        loss: loss weights.
        label_smoothing: of the emotion cross-entropy.
        exp_anchor: > 0 (ours; set it to the expression stage's `model.exp_anchor`): regress the emotion's
            anchor (`edtalk.stages.expression.emotion_anchors`) instead of the clip's mean extracted weights,
            for labelled clips: the weights the generator was taught to render for that emotion.
        exp_from_emotion: (ours; needs `exp_anchor`) the network's expression weights are its emotion head's
            posterior mix of the anchors (`Audio2ExpConfig.anchor`): a clip read as one emotion gets that
            emotion's anchor, a neutral one zero, instead of a regression that falls short of both.
    """

    network: Audio2ExpConfig = field(default_factory=Audio2ExpConfig)
    loss: Audio2ExpLoss = field(default_factory=Audio2ExpLoss)
    label_smoothing: float = 0.0
    exp_anchor: float = 0.0
    exp_from_emotion: bool = False


def network_config(cfg: Audio2ExpStageConfig, exp_dim: int = 10) -> Audio2ExpConfig:
    """The `Audio2ExpConfig` the stage builds: `cfg.network` at `cfg.width`, predicting `exp_dim` weights (with
    `cfg.exp_from_emotion`: the posterior's mix of the `cfg.exp_anchor` anchors)."""
    net = tie_to_generator(cfg.network, "exp_dim", exp_dim)
    if cfg.exp_from_emotion:
        if not cfg.exp_anchor > 0:
            raise ValueError(
                "audio2exp: model.exp_from_emotion=true mixes the emotions' anchors: set model.exp_anchor (the "
                "expression stage's value) or model.exp_from_emotion=false"
            )
        net = replace(net, anchor=cfg.exp_anchor)
    audio = replace(
        net.audio, channels=scaled(net.audio.channels, cfg.width), dim=scaled((net.audio.dim,), cfg.width)[0]
    )
    return replace(net, audio=audio, hidden=scaled((net.hidden,), cfg.width)[0])


def emotion_terms(
    logits: torch.Tensor, labels: torch.Tensor, smoothing: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(cross-entropy, accuracy) over the clips with a known label (>= 0); zeros when there is none."""
    known = labels >= 0
    if not bool(known.any()):
        zero = logits.sum() * 0.0  # keeps the graph (DDP) and the dtype
        return zero, zero.detach()
    ce = F.cross_entropy(logits[known], labels[known], label_smoothing=smoothing)
    acc = (logits[known].argmax(1) == labels[known]).to(logits.dtype).mean()
    return ce, acc


class Audio2ExpStage(SupervisedStage):
    """Expression-weight regression + emotion classification from speech."""

    Config: ClassVar[type[StageConfig]] = Audio2ExpStageConfig
    stage_name: ClassVar[str] = "audio2exp"
    kind: ClassVar[str] = "audio2exp"
    cfg: Audio2ExpStageConfig
    net: Audio2Exp

    @classmethod
    def build(cls, cfg: Any, resume: bool = False) -> Audio2ExpStage:
        model_cfg, run_config = resolved(cfg)
        if cfg.data.get("coefficients") is False and not model_cfg.exp_anchor > 0:
            raise ValueError(
                "audio2exp with data.coefficients=false regresses the emotions' anchors alone: set "
                "model.exp_anchor (the expression stage's value), or data.coefficients=true with the "
                "expression generator's coefficient sidecars"
            )
        net_cfg = network_config(model_cfg, int(cfg.generator.exp_dim))
        return cls(Audio2Exp(net_cfg), net_cfg.to_dict(), model_cfg, run_config)

    @classmethod
    def prepare_debug(cls, cfg: Any, debug_export: DebugExport) -> None:
        """`--debug`: shards with the coefficients of the debug generator (`requires`); none when the
        stage regresses anchors only (`data.coefficients=false`)."""
        if cfg.data.get("coefficients") is not False:
            debug_coefficient_data(cfg)

    def compute(self, batch: dict[str, torch.Tensor], train: bool) -> dict[str, torch.Tensor]:
        out = self.net(self._audio(batch), text=batch.get("text") if self.net.cfg.text_dim else None)
        target = self._target(batch, out.exp)
        mse = F.mse_loss(out.exp, target)
        ce, acc = emotion_terms(out.logits, batch["emotion"], self.cfg.label_smoothing)
        total = mse + self.cfg.loss.emotion * ce
        return {"loss": total, "exp": mse, "emotion": ce, "accuracy": acc}

    def _target(self, batch: dict[str, torch.Tensor], pred: torch.Tensor) -> torch.Tensor:
        """B x D like `pred`: the utterance's mean extracted expression weights; with `exp_anchor` the emotion's anchor
        for labelled clips. Without coefficients in the batch (anchors only) every clip needs its label."""
        labels = batch["emotion"]
        anchors = emotion_anchors(labels, pred.shape[1], self.cfg.exp_anchor)
        if "exp" not in batch:
            if anchors is None or bool((labels < 0).any()):
                raise KeyError(
                    "audio2exp needs expression coefficients in the batch (extract them with a full expression "
                    "generator, edtalk extract-coefficients, so the shards' .coeffs.npz hold the exp weights)"
                    + ("" if anchors is None else ", or emotion labels on every clip for the anchors alone")
                )
            return anchors.to(pred)
        target = batch["exp"].mean(1)  # -> B x D, the utterance's expression
        if anchors is not None:  # labelled clips: their emotion's anchor
            target = torch.where((labels >= 0)[:, None], anchors.to(target), target)
        return target

    def _audio(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The network's audio input: mel windows, or HuBERT features with `model.network.input=hubert`."""
        key = self.net.cfg.input
        if key not in batch:
            raise KeyError(
                f"model.network.input={key} but the batch has no {key!r}: for hubert, write the features with "
                "`edtalk extract-hubert CHECKPOINT --shards DIR` and set data.hubert=true"
            )
        return batch[key]
