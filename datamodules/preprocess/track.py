"""Face tracking over a clip: detections on every k-th frame, IoU association, interpolated boxes.

Frames without a detection get a box interpolated from their neighbours (never an index shift:
every frame keeps its own box and later its own landmarks). A clip is rejected when most detection
frames show no face, or when most show several faces.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from datamodules.preprocess.landmarks import FaceBackend

NO_FACE = "no face"
SEVERAL_FACES = "several faces"


class SkipClip(Exception):
    """A clip cannot be used; `reason` is one of the report's fixed reasons."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


@dataclass
class Track:
    """Per-frame face boxes (T x 4, interpolated) and landmarks at the detection frames (N x 68 x 2)."""

    boxes: np.ndarray
    det_frames: np.ndarray
    det_landmarks: np.ndarray


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes `a` (N x 4) against one box `b` (4,)."""
    x1, y1 = np.maximum(a[:, 0], b[0]), np.maximum(a[:, 1], b[1])
    x2, y2 = np.minimum(a[:, 2], b[2]), np.minimum(a[:, 3], b[3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda r: (r[..., 2] - r[..., 0]) * (r[..., 3] - r[..., 1])  # noqa: E731
    return np.asarray(inter / np.maximum(area(a) + area(b) - inter, 1e-9))


def _detect(backend: FaceBackend, frame: np.ndarray, max_side: int, min_side: int = 360) -> np.ndarray:
    """Boxes in `frame`'s pixels, detected on a copy scaled down to `max_side`. A small frame (below
    `min_side`: a QCIF/CIF recording, a thumbnail) where no face is found is tried again at twice its size,
    as `crop_image` upsamples once: dlib's HOG detector misses faces under ~80 px, most of a 176 x 144
    video's face. Frames where a face is found are not rescaled, so their boxes do not change."""
    import cv2

    longest = max(frame.shape[:2])
    scale = min(1.0, max_side / longest)
    if scale < 1.0:
        small = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        return backend.detect(small) / scale
    boxes = backend.detect(frame)
    if len(boxes) or longest >= min_side:
        return boxes
    return backend.detect(cv2.resize(frame, None, fx=2.0, fy=2.0, interpolation=cv2.INTER_LINEAR)) / 2.0


def _associate(detections: list[np.ndarray], min_iou: float) -> list[np.ndarray | None]:
    """Follow one face: the largest at the first detection, then the best IoU with the previous box."""
    chosen: list[np.ndarray | None] = []
    prev: np.ndarray | None = None
    for boxes in detections:
        pick = None
        if len(boxes) and prev is None:
            pick = boxes[0]
        elif len(boxes) and prev is not None:
            overlaps = iou(boxes, prev)
            if overlaps.max() >= min_iou:
                pick = boxes[int(overlaps.argmax())]
        chosen.append(pick)
        prev = pick if pick is not None else prev
    return chosen


def track_face(
    frames: np.ndarray, backend: FaceBackend, every: int = 5, max_side: int = 640, min_iou: float = 0.25
) -> Track:
    """Track the face of a T x H x W x 3 clip.

    Raises:
        SkipClip: ``no face`` / ``several faces`` when most detection frames say so.
    """
    t = len(frames)
    idx = np.unique(np.r_[np.arange(0, t, every), t - 1])
    detections = [_detect(backend, frames[i], max_side) for i in idx]
    counts = np.array([len(d) for d in detections])
    if (counts == 0).mean() > 0.5:
        raise SkipClip(NO_FACE, f"{int((counts == 0).sum())} of {len(idx)} sampled frames have no face")
    if (counts >= 2).mean() >= 0.5:
        raise SkipClip(SEVERAL_FACES, f"{int(np.median(counts))} faces in most sampled frames")
    chosen = _associate(detections, min_iou)
    keep = [k for k, box in enumerate(chosen) if box is not None]
    det_frames = idx[keep]
    det_boxes = np.stack([b for b in chosen if b is not None])  # N x 4
    det_landmarks = np.stack([backend.landmarks(frames[i], b) for i, b in zip(det_frames, det_boxes)])
    all_t = np.arange(t)
    boxes = np.stack([np.interp(all_t, det_frames, det_boxes[:, c]) for c in range(4)], 1)  # -> T x 4
    return Track(boxes.astype(np.float32), det_frames, det_landmarks)
