"""Lip-sync loss (Wav2Lip expert, SPEC 5.4) and the crops the expert sees.

The expert (`edtalk.nn.syncnet.SyncNet`) reads 5 consecutive frames as the lower halves of 96 x 96
crops and the mel window of the same 5 frames. Two crops (`sync_crop`, boxes in pixels of the S x S
frame, x1, y1, x2, y2):

* ``"face"`` (default): each frame's face box (batch key "face_box": the box of the frame's 68
  landmarks, its top raised where needed so the nose tip sits at its centre,
  `datamodules.samplers.face_boxes`) resized to 96 x 96, as Wav2Lip's preprocessing resizes its
  face-detector box; the lower half (nose to chin) goes to the expert. This is the input Wav2Lip's
  expert (`lipsync_expert.pth`) was trained on.
* ``"mouth"``: a square of side `crop_scale` x (mean mouth-box width over the 5 frames) around the
  mouth box (batch key "bbox"), centred horizontally on the mouth and placed so the mouth centre sits
  in the middle of the crop's lower half (row 72 of 96). Our earlier default; a tighter view of the
  mouth, at one scale over the window.

Crops are bilinear (`grid_sample`), hence differentiable w.r.t. rendered frames.

Window alignment: frames `start .. start+4` pair with per-frame mel window `start + 2`
(`edtalk.nn.syncnet.gather_sync_windows`), which covers exactly those frames (upstream EDTalk used
window `start`, two frames early).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edtalk.nn.syncnet import SYNC_FRAMES, SyncNet, gather_sync_windows, stack_mouth_frames

CROP = 96
SYNC_CROPS = {"face": "face_box", "mouth": "bbox"}  # crop -> the batch key of its boxes


def check_sync_crop(crop: str) -> str:
    """`crop` if it names a sync crop, else a ValueError naming the choices."""
    if crop not in SYNC_CROPS:
        raise ValueError(
            f"sync_crop={crop!r}: use 'face' (lower half of the face box, the input of Wav2Lip's expert) "
            "or 'mouth' (lower half of a mouth-box square, side crop_scale x mouth width)"
        )
    return crop


def crop_boxes(batch: dict[str, torch.Tensor], crop: str = "face") -> torch.Tensor:
    """The B x T x 4 boxes a sync crop is cut from: batch "face_box" (face) or "bbox" (mouth boxes)."""
    key = SYNC_CROPS[check_sync_crop(crop)]
    if key not in batch:
        raise KeyError(
            f"sync_crop={crop!r} needs batch[{key!r}] (B x T x 4 boxes); AudioDataModule batches carry "
            f"'face_box' and 'bbox', this batch has {sorted(batch)}"
        )
    return batch[key]


def sync_probability(audio_emb: torch.Tensor, video_emb: torch.Tensor) -> torch.Tensor:
    """Cosine similarity read as the in-sync probability: B x C, B x C -> B.

    Embeddings are non-negative (ReLU before normalisation), so the cosine lies in [0, 1]; the clamp only
    removes float rounding beyond 1.
    """
    return F.cosine_similarity(audio_emb, video_emb, dim=1).clamp(0.0, 1.0)


def sync_loss(
    audio_emb: torch.Tensor, video_emb: torch.Tensor, target: torch.Tensor | float = 1.0
) -> torch.Tensor:
    """Wav2Lip's expert loss: BCE(cos(a, v), y), mean over the batch (y = 1 in sync, 0 off sync).

    Args:
        audio_emb: B x C audio embeddings.
        video_emb: B x C face embeddings.
        target: scalar or B labels (1: in sync).
    """
    prob = sync_probability(audio_emb, video_emb)
    y = torch.as_tensor(target, dtype=prob.dtype, device=prob.device).expand_as(prob)
    return F.binary_cross_entropy(prob, y)


def sync_boxes(bbox: torch.Tensor, crop_scale: float = 2.0) -> torch.Tensor:
    """Square crop boxes from mouth boxes: B x 5 x 4 (x1, y1, x2, y2) -> B x 5 x 4.

    Side = crop_scale x mean box width over the window (one scale for the 5 frames, so mouth opening
    stays visible); per-frame centre x = mouth centre, mouth centre at 3/4 of the crop height.
    """
    cx = 0.5 * (bbox[..., 0] + bbox[..., 2])
    cy = 0.5 * (bbox[..., 1] + bbox[..., 3])
    side = crop_scale * (bbox[..., 2] - bbox[..., 0]).mean(dim=-1, keepdim=True).clamp_min(1.0)
    side = side.expand_as(cx)
    return torch.stack([cx - side / 2, cy - 0.75 * side, cx + side / 2, cy + 0.25 * side], dim=-1)


def expert_crop(obj: Any) -> str | None:
    """The crop a loaded lip-sync expert file was trained on ("face" / "mouth"; None: not known).

    Our syncnet export records it (`meta["sync_crop"]`), a syncnet Lightning checkpoint in its run config
    (`model.sync_crop`); syncnet files of ours without it predate the option and were trained on mouth
    crops. Any other layout (Wav2Lip's `lipsync_expert.pth`) was trained on face crops.
    """
    from edtalk.weights.registry import source_of

    if not isinstance(obj, Mapping):
        return None
    source = source_of(obj)
    if source == "official":
        return "face"
    info = obj.get("meta") if source == "ours" else obj.get("edtalk")
    if not isinstance(info, Mapping) or info.get("stage") != "syncnet":
        return None
    if source == "ours":
        return str(info.get("sync_crop", "mouth"))
    model = (info.get("config") or {}).get("model") or {}
    return str(model.get("sync_crop", "mouth"))


def warn_other_crop(path: str | Path, crop: str) -> None:
    """Warn when the expert file at `path` was trained on another crop than the one it will be fed."""
    from edtalk.weights import load_file

    trained = expert_crop(load_file(path))
    if trained is not None and trained != crop:
        warnings.warn(
            f"the lip-sync expert {path} was trained on {trained!r} crops but is fed {crop!r} crops: "
            f"set model.sync_crop={trained} (or train the expert with model.sync_crop={crop})",
            UserWarning,
            stacklevel=2,
        )


def window_boxes(boxes: torch.Tensor, crop: str = "face", crop_scale: float = 2.0) -> torch.Tensor:
    """Crop boxes of a 5-frame window: B x 5 x 4 face or mouth boxes -> B x 5 x 4 boxes to resize to 96².

    "face": each frame's own face box (resized to 96 x 96 whatever its aspect, as Wav2Lip resizes its
    detector boxes); "mouth": `sync_boxes(boxes, crop_scale)`.
    """
    if check_sync_crop(crop) == "face":
        return boxes
    return sync_boxes(boxes, crop_scale)


def crop_resize(images: torch.Tensor, boxes: torch.Tensor, size: int = CROP) -> torch.Tensor:
    """Bilinear crops: images N x 3 x H x W, boxes N x 4 pixels -> N x 3 x size x size (zeros outside)."""
    n, _, h, w = images.shape
    x1, y1, x2, y2 = boxes.unbind(-1)
    # pixel box -> affine map of the normalised output grid [-1, 1] onto input coordinates
    theta = images.new_zeros(n, 2, 3)
    theta[:, 0, 0] = (x2 - x1) / w
    theta[:, 0, 2] = (x1 + x2) / w - 1
    theta[:, 1, 1] = (y2 - y1) / h
    theta[:, 1, 2] = (y1 + y2) / h - 1
    grid = F.affine_grid(theta, [n, 3, size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def sync_faces(
    frames: torch.Tensor,
    boxes: torch.Tensor,
    start: torch.Tensor,
    crop_scale: float = 2.0,
    *,
    crop: str = "face",
) -> torch.Tensor:
    """The expert's face input for frames start..start+4 of each clip.

    Args:
        frames: B x T x 3 x S x S in [-1, 1].
        boxes: B x T x 4 boxes in pixels of the S x S frame: face boxes for ``crop="face"``, mouth
            boxes for ``crop="mouth"`` (`crop_boxes` picks them from a batch).
        start: B first-frame indices, each in [0, T - 5].
        crop_scale: crop side over the mouth-box width (``crop="mouth"`` only).
        crop: "face" or "mouth" (see the module docstring).

    Returns:
        B x 15 x 48 x 96 (lower halves of the five 96 x 96 crops, frames stacked on channels).
    """
    b, t = frames.shape[:2]
    if int(start.min()) < 0 or int(start.max()) > t - SYNC_FRAMES:
        raise ValueError(f"sync windows starting at {start.tolist()} do not fit {t} frames")
    idx = start.to(frames.device)[:, None] + torch.arange(SYNC_FRAMES, device=frames.device)  # -> B x 5
    rows = torch.arange(b, device=frames.device)[:, None]
    clip = frames[rows, idx]  # -> B x 5 x 3 x S x S
    window = window_boxes(boxes.to(frames.dtype)[rows, idx], crop, crop_scale)  # -> B x 5 x 4
    crops = crop_resize(clip.flatten(0, 1), window.flatten(0, 1))  # -> (B*5) x 3 x 96 x 96
    return stack_mouth_frames(crops.view(b, SYNC_FRAMES, 3, CROP, CROP))


def sync_pair(
    frames: torch.Tensor,
    boxes: torch.Tensor,
    mel: torch.Tensor,
    start: torch.Tensor,
    crop_scale: float = 2.0,
    *,
    crop: str = "face",
) -> tuple[torch.Tensor, torch.Tensor]:
    """(mel window B x 1 x 80 x 16, faces B x 15 x 48 x 96) of frames start..start+4: the SAME 5 frames.

    The one place where the expert's audio and visual inputs are paired (stages `syncnet` and
    `audio2mouth` both use it). `boxes`, `crop_scale`, `crop`: see `sync_faces`.
    """
    return gather_sync_windows(mel, start), sync_faces(frames, boxes, start, crop_scale, crop=crop)


def random_starts(batch: int, frames: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """B uniform first-frame indices of 5-frame windows in clips of `frames` frames."""
    return torch.randint(0, frames - SYNC_FRAMES + 1, (batch,), generator=generator)


def shifted_starts(
    start: torch.Tensor, frames: int, min_shift: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """For each start, another window start at least `min_shift` frames away (uniform over those).

    Raises:
        ValueError: clips too short for such a shift (need frames >= 5 + 2 * min_shift for every start).
    """
    last = frames - SYNC_FRAMES
    out = torch.empty_like(start)
    for i, s in enumerate(start.tolist()):
        choices = [c for c in range(last + 1) if abs(c - s) >= min_shift]
        if not choices:
            raise ValueError(
                f"no window start >= {min_shift} frames from {s} in a {frames}-frame clip; "
                f"use clips of at least {SYNC_FRAMES + 2 * min_shift} frames (data.clip_frames)"
            )
        j = int(torch.randint(len(choices), (1,), generator=generator))
        out[i] = choices[j]
    return out


class SyncLoss(nn.Module):
    """Frozen lip-sync expert as a loss: BCE(cos(audio, faces), 1) on aligned 5-frame windows.

    The expert stays in eval mode with no gradients (its BatchNorm statistics never move); gradients
    flow into the frames only.

    Args:
        syncnet: a trained `SyncNet`.
        crop_scale: see `sync_boxes` (``crop="mouth"`` only).
        crop: "face" (default: the expert's training input) or "mouth"; `forward` takes the matching
            boxes (`crop_boxes(batch, crop)`).
    """

    def __init__(self, syncnet: SyncNet, crop_scale: float = 2.0, crop: str = "face") -> None:
        super().__init__()
        self.syncnet = syncnet.requires_grad_(False).eval()
        self.crop_scale = crop_scale
        self.crop = check_sync_crop(crop)

    def train(self, mode: bool = True) -> SyncLoss:
        return super().train(False)

    def forward(
        self, frames: torch.Tensor, boxes: torch.Tensor, mel: torch.Tensor, start: torch.Tensor
    ) -> torch.Tensor:
        """frames B x T x 3 x S x S, boxes B x T x 4, mel B x T x 1 x 80 x 16, start B -> scalar loss."""
        window, faces = sync_pair(frames, boxes, mel, start, self.crop_scale, crop=self.crop)
        audio, video = self.syncnet(window, faces)
        return sync_loss(audio, video, 1.0)
