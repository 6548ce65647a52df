"""The one table of judge files: what each file is, what uses it, where it is looked up, where to get it.

Everything that names a judge file reads this table: `edtalk weights status` (`weight_entries`),
`metrics.runner.load_judges` (file names and loaders), the missing-file errors of every judge
(`require_file`), and the weight kinds the judges register (`where`). Files we name live in one folder:
`--weights-dir` / `--dir`, else `$EDTALK_WEIGHTS`, else `./weights`; files that ship inside a pip
package are found there. Nothing is downloaded at run time.

Columns (`JudgeFile`):

* `name`: the row's id (the weight kind's name where the file has one, `edtalk weights inspect --kind`);
* `file`: the file name in the weights folder (or inside `package`);
* `judge`: the `Judges` attribute / `load_judges(files={judge: path})` key it feeds;
* `used_for`, `expected` (what is known of the file), `where` (how to get it);
* `flag`: the command-line option that names the file directly, besides the weights folder;
* `loader`: `"module:attribute"` called with the file's path, returning the judge (empty: the file is
  read by another row's loader, e.g. LPIPS's linear layers by the AlexNet row's).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FOLDER_ENV = "EDTALK_WEIGHTS"


@dataclass(frozen=True)
class JudgeFile:
    """One row of the table (see the module docstring for the columns)."""

    name: str
    file: str
    judge: str
    used_for: str
    what: str
    where: str
    expected: str = ""
    kind: str | None = None
    flag: str = "--weights-dir"
    loader: str = ""
    package: tuple[str, ...] = ()  # (package, *parts) when the file ships inside a pip package
    title: str = ""  # shown instead of `file` by `edtalk weights status`

    @property
    def shown(self) -> str:
        return self.title or self.file

    def path(self, folder: str | Path | None = None) -> Path | None:
        """Where the file is looked up: inside its package (None: package not installed), else the folder."""
        if self.package:
            return package_file(self.package[0], *self.package[1:], self.file)
        return weights_dir(folder) / self.file

    def load(self, path: str | Path | None) -> Any:
        """The judge, through this row's loader (`JudgeWeightsMissing` when the file is absent)."""
        if not self.loader:
            raise ValueError(f"judge file {self.name!r} has no loader; it is read with another row's file")
        module, _, attr = self.loader.partition(":")
        target: Any = importlib.import_module(module)
        for part in attr.split("."):
            target = getattr(target, part)
        return target(path)


_FRM = "face_recognition_models"
_DLIB_WHERE = "pip install -c constraints.txt face-recognition-models dlib-bin"
_EAT_DOWNLOAD = (
    "EAT's evaluation download, github.com/yuangan/evaluation_eat (code.zip: code/model_training_name/)"
)

JUDGE_FILES: tuple[JudgeFile, ...] = (
    JudgeFile(
        "syncnet_v2",
        "syncnet_v2.model",
        "syncnet",
        "LSE-D/LSE-C",
        "SyncNet v2 weights (LSE judge)",
        "syncnet_python's download_model.sh: http://www.robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model",
        "state dict of syncnet_python's S (13.6M parameters)",
        kind="syncnet_v2",
        flag="--weights (edtalk lse)",
        loader="metrics.judges.syncnet_v2:SyncNetV2.from_file",
    ),
    JudgeFile(
        "inception_fid",
        "weights-inception-2015-12-05-6726825d.pth",
        "inception",
        "FID",
        "InceptionV3-FID weights",
        "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
        "weights-inception-2015-12-05-6726825d.pth (same weights as pytorch-fid)",
        "sha256 starts with 6726825d",
        loader="metrics.judges.inception_fid:InceptionFID",
    ),
    JudgeFile(
        "alexnet",
        "alexnet-owt-7be5be79.pth",
        "alexnet",
        "LPIPS trunk",
        "AlexNet weights (LPIPS trunk)",
        "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth (torchvision AlexNet)",
        "sha256 starts with 7be5be79",
        kind="alexnet",
        loader="metrics.judges.lpips_alex:LPIPSAlex.from_files",
    ),
    JudgeFile(
        "lpips_linear",
        "alex.pth",
        "alexnet",
        "LPIPS",
        "the lpips package (LPIPS linear layers)",
        "pip install -c constraints.txt lpips",
        "ships with the lpips package",
        package=("lpips", "weights", "v0.1"),
        title="lpips alex.pth (v0.1 linear layers)",
    ),
    JudgeFile(
        "arcface",
        "arcface_backbone.pth",
        "arcface",
        "CSIM (optional; dlib otherwise)",
        "ArcFace weights (CSIM)",
        "insightface arcface_torch model zoo (e.g. ms1mv3_arcface_r100_fp16/backbone.pth)",
        "arcface_torch iResNet-18/34/50/100 state dict",
        kind="arcface",
        loader="metrics.judges.arcface:ArcFace.from_file",
    ),
    JudgeFile(
        "emotion_classifier",
        "emotion_classifier.ckpt",
        "emotion",
        "emotion accuracy",
        "emotion classifier",
        "train it: `edtalk fit emotion_classifier` (our checkpoint format)",
        "edtalk checkpoint of kind emotion_classifier",
        loader="metrics.judges.emotion_classifier:load_emotion_classifier",
    ),
    JudgeFile(
        "emotion_fan",
        "self_relation-attention_61_84.3655",
        "emotion_fan",
        "Acc_emo (Emotion-FAN; --protocol eat, --emotion-judge)",
        "Emotion-FAN",
        "self_relation-attention_61_84.3655 (Emotion-FAN fine-tuned on MEAD) from "
        + _EAT_DOWNLOAD
        + "; put it in the weights folder or pass --emotion-judge PATH",
        "kind emotion_fan: {epoch, state_dict (128 module.* keys), accuracy, name}",
        kind="emotion_fan",
        flag="--emotion-judge (edtalk evaluate)",
        loader="metrics.judges.emotion_fan:load_emotion_fan",
    ),
    JudgeFile(
        "inception_v3_imagenet",
        "inception_v3_google-0cc3c7bd.pth",
        "inception_imagenet",
        "FID of --protocol eat",
        "ImageNet InceptionV3 weights (EAT FID)",
        "torchvision's ImageNet InceptionV3 state dict (Inception_V3_Weights.IMAGENET1K_V1): "
        "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth",
        "kind inception_v3_imagenet: torchvision InceptionV3 state dict, sha256 starts with 0cc3c7bd",
        kind="inception_v3_imagenet",
        loader="metrics.judges.inception_imagenet:InceptionImageNet.from_file",
    ),
    JudgeFile(
        "s3fd",
        "s3fd-619a316812.pth",
        "s3fd",
        "LSE crop of --protocol eat/syncnet (syncnet_python's S3FD)",
        "S3FD weights",
        "face-alignment's release: https://www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth",
        "face-alignment's S3FD state dict",
        flag="--s3fd (edtalk lse)",
        loader="metrics.judges.files:existing_file",
    ),
    *(
        JudgeFile(
            name,
            file,
            "dlib",
            "CSIM/LMD/LSE crop (dlib)",
            file,
            _DLIB_WHERE,
            "ships",
            flag="",
            loader="metrics.judges.dlib_face:load_dlib" if name == "dlib_68" else "",
            package=(_FRM, "models"),
        )
        for name, file in (
            ("dlib_embedding", "dlib_face_recognition_resnet_model_v1.dat"),
            ("dlib_68", "shape_predictor_68_face_landmarks.dat"),
            ("dlib_5", "shape_predictor_5_face_landmarks.dat"),
        )
    ),
)
BY_NAME: dict[str, JudgeFile] = {row.name: row for row in JUDGE_FILES}


def judge_file(name: str) -> JudgeFile:
    """The row `name`, or a `KeyError` listing the rows."""
    if name not in BY_NAME:
        raise KeyError(f"no judge file {name!r}; known: {', '.join(BY_NAME)}")
    return BY_NAME[name]


def where(name: str) -> str:
    """Where to get the judge file `name` (said by every error about it)."""
    return judge_file(name).where


def loaders() -> dict[str, JudgeFile]:
    """{judge: the row whose loader builds it} (one per judge)."""
    return {row.judge: row for row in JUDGE_FILES if row.loader}


def weight_files() -> dict[str, str]:
    """{judge: file name in the weights folder} for the judges read from that folder."""
    return {row.judge: row.file for row in JUDGE_FILES if row.loader and not row.package}


def weights_dir(path: str | Path | None = None) -> Path:
    """`path`, else `$EDTALK_WEIGHTS`, else `./weights`."""
    return Path(path or os.environ.get(FOLDER_ENV) or "weights")


def package_file(package: str, *parts: str) -> Path | None:
    """A path inside the installed `package` (found without importing it), None when it is not installed."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))).joinpath(*parts)


class JudgeWeightsMissing(FileNotFoundError):
    """A judge's weight file is absent; the message names the file and where to get it."""


def require_file(path: str | Path | None, name: str) -> Path:
    """`path` as a Path, or `JudgeWeightsMissing` naming judge file `name` and where to get it (the table)."""
    if path is None or not Path(path).is_file():
        row = judge_file(name)
        raise JudgeWeightsMissing(f"{row.what} not found at {path}; get it: {row.where}")
    return Path(path)


def existing_file(path: str | Path | None) -> Path:
    """A judge that is a file read later (S3FD's detector weights): the path, checked to exist."""
    return require_file(path, "s3fd")


@dataclass
class WeightEntry:
    """One line of `edtalk weights status`: name, what uses it, where it is looked up, what is known, source."""

    name: str
    used_for: str
    path: Path | None
    expected: str
    where: str


def weight_entries(folder: str | Path | None = None) -> list[WeightEntry]:
    """Every judge file, in table order; files we name are looked up under `folder` (see `weights_dir`)."""
    return [WeightEntry(r.shown, r.used_for, r.path(folder), r.expected, r.where) for r in JUDGE_FILES]
