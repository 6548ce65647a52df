"""Stage `syncnet`: the Wav2Lip-style lip-sync expert, trained on our shards (SPEC 3.6, 5.4).

Batch (AudioDataModule, `clip_frames` T >= 5 + 2 `min_shift`): frames B x T x 3 x S x S, mel windows
B x T x 1 x 80 x 16 (window t centred on frame t), face boxes "face_box" and mouth boxes "bbox" B x T x 4.
Per clip one 5-frame window starting at s is cropped (lower halves of 96 x 96 crops of the face box,
Wav2Lip's expert input; `model.sync_crop=mouth`: of a mouth-box square; `edtalk.losses.sync.sync_faces`)
and paired with

* the mel window of the same 5 frames (`gather_sync_windows`, window s + 2): label 1 (in sync);
* the mel window of 5 frames starting at s' with |s' - s| >= `min_shift`: label 0 (shifted).

Loss: mean BCE of cos(audio, face) over both pairs (Wav2Lip's expert loss, balanced classes).
Validation: the same with seeded choices; `val/accuracy` = fraction of pairs on the right side of 0.5.
Start from scratch or from the official Wav2Lip expert: `model.init=<lipsync_expert.pth>` (needs
`model.width=1`), or from one of our syncnet checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from edtalk import weights
from edtalk.losses.sync import (
    check_sync_crop,
    crop_boxes,
    random_starts,
    shifted_starts,
    sync_pair,
    sync_probability,
)
from edtalk.nn.syncnet import SyncNet, SyncNetConfig, gather_sync_windows
from edtalk.stages.supervised import (
    StageConfig,
    SupervisedStage,
    load_network,
    resolved,
    scaled,
    seeded_generator,
)

WAV2LIP_CHANNELS = SyncNetConfig().channels  # (32, 64, 128, 256, 512): Wav2Lip's expert


@dataclass
class SyncNetStageConfig(StageConfig):
    """`model:` of the syncnet stage.

    Attributes:
        network: the `SyncNet` architecture at `width` 1 (`model.network.channels`; times `width`).
        init: start from this file: the official Wav2Lip expert or one of our syncnet checkpoints.
        sync_crop: "face" (lower half of the 96 x 96 face-box crop, Wav2Lip's expert input) or
            "mouth" (lower half of a mouth-box square; `edtalk.losses.sync`).
        crop_scale: mouth crop side over the mouth-box width (`sync_crop=mouth` only).
        min_shift: frames between an in-sync window and its shifted (negative) window.
        augment: strength of the training pairs' photometric and loudness jitter (0: none, the recipe;
            1: per clip a colour gain in [0.7, 1.3] and offset in [-0.2, 0.2] per channel of the mouth
            frames, and a loudness offset in [-1, 1] of the mel window, clamped to its [-4, 4] range;
            `jitter_pair`): a speaker's colouring and a clip's loudness tell nothing of sync.
        val_windows: seeded window choices per validation clip, averaged (1: one in-sync and one shifted
            pair a clip, too few to read an accuracy from a held-out speaker's few clips).
    """

    network: SyncNetConfig = field(default_factory=SyncNetConfig)
    init: str | None = None
    sync_crop: str = "face"
    crop_scale: float = 2.0
    min_shift: int = 5
    augment: float = 0.0
    val_windows: int = 8

    def __post_init__(self) -> None:
        check_sync_crop(self.sync_crop)
        if self.val_windows < 1:
            raise ValueError(f"model.val_windows={self.val_windows}: use at least 1 window per clip")
        if self.augment < 0:
            raise ValueError(f"model.augment={self.augment}: use a strength >= 0 (0: no jitter)")


class SyncNetStage(SupervisedStage):
    """Trains `SyncNet` on in-sync vs shifted (mel window, 5 mouth frames) pairs."""

    Config: ClassVar[type[StageConfig]] = SyncNetStageConfig
    stage_name: ClassVar[str] = "syncnet"
    kind: ClassVar[str] = "syncnet"
    cfg: SyncNetStageConfig
    net: SyncNet

    @classmethod
    def build(cls, cfg: Any, resume: bool = False) -> SyncNetStage:
        """From a composed run config: a fresh expert of `model.width`, or `model.init`'s weights."""
        model_cfg, run_config = resolved(cfg)
        net_config = {"channels": list(scaled(model_cfg.network.channels, model_cfg.width))}
        net = SyncNet(tuple(net_config["channels"]))
        if model_cfg.init and not resume:
            loaded = load_network(model_cfg.init, "syncnet")
            net.load_state_dict(loaded.state_dict(), strict=True)
        return cls(net, net_config, model_cfg, run_config)

    def export(self, path: str | Path) -> Path:
        """Our export, recording the crop the expert was trained on (meta "sync_crop"; audio2mouth checks it)."""
        meta = {"stage": self.stage_name, "step": int(self.global_step), "sync_crop": self.cfg.sync_crop}
        return weights.save_checkpoint(self.net, self.kind, path, config=self.net_config, **meta)

    def val_draws(self) -> int:
        return self.cfg.val_windows

    def compute(self, batch: dict[str, torch.Tensor], train: bool) -> dict[str, torch.Tensor]:
        frames, mel, boxes = batch["frames"], batch["mel"], crop_boxes(batch, self.cfg.sync_crop)
        b, t = frames.shape[:2]
        gen = None if train else seeded_generator(self.val_index)
        start = random_starts(b, t, gen)
        shifted = shifted_starts(start, t, self.cfg.min_shift, gen)
        window, faces = sync_pair(frames, boxes, mel, start, self.cfg.crop_scale, crop=self.cfg.sync_crop)
        shifted_window = gather_sync_windows(mel, shifted)
        if train and self.cfg.augment > 0:
            faces, (window, shifted_window) = jitter_pair(faces, (window, shifted_window), self.cfg.augment)
        video = self.net.embed_face(faces)  # -> B x C
        audio = self.net.embed_audio(torch.cat([window, shifted_window]))  # -> 2B x C
        prob = sync_probability(audio, video.repeat(2, 1))  # -> 2B: [in sync, shifted]
        label = torch.cat([prob.new_ones(b), prob.new_zeros(b)])
        loss = F.binary_cross_entropy(prob, label)
        correct = ((prob > 0.5).to(prob.dtype) == label).to(prob.dtype)
        return {
            "loss": loss,
            "accuracy": correct.mean(),
            "p_sync": prob[:b].mean().detach(),
            "p_shifted": prob[b:].mean().detach(),
        }


def jitter_pair(
    faces: torch.Tensor, windows: tuple[torch.Tensor, ...], strength: float
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """Faces B x 3k x H x W in [-1, 1] (k frames, channels stacked per frame) with one colour gain and
    offset per clip and channel, and mel windows B x 1 x 80 x W' with one loudness offset per clip (the
    same for each window of a clip, so a pair differs only in timing), both at `strength`."""
    b = faces.shape[0]
    gain = 1 + strength * 0.3 * (2 * torch.rand(b, 1, 3, 1, 1, device=faces.device) - 1)
    offset = strength * 0.2 * (2 * torch.rand(b, 1, 3, 1, 1, device=faces.device) - 1)
    framed = faces.view(b, -1, 3, *faces.shape[-2:])
    faces = (framed * gain + offset).clamp(-1, 1).view_as(faces)
    loud = strength * (2 * torch.rand(b, 1, 1, 1, device=faces.device) - 1)
    return faces, tuple((w + loud).clamp(-4, 4) for w in windows)
