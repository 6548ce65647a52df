"""Stage `audio2pose`: speech -> a probabilistic sequence of the 6 pose weights (role of paper Sec. 3.4).

Our own design, not the paper's: the paper's pose generator is a normalizing flow (MoGlow-based,
never released). The network (`edtalk.nn.audio2pose.Audio2Pose`) is a conditional VAE over pose-weight sequences with
temporal context: the posterior sees the extracted pose sequence, the prior only the audio and the
source's pose, and training minimises the negative ELBO (pose MSE + velocity MSE + KL; weights
`model.loss.velocity`, `model.loss.kl`). Several
plausible head motions can then be drawn for one audio; the spread is the generate-time option
`edtalk generate --pose-temperature T` (0 = the prior's mean motion).

Batch (AudioDataModule with coefficient sidecars; long windows, e.g. `data.clip_frames=50` = 2 s):
mel B x T x 1 x 80 x 16, pose B x T x 6. The reference pose (what `edtalk generate` passes: the
source image's own pose weights) is the first frame's pose.
Validation also draws one sample per clip (seeded) and logs its MSE and the mean motion's MSE.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from edtalk.nn.audio2pose import Audio2Pose, Audio2PoseConfig
from edtalk.stages.stage import DebugExport
from edtalk.stages.supervised import (
    StageConfig,
    SupervisedStage,
    debug_coefficient_data,
    resolved,
    scaled,
    seeded_generator,
    tie_to_generator,
)


@dataclass
class Audio2PoseLoss:
    """Weights of the negative-ELBO terms against the per-element pose MSE (weight 1).

    Attributes:
        kl: KL weight (per latent element).
        velocity: weight of the frame-difference MSE.
    """

    kl: float = 0.01
    velocity: float = 1.0


@dataclass
class Audio2PoseStageConfig(StageConfig):
    """`model:` of the audio2pose stage.

    Attributes:
        network: the `Audio2Pose` architecture at `width` 1 (`model.network.hidden`, `.audio.dim`, ...);
            its channel counts are multiplied by `width` and `pose_dim` follows `generator.pose_dim`.
        loss: loss weights.
        reference: "first_frame" conditions on the first frame's pose (as generate does with the
            source's), "none" on the audio only.
    """

    network: Audio2PoseConfig = field(default_factory=Audio2PoseConfig)
    loss: Audio2PoseLoss = field(default_factory=Audio2PoseLoss)
    reference: str = "first_frame"


def network_config(cfg: Audio2PoseStageConfig, pose_dim: int = 6) -> Audio2PoseConfig:
    """The `Audio2PoseConfig` the stage builds: `cfg.network` at `cfg.width`, predicting `pose_dim` weights."""
    net = tie_to_generator(cfg.network, "pose_dim", pose_dim)
    audio = replace(
        net.audio, channels=scaled(net.audio.channels, cfg.width), dim=scaled((net.audio.dim,), cfg.width)[0]
    )
    return replace(net, audio=audio, hidden=scaled((net.hidden,), cfg.width)[0])


class Audio2PoseStage(SupervisedStage):
    """Negative-ELBO training of `Audio2Pose` against extracted pose weights."""

    Config: ClassVar[type[StageConfig]] = Audio2PoseStageConfig
    stage_name: ClassVar[str] = "audio2pose"
    kind: ClassVar[str] = "audio2pose"
    cfg: Audio2PoseStageConfig
    net: Audio2Pose

    @classmethod
    def build(cls, cfg: Any, resume: bool = False) -> Audio2PoseStage:
        model_cfg, run_config = resolved(cfg)
        if model_cfg.reference not in ("first_frame", "none"):
            raise ValueError(f"model.reference must be 'first_frame' or 'none', got {model_cfg.reference!r}")
        net_cfg = network_config(model_cfg, int(cfg.generator.pose_dim))
        return cls(Audio2Pose(net_cfg), net_cfg.to_dict(), model_cfg, run_config)

    def reference(self, pose: torch.Tensor) -> torch.Tensor | None:
        return pose[:, 0] if self.cfg.reference == "first_frame" else None

    @classmethod
    def prepare_debug(cls, cfg: Any, debug_export: DebugExport) -> None:
        """`--debug`: shards with the coefficients of the debug generator (`requires`)."""
        debug_coefficient_data(cfg)

    def compute(self, batch: dict[str, torch.Tensor], train: bool) -> dict[str, torch.Tensor]:
        mel, pose = batch["mel"], batch["pose"]
        ref = self.reference(pose)
        w = self.cfg.loss
        out = self.net.loss(mel, pose, ref, kl_weight=w.kl, velocity_weight=w.velocity)
        logs = {k: v for k, v in out.items() if k != "pred"}
        if not train:
            gen = seeded_generator(self.val_index)
            sample = self.net.sample(mel, 1.0, gen, ref)
            logs["sample_mse"] = F.mse_loss(sample, pose)
            logs["mean_mse"] = F.mse_loss(self.net.sample(mel, 0.0, gen, ref), pose)
            logs["sample_std"] = sample.std(dim=1).mean()  # motion within a draw
        return logs
