"""The judges (frozen evaluation networks) each protocol loads, and the metrics a missing one skips."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from metrics.judges import (
    ArcFace,
    DlibFace,
    InceptionFID,
    JudgeWeightsMissing,
    LPIPSAlex,
    SyncNetV2,
    load_emotion_fan,
)
from metrics.judges.files import loaders, weight_files, weights_dir
from metrics.table import METRICS

PROTOCOLS = ("ours", "eat", "syncnet")
WEIGHT_FILES = weight_files()  # {judge: file name under --weights-dir}, from `metrics.judges.files`


@dataclass
class Judges:
    """The judges that could be loaded, and why the others could not."""

    syncnet: SyncNetV2 | None = None
    inception: InceptionFID | None = None
    alexnet: LPIPSAlex | None = None
    arcface: ArcFace | None = None
    dlib: DlibFace | None = None
    emotion: torch.nn.Module | None = None
    emotion_fan: torch.nn.Module | None = None
    inception_imagenet: torch.nn.Module | None = None
    s3fd: Path | None = None  # syncnet_python's face detector weights (paper-protocol LSE crop)
    missing: dict[str, str] = field(default_factory=dict)
    protocol: str = "ours"
    files: dict[str, Path] = field(default_factory=dict)  # the files the loaded judges came from

    def skipped(self) -> dict[str, str]:
        """{metric: reason} for the protocol's metrics whose judge is missing."""
        needs = PROTOCOL_METRIC_JUDGES.get(self.protocol)
        if needs is None:
            return {m: self.missing[j] for m, (_, j) in METRICS.items() if j and j in self.missing}
        return {m: self.missing[j] for m, js in needs.items() for j in js if j in self.missing}


_PAPER_LSE = {"lse_d": ("syncnet", "s3fd"), "lse_c": ("syncnet", "s3fd")}
# metric -> judges it needs, for the presets (ours: METRICS)
PROTOCOL_METRIC_JUDGES: dict[str, dict[str, tuple[str, ...]]] = {
    "eat": {"fid": ("inception_imagenet",), **_PAPER_LSE, "emotion_fan_acc": ("emotion_fan",)},
    "syncnet": dict(_PAPER_LSE),
}


# judges each protocol loads (the others are not part of it, so not reported as skipped)
PROTOCOL_JUDGES = {
    "ours": ("syncnet", "inception", "alexnet", "arcface", "dlib", "emotion"),
    "eat": ("syncnet", "s3fd", "inception_imagenet", "emotion_fan"),
    "syncnet": ("syncnet", "s3fd"),
}


def load_judges(
    folder: str | Path | None = None,
    files: dict[str, str | Path] | None = None,
    protocol: str = "ours",
    emotion_judge: str | Path | None = None,
) -> Judges:
    """Load the protocol's judges whose files exist under `folder` (names in WEIGHT_FILES; `files`
    overrides). `emotion_judge`: an Emotion-FAN file to use in any protocol (an error when unreadable)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"--protocol must be one of {PROTOCOLS}, got {protocol!r}")
    root = weights_dir(folder)
    paths = {k: Path((files or {}).get(k) or root / name) for k, name in WEIGHT_FILES.items()}
    judges = Judges(protocol=protocol)
    rows = loaders()  # {judge: its row in the table of judge files}
    for name in PROTOCOL_JUDGES[protocol]:
        try:
            setattr(judges, name, rows[name].load(paths.get(name)))
            if name in paths and paths[name].is_file():
                judges.files[name] = paths[name]
        except JudgeWeightsMissing as err:
            judges.missing[name] = str(err)
    if emotion_judge is not None:  # named explicitly: a missing or wrong file is an error, not a skip
        judges.emotion_fan = load_emotion_fan(Path(emotion_judge))  # JudgeWeightsMissing when absent
        judges.files["emotion_fan"] = Path(emotion_judge)
        judges.missing.pop("emotion_fan", None)
    return judges
