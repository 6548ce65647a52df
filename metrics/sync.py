"""LSE-D / LSE-C with the syncnet_python judge, per video, averaged over videos."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torchmetrics import Metric

from edtalk.nn.judges import SyncNetV2
from metrics.functional.sync import (
    VSHIFT,
    SyncScore,
    audio_to_int16_scale,
    audio_windows,
    mfcc,
    num_windows,
    offset_distances,
    sync_score,
    video_windows,
)

CROP = 224


def syncnet_input(frames: torch.Tensor) -> torch.Tensor:
    """T x 3 x 224 x 224 RGB in [-1, 1] -> the BGR 0..255 values syncnet_python feeds (uint8-rounded)."""
    if frames.shape[-2:] != (CROP, CROP):
        raise ValueError(
            f"LSE expects 224 x 224 face crops, got {tuple(frames.shape[-2:])}; see face_crops_224"
        )
    return ((frames.float().clamp(-1, 1) + 1) * 127.5).round().flip(-3)


@torch.no_grad()
def score_video(
    net: SyncNetV2, frames: torch.Tensor, wav: np.ndarray, vshift: int = VSHIFT, batch_size: int = 20
) -> SyncScore:
    """One video's AV offset, LSE-D and LSE-C.

    Args:
        net: the SyncNet v2 judge.
        frames: T x 3 x 224 x 224 RGB face crops in [-1, 1] at 25 fps.
        wav: float mono 16 kHz samples in [-1, 1].
    """
    video = syncnet_input(frames)
    cc = torch.from_numpy(mfcc(audio_to_int16_scale(wav)).T.astype(np.float32))  # -> 13 x N
    n = num_windows(len(video), len(wav))
    device = next(net.parameters()).device
    vfeat, afeat = [], []
    for i in range(0, n, batch_size):
        j = min(n, i + batch_size)
        vfeat.append(net.forward_lip(video_windows(video, i, j).to(device)).cpu())
        afeat.append(net.forward_aud(audio_windows(cc, i, j).to(device)).cpu())
    if not vfeat:
        return sync_score(torch.zeros(0, 2 * vshift + 1), vshift)
    return sync_score(offset_distances(torch.cat(vfeat), torch.cat(afeat), vshift), vshift)


class LSE(Metric):
    """Lip-sync error: `update(frames T x 3 x 224 x 224, wav)` per video; compute -> {"lse_d", "lse_c"}.

    `last` holds the previous video's `SyncScore` (offset, LSE-D, LSE-C, mdist).
    """

    higher_is_better = None  # LSE-D: lower is better, LSE-C: higher is better (see `directions`)
    directions: ClassVar[dict[str, bool]] = {"lse_d": False, "lse_c": True}
    is_differentiable = False
    full_state_update = False
    lse_d: torch.Tensor
    lse_c: torch.Tensor
    count: torch.Tensor

    def __init__(
        self,
        net: SyncNetV2 | None = None,
        weights: str | Path | None = None,
        vshift: int = VSHIFT,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.net = net if net is not None else SyncNetV2.from_file(weights)
        self.vshift = vshift
        for name in ("lse_d", "lse_c"):
            self.add_state(name, torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.last: SyncScore | None = None

    def update(self, frames: torch.Tensor, wav: np.ndarray) -> None:
        self.last = score_video(self.net, frames, wav, self.vshift)
        self.lse_d += self.last.lse_d
        self.lse_c += self.last.lse_c
        self.count += 1

    def compute(self) -> dict[str, torch.Tensor]:
        n = self.count.clamp_min(1)
        return {"lse_d": self.lse_d / n, "lse_c": self.lse_c / n}

    def train(self, mode: bool = True) -> LSE:
        return super().train(False)


def face_crops_224(frames: np.ndarray, detector: Any = None, crop_scale: float = 0.4) -> torch.Tensor:
    """syncnet_python's crop: T x H x W x 3 uint8 -> T x 3 x 224 x 224 in [-1, 1].

    `detector=None`: the frames already are face crops (our clips) and are only resized to 224. Otherwise
    face boxes (`DlibFace.box`: the dlib frontal detector standing in for S3FD) are median-filtered
    over 13 frames; each crop is centred on the box, of half-size s = max side / 2, spanning
    [y - s, y + s(1 + 2 cs)] x [x - s(1 + cs), x + s(1 + cs)] on a frame padded with value 110.
    """
    import cv2
    from scipy.signal import medfilt

    if detector is None:
        resized = np.stack([cv2.resize(f, (CROP, CROP), interpolation=cv2.INTER_AREA) for f in frames])
        return torch.from_numpy(resized).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    boxes = _boxes(frames, detector)
    s = medfilt(np.maximum(boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]) / 2, 13)
    cy = medfilt((boxes[:, 1] + boxes[:, 3]) / 2, 13)
    cx = medfilt((boxes[:, 0] + boxes[:, 2]) / 2, 13)
    out = []
    for t, image in enumerate(frames):
        bs = s[t]
        bsi = int(bs * (1 + 2 * crop_scale))
        padded = np.pad(image, ((bsi, bsi), (bsi, bsi), (0, 0)), constant_values=110)
        my, mx = cy[t] + bsi, cx[t] + bsi
        y0, y1 = int(my - bs), int(my + bs * (1 + 2 * crop_scale))
        x0, x1 = int(mx - bs * (1 + crop_scale)), int(mx + bs * (1 + crop_scale))
        face = padded[y0:y1, x0:x1]
        out.append(cv2.resize(face, (CROP, CROP)))
    arr = torch.from_numpy(np.stack(out))  # -> T x 224 x 224 x 3 uint8
    return arr.permute(0, 3, 1, 2).float() / 127.5 - 1.0


def _boxes(frames: np.ndarray, detector: Any) -> np.ndarray:
    """T x 4 boxes x1, y1, x2, y2 (float), the previous box reused when detection fails."""
    rects, rect = [], None
    for image in frames:
        rect = detector.box(image, rect)
        rects.append((rect.left(), rect.top(), rect.right(), rect.bottom()))
    return np.asarray(rects, np.float64)
