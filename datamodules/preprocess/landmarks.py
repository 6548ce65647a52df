"""Face detectors and 68-point landmark predictors behind one small interface.

Backends (a config choice, `get_backend(name)`):

* ``dlib`` (default): dlib's HOG frontal face detector and the 68-point shape predictor that ships
  inside the ``face-recognition-models`` wheel. Nothing is downloaded.
* ``face_alignment``: S3FD + FAN as used upstream (``face-alignment`` package), with weights read from
  local files only; a missing file raises an error naming it and the folder it belongs in.

Boxes are float ``x1, y1, x2, y2`` in pixels; landmarks are 68 x 2 float32 ``(x, y)`` in pixels.
"""

from __future__ import annotations

import importlib.util
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np

FAN_FILES = ("s3fd-619a316812.pth", "2DFAN4-cd938726ad.zip")


class FaceBackend(Protocol):
    """What preprocessing needs from a face detector + landmark predictor."""

    name: str

    def detect(self, image: np.ndarray) -> np.ndarray:
        """Faces in an RGB uint8 image as N x 4 boxes (x1, y1, x2, y2), largest first."""
        ...

    def landmarks(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        """68 x 2 float32 landmarks of the face in `box` (x1, y1, x2, y2)."""
        ...


def package_model_dir() -> Path:
    """Folder of the dlib model files inside the installed ``face-recognition-models`` wheel."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "package face-recognition-models is not installed; `pip install face-recognition-models` "
            "(it ships dlib's shape_predictor_68_face_landmarks.dat)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models"


class DlibBackend:
    """dlib HOG detector (upsampling `upsample` times) + 68-point shape predictor."""

    name = "dlib"

    def __init__(self, upsample: int = 0) -> None:
        import dlib

        model = package_model_dir() / "shape_predictor_68_face_landmarks.dat"
        if not model.is_file():
            raise FileNotFoundError(f"{model} missing; reinstall face-recognition-models")
        self.upsample = upsample
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(model))
        self._dlib = dlib

    def detect(self, image: np.ndarray) -> np.ndarray:
        rects = self._detector(np.ascontiguousarray(image), self.upsample)
        boxes = np.array([[r.left(), r.top(), r.right(), r.bottom()] for r in rects], np.float32).reshape(
            -1, 4
        )
        return _largest_first(boxes)

    def landmarks(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        x1, y1, x2, y2 = (round(float(v)) for v in box)
        shape = self._predictor(np.ascontiguousarray(image), self._dlib.rectangle(x1, y1, x2, y2))
        return np.array([[p.x, p.y] for p in shape.parts()], np.float32)


class FaceAlignmentBackend:
    """S3FD detector + FAN 2D landmarks (``face-alignment``) from local weight files.

    Args:
        weights_dir: folder holding ``s3fd-619a316812.pth`` and ``2DFAN4-cd938726ad.zip`` (default:
            torch hub's checkpoint folder, ``$TORCH_HOME/hub/checkpoints``, where face-alignment looks).
        device: torch device string.
    """

    name = "face_alignment"

    def __init__(self, weights_dir: str | Path | None = None, device: str = "cpu") -> None:
        folder = Path(weights_dir) if weights_dir else default_fan_dir()
        missing = [f for f in FAN_FILES if not (folder / f).is_file()]
        if missing:
            raise FileNotFoundError(
                f"face_alignment backend needs {', '.join(missing)} in {folder} (nothing is downloaded at run "
                "time); copy them there from https://www.adrianbulat.com/downloads/python-fan/ (or point "
                "`edtalk preprocess --backend-weights DIR` at their folder), or use --backend dlib"
            )
        if importlib.util.find_spec("face_alignment") is None:
            raise ModuleNotFoundError(
                "face_alignment backend needs `pip install --no-deps face-alignment==1.4.1` (its opencv-python "
                "requirement clashes with opencv-python-headless; `make setup` does this); or use --backend dlib"
            )
        import face_alignment

        with _hub_checkpoints(folder):  # FAN is looked up in <hub>/checkpoints: point that at `folder`
            self._fa = face_alignment.FaceAlignment(
                face_alignment.LandmarksType.TWO_D,
                device=device,
                flip_input=False,
                face_detector="sfd",
                face_detector_kwargs={"path_to_detector": str(folder / FAN_FILES[0])},
            )

    def detect(self, image: np.ndarray) -> np.ndarray:
        faces = self._fa.face_detector.detect_from_image(image.copy())
        boxes = np.array([f[:4] for f in faces if f[4] > 0.5], np.float32).reshape(-1, 4)
        return _largest_first(boxes)

    def landmarks(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        # float64: the package assigns the box scale into a torch tensor, which refuses numpy float32
        points = self._fa.get_landmarks_from_image(image, detected_faces=[np.asarray(box, np.float64)])
        return np.asarray(points[0][:, :2], np.float32)


@contextmanager
def _hub_checkpoints(folder: Path) -> Iterator[None]:
    """torch.hub's dir set, for the block, to a temporary one whose ``checkpoints`` is `folder`.

    face-alignment reads FAN from ``<hub dir>/checkpoints/<file>`` and would download it when absent;
    the file was checked to exist in `folder`, so nothing is downloaded and no other folder is read.
    """
    import torch.hub

    previous = torch.hub.get_dir()
    with tempfile.TemporaryDirectory(prefix="edtalk-fan-") as tmp:
        (Path(tmp) / "checkpoints").symlink_to(folder.resolve(), target_is_directory=True)
        torch.hub.set_dir(tmp)
        try:
            yield
        finally:
            torch.hub.set_dir(previous)


def default_fan_dir() -> Path:
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def _largest_first(boxes: np.ndarray) -> np.ndarray:
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return boxes[np.argsort(-area)]


@lru_cache(maxsize=4)
def get_backend(name: str = "dlib", **kwargs: Any) -> FaceBackend:
    """A cached backend instance (one per process) by name: ``dlib`` or ``face_alignment``."""
    if name == "dlib":
        return DlibBackend(**kwargs)
    if name == "face_alignment":
        return FaceAlignmentBackend(**kwargs)
    raise ValueError(f"unknown face backend {name!r}; choose 'dlib' or 'face_alignment'")
