"""Face crops: the FOMM-style tube crop for videos and the template alignment for single images.

Video (SPEC 7, ``crop_video.py``): one square box per clip around the union of the per-frame face
boxes (the "tube"), so the head moves inside a fixed frame. We build the per-frame face box from the
68 landmarks rather than from a detector box, so both backends give the same framing; the margin
(`TUBE_SCALE`, `TUBE_SHIFT`) is set so that a still face lands where the M003 template puts it
(landmark extent 133 px wide of 256, centre 31 px below the crop centre). Out-of-frame parts are
filled by edge replication instead of clipping the box (clipping makes the crop non-square).

Image (SPEC 7, ``crop_image2.py``): a similarity transform fitted from template points 0-46 to the
detected points 0-46, then the image is sampled on the 256² template grid (bilinear, black border).
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

import numpy as np

from datamodules.preprocess.landmarks import get_backend

CROP_SIZE = 256
TUBE_SCALE = 256 / 133  # crop side / landmark-box width of the template face
TUBE_SHIFT = -31.5 / 256  # crop centre above the landmark-box centre, in crop sides


class FaceCountError(ValueError):
    """An image has no face or several faces where exactly one is needed."""

    def __init__(self, count: int, what: str = "image") -> None:
        self.count = count
        reason = "no face found" if count == 0 else f"{count} faces found"
        super().__init__(f"{reason} in the {what}; exactly one face is needed (crop it to one person first)")


@lru_cache(maxsize=1)
def template_68() -> np.ndarray:
    """The M003 68-point template in the 256² crop frame (68 x 2 float64, x/y pixels)."""
    text = resources.files("datamodules").joinpath("assets/crop_template_M003.json").read_text()
    return np.asarray(json.loads(text)["values"], np.float64)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares 2x3 similarity (rotation, uniform scale, translation) mapping `src` onto `dst`.

    Umeyama's closed form without reflection; `src`, `dst` are N x 2 with N >= 2.
    """
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rot = u @ sign @ vt
    scale = float(np.trace(np.diag(sig) @ sign) / max(s.var(0).sum(), 1e-12))
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def apply_affine(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """N x 2 (or ... x 2) points through a 2x3 affine matrix."""
    pts = np.asarray(points, np.float64)
    return (pts @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    full = np.vstack([matrix, [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]


def crop_image(image: np.ndarray, backend: str = "dlib") -> np.ndarray:
    """Align a photo to the 68-point template: RGB uint8 H x W x 3 -> 256 x 256 x 3 uint8.

    Args:
        image: the photo (RGB uint8).
        backend: face backend name (see `datamodules.preprocess.landmarks.get_backend`).

    Raises:
        FaceCountError: when the photo holds no face or more than one face.
    """
    import cv2

    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"crop_image expects an RGB uint8 H x W x 3 image, got {image.shape} {image.dtype}")
    face = get_backend(backend)
    boxes = face.detect(image)
    if len(boxes) == 0 and backend == "dlib":  # crop_image2 upsamples once: small faces
        boxes = get_backend(backend, upsample=1).detect(image)
    if len(boxes) != 1:
        raise FaceCountError(len(boxes), "source image")
    points = face.landmarks(image, boxes[0])
    to_image = similarity_transform(template_68()[:47], points[:47])  # template frame -> photo
    return cv2.warpAffine(
        image,
        to_image,
        (CROP_SIZE, CROP_SIZE),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )


def landmark_box(points: np.ndarray) -> np.ndarray:
    """Tight x1, y1, x2, y2 box of ... x 68 x 2 landmarks (-> ... x 4)."""
    return np.concatenate([points.min(-2), points.max(-2)], -1)


def tube_crop_box(points: np.ndarray, scale: float = TUBE_SCALE, shift: float = TUBE_SHIFT) -> np.ndarray:
    """One square crop box (x1, y1, side) for a clip from its T x 68 x 2 landmarks.

    The union of the per-frame landmark boxes is the tube; the square side is `scale` times its
    larger extent and its centre sits `shift` sides below the tube centre (negative: above).
    """
    boxes = landmark_box(points)  # T x 4
    x1, y1 = boxes[:, 0].min(), boxes[:, 1].min()
    x2, y2 = boxes[:, 2].max(), boxes[:, 3].max()
    side = scale * max(x2 - x1, y2 - y1)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2 + shift * side
    return np.array([cx - side / 2, cy - side / 2, side], np.float64)


def crop_matrix(box: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """2x3 affine from source-frame pixels into the `size`² crop of `box` = (x1, y1, side)."""
    x1, y1, side = box
    s = size / side
    return np.array([[s, 0.0, -x1 * s], [0.0, s, -y1 * s]])


def crop_frames(frames: np.ndarray, matrix: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """T x H x W x 3 uint8 -> T x size x size x 3 through `matrix` (area-like filtering, edge fill)."""
    import cv2

    shrink = matrix[0, 0] < 1.0
    flags = cv2.INTER_AREA if shrink else cv2.INTER_CUBIC
    out = np.empty((len(frames), size, size, 3), np.uint8)
    for i, frame in enumerate(frames):
        if shrink:  # warpAffine does not area-filter: resize the box region first, then place it
            out[i] = _crop_resize(frame, matrix, size, flags)
        else:
            out[i] = cv2.warpAffine(frame, matrix, (size, size), flags=flags, borderMode=cv2.BORDER_REPLICATE)
    return out


def _crop_resize(frame: np.ndarray, matrix: np.ndarray, size: int, flags: int) -> np.ndarray:
    import cv2

    s = matrix[0, 0]
    x1, y1 = -matrix[0, 2] / s, -matrix[1, 2] / s
    side = size / s
    ix1, iy1 = int(np.floor(x1)), int(np.floor(y1))
    ix2, iy2 = int(np.ceil(x1 + side)), int(np.ceil(y1 + side))
    h, w = frame.shape[:2]
    pad = ((max(0, -iy1), max(0, iy2 - h)), (max(0, -ix1), max(0, ix2 - w)), (0, 0))
    region = np.pad(frame[max(0, iy1) : iy2, max(0, ix1) : ix2], pad, mode="edge")
    scale = size / side
    small = cv2.resize(
        region, (round(region.shape[1] * scale), round(region.shape[0] * scale)), interpolation=flags
    )
    # sub-pixel placement of the box origin within the resized region
    offset = np.array([[1.0, 0.0, -(x1 - ix1) * scale], [0.0, 1.0, -(y1 - iy1) * scale]])
    return cv2.warpAffine(
        small, offset, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


def mouth_boxes(points: np.ndarray, margin: float = 0.15) -> np.ndarray:
    """T x 4 mouth boxes (x1, y1, x2, y2) around landmarks 48-67, enlarged by `margin` of the mouth width."""
    box = landmark_box(points[..., 48:68, :])
    pad = margin * (box[..., 2:3] - box[..., 0:1])
    return np.concatenate([box[..., :2] - pad, box[..., 2:] + pad], -1).astype(np.float32)
