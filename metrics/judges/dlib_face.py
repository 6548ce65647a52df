"""dlib's face judges (they ship in `face-recognition-models`): detector, 68/5-point landmarks, 128-d embedding.

Used for CSIM (embedding), M-/F-LMD (68 points) and the default LSE face crop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from metrics.judges.base import JudgeWeightsMissing, require_file
from metrics.judges.files import JUDGE_FILES, where

_NAMES = {row.file: row.name for row in JUDGE_FILES if row.judge == "dlib"}


def dlib_model_file(file: str) -> Path:
    """Path of a model inside the installed `face_recognition_models` package (without importing it)."""
    row = next(r for r in JUDGE_FILES if r.name == _NAMES.get(file))
    path = row.path()
    if path is None:
        raise JudgeWeightsMissing(f"face-recognition-models is not installed; {where(row.name)}")
    return require_file(path, row.name)


class DlibFace:
    """dlib frontal detector + 68/5-point shape predictors + the 128-d ResNet face embedding.

    Frames are RGB uint8 H x W x 3. When no face is found the previous frame's box is reused, and for the
    first frames the whole image (our clips are face crops); `misses` counts such frames.
    """

    def __init__(self) -> None:
        import dlib

        self._dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.shape68 = dlib.shape_predictor(str(dlib_model_file("shape_predictor_68_face_landmarks.dat")))
        self.shape5 = dlib.shape_predictor(str(dlib_model_file("shape_predictor_5_face_landmarks.dat")))
        self._encoder: Any = None
        self._resnet: Any = None
        self.misses = 0

    def box(self, image: np.ndarray, previous: Any = None) -> Any:
        """Largest detected face (dlib.rectangle), else `previous`, else the whole image."""
        dets = self.detector(image, 0)  # faces >= 80 px (our crops); upsample once only when none is found
        if not len(dets):
            dets = self.detector(image, 1)
        if len(dets):
            return max(dets, key=lambda r: r.width() * r.height())
        self.misses += 1
        if previous is not None:
            return previous
        h, w = image.shape[:2]
        return self._dlib.rectangle(0, 0, w - 1, h - 1)

    def boxes(self, frames: np.ndarray) -> list[Any]:
        """One box per frame (T x H x W x 3 uint8), the previous box reused when detection fails."""
        out, rect = [], None
        for image in frames:
            rect = self.box(image, rect)
            out.append(rect)
        return out

    def landmarks(self, frames: np.ndarray, boxes: list[Any] | None = None) -> np.ndarray:
        """T x H x W x 3 uint8 -> T x 68 x 2 float32 pixel coordinates."""
        boxes = boxes if boxes is not None else self.boxes(frames)
        out = [[(p.x, p.y) for p in self.shape68(image, r).parts()] for image, r in zip(frames, boxes)]
        return np.asarray(out, np.float32).reshape(len(frames), 68, 2)

    def embeddings(
        self, frames: np.ndarray, boxes: list[Any] | None = None, batched: bool = False
    ) -> np.ndarray:
        """T x H x W x 3 uint8 -> T x 128 float32 (dlib_face_recognition_resnet_model_v1).

        `batched`: the same network run by PyTorch on batches of face chips (`DlibFaceResNet`: dlib's
        numbers to ~1e-6, ~10x faster on CPU); otherwise dlib's `compute_face_descriptor` per frame.
        """
        if batched:
            return self._embeddings_batched(frames, boxes if boxes is not None else self.boxes(frames))
        if self._encoder is None:
            path = dlib_model_file("dlib_face_recognition_resnet_model_v1.dat")
            self._encoder = self._dlib.face_recognition_model_v1(str(path))
        boxes = boxes if boxes is not None else self.boxes(frames)
        out = []
        for image, rect in zip(frames, boxes):
            shape = self.shape5(image, rect)
            out.append(np.asarray(self._encoder.compute_face_descriptor(image, shape), np.float32))
        return np.stack(out)

    def _embeddings_batched(self, frames: np.ndarray, boxes: list[Any], batch: int = 32) -> np.ndarray:
        import torch

        from metrics.judges.dlib_resnet import CHIP, PADDING, DlibFaceResNet

        if self._resnet is None:
            self._resnet = DlibFaceResNet(dlib_model_file("dlib_face_recognition_resnet_model_v1.dat"))
        # the chip dlib's compute_face_descriptor makes (5-point alignment, 150 px, padding 0.25)
        chips = [
            self._dlib.get_face_chip(im, self.shape5(im, r), CHIP, PADDING) for im, r in zip(frames, boxes)
        ]
        x = torch.from_numpy(np.stack(chips))  # -> T x 150 x 150 x 3 uint8
        return torch.cat([self._resnet(x[i : i + batch]) for i in range(0, len(x), batch)]).numpy()


def load_dlib(path: str | Path | None = None) -> DlibFace:
    """The table's loader: `DlibFace()` (its files are found inside their package, `path` is unused)."""
    return DlibFace()
