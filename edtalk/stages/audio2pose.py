"""Stage `audio2pose`: speech -> a probabilistic sequence of the 6 pose weights (role of paper Sec. 3.4).

Our own design, not the paper's: the paper's pose generator is a normalizing flow (MoGlow-based,
never released). The network (`edtalk.nn.audio2pose.Audio2Pose`) is a conditional VAE over pose-weight sequences with
temporal context: the posterior sees the extracted pose sequence, the prior only the audio and the
source's pose, and training minimises the negative ELBO (pose MSE + velocity MSE + KL). Several
plausible head motions can then be drawn for one audio; the spread is the generate-time option
`edtalk generate --pose-temperature T` (0 = the prior's mean motion).

Batch (AudioDataModule with coefficient sidecars; long windows, e.g. `data.clip_frames=50` = 2 s):
mel B x T x 1 x 80 x 16, pose B x T x 6. The reference pose (what `edtalk generate` passes: the
source image's own pose weights) is the first frame's pose.
Validation also draws one sample per clip (seeded) and logs its MSE and the mean motion's MSE.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from edtalk.nn.audio2pose import Audio2Pose, Audio2PoseConfig
from edtalk.nn.audio_encoder import AudioEncoderConfig
from edtalk.stages.stage import DebugExport
from edtalk.stages.supervised import (
    StageConfig,
    SupervisedStage,
    debug_coefficient_data,
    resolved,
    scaled,
    seeded_generator,
)


@dataclass
class Audio2PoseStageConfig(StageConfig):
    """`model:` of the audio2pose stage (network fields as `Audio2PoseConfig`; widths times `width`).

    Attributes:
        hidden: width of the temporal networks (before `width`).
        audio_dim: per-frame audio feature size (before `width`).
        context_layers: dilated temporal blocks per stack.
        latent_dim: latent channels per latent step.
        latent_stride: frames per latent step.
        kl_weight: KL weight (per latent element) against the per-element pose MSE.
        velocity_weight: weight of the frame-difference MSE.
        reference: "first_frame" conditions on the first frame's pose (as generate does with the
            source's), "none" on the audio only.
    """

    hidden: int = 256
    audio_dim: int = 256
    context_layers: int = 4
    latent_dim: int = 16
    latent_stride: int = 5
    kl_weight: float = 0.01
    velocity_weight: float = 1.0
    reference: str = "first_frame"


def network_config(cfg: Audio2PoseStageConfig, pose_dim: int = 6) -> Audio2PoseConfig:
    """The `Audio2PoseConfig` a stage config describes."""
    audio = AudioEncoderConfig(
        channels=scaled(AudioEncoderConfig().channels, cfg.width), dim=scaled((cfg.audio_dim,), cfg.width)[0]
    )
    return Audio2PoseConfig(
        pose_dim=pose_dim,
        audio=audio,
        hidden=scaled((cfg.hidden,), cfg.width)[0],
        context_layers=cfg.context_layers,
        latent_dim=cfg.latent_dim,
        latent_stride=cfg.latent_stride,
        kl_weight=cfg.kl_weight,
        velocity_weight=cfg.velocity_weight,
    )


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
        out = self.net.loss(mel, pose, ref)
        logs = {k: v for k, v in out.items() if k != "pred"}
        if not train:
            gen = seeded_generator(self.val_index)
            sample = self.net.sample(mel, 1.0, gen, ref)
            logs["sample_mse"] = F.mse_loss(sample, pose)
            logs["mean_mse"] = F.mse_loss(self.net.sample(mel, 0.0, gen, ref), pose)
            logs["sample_std"] = sample.std(dim=1).mean()  # motion within a draw
        return logs
