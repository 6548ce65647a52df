"""The list behind `edtalk weights status`: every judge file the evaluation suite can use."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from edtalk.nn.judges import WHERE
from metrics.runner import WEIGHT_FILES, weights_dir


@dataclass
class WeightEntry:
    """One file: name, what uses it, where it is looked up, what is known of it, where to get it."""

    name: str
    used_for: str
    path: Path | None
    expected: str
    where: str


def _package_file(package: str, *parts: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))).joinpath(*parts)


def weight_entries(folder: str | Path | None = None) -> list[WeightEntry]:
    """All judge files; files we name are looked up under `folder` ($EDTALK_WEIGHTS or ./weights)."""
    root = weights_dir(folder)
    frm = "face_recognition_models"
    return [
        WeightEntry(
            WEIGHT_FILES["syncnet"],
            "LSE-D/LSE-C",
            root / WEIGHT_FILES["syncnet"],
            "state dict of syncnet_python's S (13.6M parameters)",
            WHERE["syncnet_v2"],
        ),
        WeightEntry(
            WEIGHT_FILES["inception"],
            "FID",
            root / WEIGHT_FILES["inception"],
            "sha256 starts with 6726825d",
            WHERE["inception_fid"],
        ),
        WeightEntry(
            WEIGHT_FILES["alexnet"],
            "LPIPS trunk",
            root / WEIGHT_FILES["alexnet"],
            "sha256 starts with 7be5be79",
            WHERE["alexnet"],
        ),
        WeightEntry(
            "lpips alex.pth (v0.1 linear layers)",
            "LPIPS",
            _package_file("lpips", "weights", "v0.1", "alex.pth"),
            "ships with the lpips package",
            "pip install -c constraints.txt lpips",
        ),
        WeightEntry(
            WEIGHT_FILES["arcface"],
            "CSIM (optional; dlib otherwise)",
            root / WEIGHT_FILES["arcface"],
            "arcface_torch iResNet-18/34/50/100 state dict",
            WHERE["arcface"],
        ),
        WeightEntry(
            WEIGHT_FILES["emotion"],
            "emotion accuracy",
            root / WEIGHT_FILES["emotion"],
            "edtalk checkpoint of kind emotion_classifier",
            WHERE["emotion_classifier"],
        ),
        WeightEntry(
            WEIGHT_FILES["emotion_fan"],
            "Acc_emo (Emotion-FAN; --protocol eat, --emotion-judge)",
            root / WEIGHT_FILES["emotion_fan"],
            "kind emotion_fan: {epoch, state_dict (128 module.* keys), accuracy, name}",
            "EAT's evaluation download (github.com/yuangan/evaluation_eat, code.zip: code/model_training_name/)",
        ),
        WeightEntry(
            WEIGHT_FILES["inception_imagenet"],
            "FID of --protocol eat",
            root / WEIGHT_FILES["inception_imagenet"],
            "kind inception_v3_imagenet: torchvision InceptionV3 state dict, sha256 starts with 0cc3c7bd",
            "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth",
        ),
        WeightEntry(
            WEIGHT_FILES["s3fd"],
            "LSE crop of --protocol eat/syncnet (syncnet_python's S3FD)",
            root / WEIGHT_FILES["s3fd"],
            "face-alignment's S3FD state dict",
            "face-alignment's release: https://www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth",
        ),
        *[
            WeightEntry(
                f, "CSIM/LMD/LSE crop (dlib)", _package_file(frm, "models", f), "ships", WHERE["dlib"]
            )
            for f in (
                "dlib_face_recognition_resnet_model_v1.dat",
                "shape_predictor_68_face_landmarks.dat",
                "shape_predictor_5_face_landmarks.dat",
            )
        ],
    ]
