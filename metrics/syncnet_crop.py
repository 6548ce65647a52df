"""syncnet_python's face crop (`run_pipeline.py`): S3FD detections, IoU tracks, median-smoothed square crops.

What runs, with syncnet_python's constants (its argparse defaults):
* detection: S3FD on the RGB frame resized by `facedet_scale` = 0.25 (bilinear), faces with confidence
  > 0.9 after the detector's own NMS (0.3, scores > 0.05, at most 750), then NMS at IoU 0.1. The network
  and its weights are face-alignment's S3FD (`s3fd-619a316812.pth`, read from a local file, fed BGR minus
  (104, 117, 123) as that file expects); syncnet_python ships another S3FD conversion (`sfd_face.pth`),
  so boxes can differ by a few pixels.
* tracking (`track_shot`): greedy tracks; a face joins the track when it is within `num_failed_det` = 25
  frames of the track's last face and overlaps it with IoU > 0.5; a track is kept when it has more than
  `min_track` = 100 faces and a mean box side > `min_face_size` = 100 px, its boxes linearly interpolated
  over missed frames. The whole clip is one shot (talking-head clips have no cuts; syncnet_python first
  splits scenes with PySceneDetect).
* crop (`crop_video`): box half-size s = max(w, h) / 2 and centre, each median-filtered over 13 frames
  (`scipy.signal.medfilt`, zero padded at the ends as there); the frame padded by int(s (1 + 2 cs)) with
  value 110; rows [y - s, y + s (1 + 2 cs)), columns [x - s (1 + cs), x + s (1 + cs)) with cs = 0.4,
  resized to 224 x 224 bilinearly (cv2.resize's default).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

S3FD_FILE = "s3fd-619a316812.pth"
CROP = 224
PAD_VALUE = 110


@dataclass(frozen=True)
class TrackConfig:
    """syncnet_python run_pipeline.py defaults."""

    facedet_scale: float = 0.25
    conf_threshold: float = 0.9
    iou_threshold: float = 0.5
    num_failed_det: int = 25
    min_track: int = 100
    min_face_size: float = 100.0
    crop_scale: float = 0.4
    smooth: int = 13


class FaceDetector(Protocol):
    def detect(self, image: np.ndarray) -> np.ndarray:
        """RGB uint8 H x W x 3 -> N x 5 (x1, y1, x2, y2, score) in image pixels."""
        ...


class S3FD:
    """face-alignment's S3FD network from a local weight file, with syncnet_python's detection settings."""

    def __init__(
        self, weights: str | Path, device: str = "cpu", scale: float = 0.25, conf_threshold: float = 0.9
    ) -> None:
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(
                f"S3FD weights not found: {path}; copy {S3FD_FILE} there (face-alignment's S3FD, "
                "https://www.adrianbulat.com/downloads/python-fan/), or use --crop dlib / --no-crop"
            )
        if importlib.util.find_spec("face_alignment") is None:
            raise ModuleNotFoundError(
                "--crop s3fd needs `pip install --no-deps face-alignment==1.4.1` (`make setup` does this)"
            )
        from face_alignment.detection.sfd.sfd_detector import SFDDetector

        try:
            self.net = SFDDetector(device, path_to_detector=str(path)).face_detector
        except (RuntimeError, KeyError) as err:
            raise ValueError(f"{path} is not an S3FD state dict of face-alignment's layout: {err}") from err
        self.device, self.scale, self.conf_threshold = device, scale, conf_threshold

    def _input(self, image: np.ndarray) -> np.ndarray:
        """RGB frame -> the network's input: resized by `scale` (bilinear), BGR minus the mean, h x w x 3."""
        import cv2

        small = cv2.resize(image, (0, 0), fx=self.scale, fy=self.scale, interpolation=cv2.INTER_LINEAR)
        return small[..., ::-1].astype(np.float32) - np.array([104, 117, 123], np.float32)

    def detect(self, image: np.ndarray) -> np.ndarray:
        import torch

        h, w = image.shape[:2]
        x = torch.from_numpy(self._input(image))
        with torch.no_grad():
            outputs = self.net(x.permute(2, 0, 1)[None].to(self.device))  # 1 x 3 x h x w, BGR - mean
        dets = decode_s3fd([o[0].cpu().numpy() for o in outputs], (w, h), (x.shape[1], x.shape[0]))
        return postprocess(dets, self.conf_threshold)

    def detect_batch(self, images: np.ndarray, channels_last: bool = False) -> list[np.ndarray]:
        """N x H x W x 3 RGB frames of one size -> per frame N_i x 5, the network run once on the batch.

        `channels_last`: the batch in channels-last layout (faster on CPU; scores and boxes agree with
        the default layout to ~1e-6).
        """
        import torch

        h, w = images.shape[1:3]
        x = torch.from_numpy(np.stack([self._input(image) for image in images])).permute(0, 3, 1, 2)
        x = x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        with torch.no_grad():
            outputs = self.net(x.to(self.device))  # N x 3 x h x w, BGR - mean
        net_size = (x.shape[3], x.shape[2])
        levels = [o.cpu().numpy() for o in outputs]
        return [
            postprocess(decode_s3fd([lv[i] for lv in levels], (w, h), net_size), self.conf_threshold)
            for i in range(len(images))
        ]


def decode_s3fd(outputs: list[np.ndarray], size: tuple[int, int], net_size: tuple[int, int]) -> np.ndarray:
    """S3FD's 6 (cls 2 x h x w, reg 4 x h x w) levels -> N x 5 boxes in `size` pixels, scores > 0.05.

    Level k has stride 4 * 2^k and square anchors of 4 strides centred on cells; offsets decode with
    variances (0.1, 0.2), as syncnet_python's `PriorBox` + `decode` and face-alignment do.
    """
    boxes = []
    nw, nh = net_size
    for k in range(len(outputs) // 2):
        cls, reg = outputs[2 * k], outputs[2 * k + 1]
        e = np.exp(cls - cls.max(0, keepdims=True))
        score = e[1] / e.sum(0)  # softmax over (background, face)
        stride = 4 * 2**k
        ys, xs = np.nonzero(score > 0.05)
        if not len(ys):
            continue
        anchor = np.stack([(xs + 0.5) * stride, (ys + 0.5) * stride], 1)  # -> N x 2 (cx, cy) in net pixels
        loc = reg[:, ys, xs].T  # -> N x 4
        centre = anchor + loc[:, :2] * 0.1 * 4 * stride
        wh = 4 * stride * np.exp(loc[:, 2:] * 0.2)
        xyxy = np.concatenate([centre - wh / 2, centre + wh / 2], 1) / [nw, nh, nw, nh] * [*size, *size]
        boxes.append(np.concatenate([xyxy, score[ys, xs, None]], 1))
    return np.concatenate(boxes) if boxes else np.zeros((0, 5))


def nms(dets: np.ndarray, threshold: float) -> np.ndarray:
    """Greedy NMS (highest score first; a box goes when its IoU with a kept one exceeds `threshold`)."""
    order = np.argsort(-dets[:, 4], kind="stable")
    keep = []
    while len(order):
        i, rest = order[0], order[1:]
        keep.append(i)
        order = rest[box_iou(dets[i, :4], dets[rest, :4]) <= threshold]
    return np.asarray(keep, np.int64)


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one x1, y1, x2, y2 box with each of N boxes (areas without the +1 of pixel counts)."""
    w = np.clip(np.minimum(box[2], boxes[..., 2]) - np.maximum(box[0], boxes[..., 0]), 0, None)
    h = np.clip(np.minimum(box[3], boxes[..., 3]) - np.maximum(box[1], boxes[..., 1]), 0, None)
    inter = w * h
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
    return inter / (area + areas - inter)


def postprocess(dets: np.ndarray, conf_threshold: float = 0.9) -> np.ndarray:
    """The detector's NMS (0.3, top 750) -> scores > `conf_threshold` -> syncnet_python's NMS at 0.1."""
    dets = dets[nms(dets, 0.3)[:750]] if len(dets) else dets
    dets = dets[dets[:, 4] > conf_threshold]
    return dets[nms(dets, 0.1)] if len(dets) else dets


@dataclass
class Track:
    """Frame indices (consecutive) and their x1, y1, x2, y2 boxes (interpolated where detection missed)."""

    frames: np.ndarray
    boxes: np.ndarray


def track_faces(detections: list[np.ndarray], cfg: TrackConfig = TrackConfig()) -> list[Track]:
    """syncnet_python's `track_shot` over per-frame detections (each N x >= 4), longest track first.

    Tracks are built greedily one after another from the faces not yet taken. Like the reference, a face
    taken from a frame makes the next face of that frame be skipped in the same pass (it iterates a list
    it removes from).
    """
    remaining = [[np.asarray(d[:4], np.float64) for d in frame] for frame in detections]
    tracks = []
    while True:
        track = _one_track(remaining, cfg)
        if not track:
            break
        kept = _finish_track(track, cfg)
        if kept is not None:
            tracks.append(kept)
    return sorted(tracks, key=lambda t: -len(t.frames))


def _one_track(remaining: list[list[np.ndarray]], cfg: TrackConfig) -> list[tuple[int, np.ndarray]]:
    track: list[tuple[int, np.ndarray]] = []
    for t, faces in enumerate(remaining):
        i = 0
        while i < len(faces):
            if track and t - track[-1][0] > cfg.num_failed_det:
                break
            if not track or box_iou(track[-1][1], faces[i][None])[0] > cfg.iou_threshold:
                track.append((t, faces.pop(i)))
            i += 1
    return track


def _finish_track(track: list[tuple[int, np.ndarray]], cfg: TrackConfig) -> Track | None:
    """Interpolated boxes over the track's span, or None when too short or too small."""
    if len(track) <= cfg.min_track:
        return None
    from scipy.interpolate import interp1d

    frames = np.array([t for t, _ in track])
    boxes = np.stack([b for _, b in track])
    span = np.arange(frames[0], frames[-1] + 1)
    filled = np.stack([interp1d(frames, boxes[:, j])(span) for j in range(4)], 1)  # -> T x 4
    side = max(np.mean(filled[:, 2] - filled[:, 0]), np.mean(filled[:, 3] - filled[:, 1]))
    return Track(span, filled) if side > cfg.min_face_size else None


def crop_track(
    frames: np.ndarray, boxes: np.ndarray, crop_scale: float = 0.4, smooth: int = 13
) -> np.ndarray:
    """syncnet_python's `crop_video`: T x H x W x 3 uint8 frames + T x 4 boxes -> T x 224 x 224 x 3 uint8."""
    import cv2
    from scipy.signal import medfilt

    s = medfilt(np.maximum(boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]) / 2, smooth)
    cy = medfilt((boxes[:, 1] + boxes[:, 3]) / 2, smooth)
    cx = medfilt((boxes[:, 0] + boxes[:, 2]) / 2, smooth)
    out = np.empty((len(frames), CROP, CROP, 3), np.uint8)
    for t, image in enumerate(frames):
        bs = s[t]
        bsi = int(bs * (1 + 2 * crop_scale))
        padded = np.pad(image, ((bsi, bsi), (bsi, bsi), (0, 0)), constant_values=PAD_VALUE)
        my, mx = cy[t] + bsi, cx[t] + bsi
        face = padded[
            int(my - bs) : int(my + bs * (1 + 2 * crop_scale)),
            int(mx - bs * (1 + crop_scale)) : int(mx + bs * (1 + crop_scale)),
        ]
        out[t] = cv2.resize(face, (CROP, CROP), interpolation=cv2.INTER_LINEAR)
    return out


def detect_all(frames: np.ndarray, detector: FaceDetector, batch_size: int = 0) -> list[np.ndarray]:
    """Per-frame detections (each N x 5). `batch_size` > 0: `batch_size` frames per network call
    (channels-last) where the detector has `detect_batch` (S3FD); 0: one frame per call."""
    batched = getattr(detector, "detect_batch", None)
    if batch_size <= 0 or batched is None:
        return [detector.detect(np.ascontiguousarray(f)) for f in frames]
    out: list[np.ndarray] = []
    for i in range(0, len(frames), batch_size):
        out += batched(np.ascontiguousarray(frames[i : i + batch_size]), channels_last=True)
    return out


def s3fd_from(weights: str | Path | None, device: str = "cpu") -> Any:
    """The S3FD detector from `weights` (a file, or a folder holding `s3fd-619a316812.pth`)."""
    if weights is None:  # where face-alignment (and `preprocess --backend face_alignment`) keeps it
        import torch.hub

        weights = Path(torch.hub.get_dir()) / "checkpoints" / S3FD_FILE
    path = Path(weights)
    return S3FD(path / S3FD_FILE if path.is_dir() else path, device)
