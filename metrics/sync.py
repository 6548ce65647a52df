"""LSE-D / LSE-C with the syncnet_python judge, per video, averaged over videos."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torchmetrics import Metric

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
from metrics.judges import SyncNetV2

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
    net: SyncNetV2,
    frames: torch.Tensor,
    wav: np.ndarray,
    vshift: int = VSHIFT,
    batch_size: int = 20,
    channels_last: bool = False,
) -> SyncScore:
    """One video's AV offset, LSE-D and LSE-C.

    Args:
        net: the SyncNet v2 judge.
        frames: T x 3 x 224 x 224 RGB face crops in [-1, 1] at 25 fps.
        wav: float mono 16 kHz samples in [-1, 1].
        channels_last: the lip windows in channels-last (NDHWC) layout: oneDNN's faster 3-D
            convolutions on CPU; distances agree with the default layout to ~1e-6.
    """
    video = syncnet_input(frames)
    cc = torch.from_numpy(mfcc(audio_to_int16_scale(wav)).T.astype(np.float32))  # -> 13 x N
    n = num_windows(len(video), len(wav))
    device = next(net.parameters()).device
    vfeat, afeat = [], []
    for i in range(0, n, batch_size):
        j = min(n, i + batch_size)
        windows = video_windows(video, i, j).to(device)
        if channels_last:
            windows = windows.contiguous(memory_format=torch.channels_last_3d)
        vfeat.append(net.forward_lip(windows).cpu())
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
        channels_last: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.net = net if net is not None else SyncNetV2.from_file(weights)
        self.vshift, self.channels_last = vshift, channels_last
        for name in ("lse_d", "lse_c"):
            self.add_state(name, torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.last: SyncScore | None = None

    def update(self, frames: torch.Tensor, wav: np.ndarray) -> None:
        self.last = score_video(self.net, frames, wav, self.vshift, channels_last=self.channels_last)
        self.lse_d += self.last.lse_d
        self.lse_c += self.last.lse_c
        self.count += 1

    def compute(self) -> dict[str, torch.Tensor]:
        n = self.count.clamp_min(1)
        return {"lse_d": self.lse_d / n, "lse_c": self.lse_c / n}

    def train(self, mode: bool = True) -> LSE:
        return super().train(False)


def face_crops_224(
    frames: np.ndarray, detector: Any = None, crop_scale: float = 0.4, boxes: list[Any] | None = None
) -> torch.Tensor:
    """syncnet_python's crop: T x H x W x 3 uint8 -> T x 3 x 224 x 224 in [-1, 1].

    `detector=None`: the frames already are face crops (our clips) and are only resized to 224, bilinearly
    (cv2.resize's default, as syncnet_python's crop resizes; area interpolation differs by ~0.7 %). Otherwise
    face boxes (`DlibFace.box`: the dlib frontal detector standing in for S3FD) are median-filtered
    over 13 frames; each crop is centred on the box, of half-size s = max side / 2, spanning
    [y - s, y + s(1 + 2 cs)] x [x - s(1 + cs), x + s(1 + cs)] on a frame padded with value 110.
    `boxes`: the frames' boxes as `DlibFace.boxes` gives them (detected once, shared with CSIM and LMD),
    instead of detecting with `detector`.
    """
    import cv2

    if detector is None and boxes is None:
        resized = np.stack([cv2.resize(f, (CROP, CROP), interpolation=cv2.INTER_LINEAR) for f in frames])
        return torch.from_numpy(resized).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return _crop_around(frames, _boxes(frames, detector) if boxes is None else _xyxy(boxes), crop_scale)


def _crop_around(frames: np.ndarray, boxes: np.ndarray, crop_scale: float) -> torch.Tensor:
    """The 224-px crops of `face_crops_224` around T x 4 boxes."""
    import cv2
    from scipy.signal import medfilt

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
        out.append(cv2.resize(face, (CROP, CROP), interpolation=cv2.INTER_LINEAR))
    arr = torch.from_numpy(np.stack(out))  # -> T x 224 x 224 x 3 uint8
    return arr.permute(0, 3, 1, 2).float() / 127.5 - 1.0


def _boxes(frames: np.ndarray, detector: Any) -> np.ndarray:
    """T x 4 boxes x1, y1, x2, y2 (float), the previous box reused when detection fails."""
    rects, rect = [], None
    for image in frames:
        rect = detector.box(image, rect)
        rects.append(rect)
    return _xyxy(rects)


def _xyxy(rects: list[Any]) -> np.ndarray:
    """dlib rectangles -> T x 4 x1, y1, x2, y2 (float)."""
    return np.asarray([(r.left(), r.top(), r.right(), r.bottom()) for r in rects], np.float64)


# -- inputs as syncnet_python prepares them ---------------------------------------------------------
CROPS = ("s3fd", "dlib", "none")


@dataclass
class LSEInputs:
    """What `score_video` takes, plus where it came from.

    frames: T x 3 x 224 x 224 RGB in [-1, 1] at 25 fps; wav: mono float 16 kHz aligned with frame 0;
    start_frame: the first 25 fps frame of the face track (0 for `none` / `dlib`); tracks: face tracks found.
    """

    frames: torch.Tensor
    wav: np.ndarray
    start_frame: int = 0
    tracks: int = 1


def prepare_lse_inputs(
    video: str | Path,
    crop: str = "s3fd",
    audio: str | Path | None = None,
    s3fd_weights: str | Path | None = None,
    device: str = "cpu",
    min_track: int = 100,
    detector: Any = None,
    batch_size: int = 0,
    frames: np.ndarray | None = None,
) -> LSEInputs:
    """A video's LSE inputs as syncnet_python's run_pipeline.py + SyncNetInstance.evaluate make them.

    * frames: converted to 25 fps choosing frames as `ffmpeg -r 25` does (`edtalk.io.ffmpeg_rate_indices`);
    * sound: `read_audio` (`-async 1` start alignment to the picture, FFmpeg's `-ac 1` downmix, 16 kHz);
    * crop: `s3fd` (the paper protocol): S3FD + IoU tracks + 13-frame median smoothing + crop scale 0.4
      (`metrics.syncnet_crop`); the longest track is scored with the audio of its frames
      (`ffmpeg -ss start -to end` on the track's span); `dlib`: dlib's detector on every frame, same
      smoothing and crop; `none`: the video already is a face crop, only resized to 224 bilinearly.

    Args:
        s3fd_weights: face-alignment's `s3fd-619a316812.pth` (file or folder) for `crop="s3fd"`.
        min_track: a track needs more faces than this (syncnet_python: 100 frames = 4 s).
        detector: a ready detector with `detect(rgb) -> N x 5` (overrides `s3fd_weights`).
        batch_size: S3FD on that many frames per call (`metrics.syncnet_crop.detect_all`; 0: one).
        frames: the video's frames as `read_video_ffmpeg_rate(video)` gives them, when the caller has
            decoded it already (`metrics.eat.DecodedVideo.at_25fps`); None: decoded here.
    """
    from edtalk.io import read_audio, read_video_ffmpeg_rate

    if crop not in CROPS:
        raise ValueError(f"unknown LSE crop {crop!r}; choose one of {', '.join(CROPS)}")
    frames = read_video_ffmpeg_rate(video) if frames is None else frames
    wav = read_audio(audio or video)
    if crop == "none":
        return LSEInputs(face_crops_224(frames), wav)
    if crop == "dlib":
        from metrics.judges import DlibFace

        detector = DlibFace()
        crops = face_crops_224(frames, detector)
        if detector.misses == len(frames):
            raise ValueError(
                f"{video}: no face found by dlib in any of its {len(frames)} frames; give a video with a "
                "visible face, or --crop none when the frames already are face crops"
            )
        return LSEInputs(crops, wav)
    return _s3fd_inputs(frames, wav, video, s3fd_weights, device, min_track, detector, batch_size)


def _s3fd_inputs(
    frames: np.ndarray,
    wav: np.ndarray,
    video: str | Path,
    weights: str | Path | None,
    device: str,
    min_track: int,
    detector: Any,
    batch_size: int = 0,
) -> LSEInputs:
    from metrics.syncnet_crop import TrackConfig, crop_track, detect_all, s3fd_from, track_faces

    cfg = TrackConfig(min_track=min_track)
    detector = detector if detector is not None else s3fd_from(weights, device)
    tracks = track_faces(detect_all(frames, detector, batch_size), cfg)
    if not tracks:
        raise ValueError(
            f"{video}: no face track of more than {min_track} frames with a box side over "
            f"{cfg.min_face_size:.0f} px (syncnet_python's --min_track / --min_face_size); "
            "a shorter clip needs a smaller min_track (edtalk lse --min-track N)"
        )
    track = tracks[0]
    first, last = int(track.frames[0]), int(track.frames[-1])
    crops = torch.from_numpy(crop_track(frames[first : last + 1], track.boxes, cfg.crop_scale, cfg.smooth))
    spf = 16000 // 25
    segment = wav[first * spf : (last + 1) * spf]  # ffmpeg -ss first/25 -to (last+1)/25
    return LSEInputs(crops.permute(0, 3, 1, 2).float() / 127.5 - 1.0, segment, first, len(tracks))
