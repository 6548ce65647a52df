"""Evaluation runner: score result videos of one or more methods against a split's ground-truth clips.

Result folders hold one video per clip named `<clip id>.<ext>` (mp4/avi/mov/mkv/webm). Videos are read
at 25 fps and resized to the ground-truth size; the first min(T_pred, T_gt) frames are compared. Per
clip: PSNR, SSIM, LPIPS (all frames), FID (5 evenly spaced frames per clip pooled over the split;
`fid_frames=0`: all frames), CSIM (dlib 128-d, or ArcFace; source = the clip's first ground-truth
frame), M-LMD / F-LMD (dlib 68 points on both videos), LSE-D / LSE-C (syncnet_python protocol; the
result's own audio when it has some, else the ground-truth audio), emotion accuracy (classifier
checkpoint, label from the clip id). A metric whose judge is unavailable is skipped with a reason.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edtalk.io import from_uint8, probe_video, read_audio, read_video
from metrics.emotion import EmotionAccuracy
from metrics.fid import FID
from metrics.functional.emotion import EMOTIONS
from metrics.functional.fid import evenly_spaced
from metrics.identity import CSIM
from metrics.image import LPIPS, PSNR, SSIM
from metrics.judges import (
    ArcFace,
    DlibFace,
    InceptionFID,
    JudgeWeightsMissing,
    LPIPSAlex,
    SyncNetV2,
    load_emotion_fan,
)
from metrics.judges import load_emotion_classifier as load_emotion_classifier  # re-exported
from metrics.judges.files import loaders, weight_files, weights_dir
from metrics.landmarks import LMD
from metrics.sync import LSE, face_crops_224

VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm")
SPLITS = ("builtin", "mead_test", "hdtf_test")
# metric -> (higher is better, judge it needs)
METRICS: dict[str, tuple[bool, str]] = {
    "psnr": (True, ""),
    "ssim": (True, ""),
    "lpips": (False, "alexnet"),
    "fid": (False, "inception"),
    "csim": (True, "dlib"),
    "m_lmd": (False, "dlib"),
    "f_lmd": (False, "dlib"),
    "lse_d": (False, "syncnet"),
    "lse_c": (True, "syncnet"),
    "emotion_acc": (True, "emotion"),
    "emotion_fan_acc": (True, "emotion_fan"),
}
# table headers where the metric name alone would be ambiguous
LABELS = {"emotion_acc": "acc_emo (ours-classifier)", "emotion_fan_acc": "acc_emo (Emotion-FAN)"}
PROTOCOLS = ("ours", "eat", "syncnet")
WEIGHT_FILES = weight_files()  # {judge: file name under --weights-dir}, from `metrics.judges.files`


# -- ground truth --------------------------------------------------------------------------------
@dataclass
class GroundTruth:
    """One ground-truth clip: frames T x H x W x 3 uint8, 16 kHz audio, metadata."""

    clip_id: str
    frames: np.ndarray
    wav: np.ndarray
    meta: dict[str, Any]
    lmk: np.ndarray | None = None  # dlib landmarks of `frames`, filled on first use
    cache: dict[str, Any] = field(default_factory=dict)  # per-clip results shared by methods (EAT crops)


def _is_mead(clip_id: str) -> bool:
    return len(clip_id.split("#")) == 4


_EAT_NAME = re.compile(r"^(?:([MW]\d{3})_)?([MW]\d{3})_([A-Za-z]+)_(\d+)_(\d{3})$")


def eat_clip_id(name: str) -> str | None:
    """Our MEAD clip id of an EAT video name (`W015_W015_sad_3_005` or `W015_sad_3_005` ->
    `W015#sad#level_3#005`; the emotion may be abbreviated to its first three letters); None otherwise."""
    match = _EAT_NAME.match(name)
    if match is None:
        return None
    _, speaker, emotion, level, number = match.groups()
    full = next((e for e in EMOTIONS if e[:3] == emotion[:3].lower()), None)
    return None if full is None else f"{speaker}#{full}#level_{level}#{number}"


def read_clip_list(path: str | Path) -> list[str]:
    """Clip ids from a protocol file: a JSON list, or one id per line (``#`` inside ids is kept; blank
    lines and lines starting with ``//`` are ignored; a trailing video extension is dropped). EAT's
    names (`W015_W015_sad_3_005`) are mapped to our MEAD clip ids (`eat_clip_id`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"clip list {path} not found")
    text = path.read_text()
    if text.lstrip().startswith("["):
        ids = [str(c) for c in json.loads(text)]
    else:
        ids = [
            line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("//")
        ]
    ids = [re.sub(r"\.(mp4|avi|mov|mkv|webm)$", "", c) for c in ids]
    ids = [eat_clip_id(c) or c for c in ids]
    if not ids:
        raise ValueError(f"clip list {path} is empty")
    return ids


def ground_truth(
    split: str, root: str | Path | None = None, clips: Sequence[str] | None = None
) -> Iterator[GroundTruth]:
    """Test clips of a split, from a shard directory (`builtin`: built on first use).

    Args:
        split: "builtin", "mead_test" or "hdtf_test".
        root: shard directory (required for mead_test / hdtf_test: the output of `edtalk preprocess`).
        clips: only these clip ids (a protocol's list, e.g. EAT's MEAD test videos), in stored order;
            an id missing from the test shards is an error naming it.
    """
    from datamodules.shards import iter_clips

    if split not in SPLITS:
        raise ValueError(f"--split must be one of {SPLITS}, got {split!r}")
    if split == "builtin" and root is None:
        from datamodules.synthetic import ensure_builtin

        root = ensure_builtin()
    if root is None:
        raise ValueError(
            f"--split {split} needs --gt SHARD_DIR (preprocess MEAD/HDTF with `edtalk preprocess`)"
        )
    wanted = set(clips) if clips is not None else None
    if clips is not None:
        _check_listed(root, clips)

    def keep(key: str) -> bool:
        if wanted is not None:
            return key in wanted
        return split == "builtin" or _is_mead(key) == (split == "mead_test")

    for clip in iter_clips(root, "test"):  # stored order: decoded clips are never held back
        if keep(clip.key):
            yield GroundTruth(clip.key, clip.frames(range(clip.num_frames)), clip.wav(), clip.meta)


def _check_listed(root: str | Path, ids: Sequence[str]) -> None:
    from datamodules.shards import read_index

    stored = {c for s in read_index(root)["shards"] if s["split"] == "test" for c in s["clips"]}
    missing = [c for c in ids if c not in stored]
    if missing:
        raise ValueError(
            f"{len(missing)} listed clips are not in the test shards of {root}: {missing[:5]}; "
            "preprocess them (`edtalk preprocess`) or drop them from the list"
        )


def find_videos(folder: str | Path) -> dict[str, Path]:
    """{clip id: video path} for the videos in `folder` (clip id = file name without extension; EAT's
    names such as `W015_W015_sad_3_005.mp4` count as our MEAD clip id)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"result folder not found: {folder}")
    videos = [p for p in sorted(folder.iterdir()) if p.suffix.lower() in VIDEO_EXTS and p.is_file()]
    return {(eat_clip_id(p.stem) or p.stem): p for p in videos}


# -- judges --------------------------------------------------------------------------------------
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
        except JudgeWeightsMissing as err:
            judges.missing[name] = str(err)
    if emotion_judge is not None:  # named explicitly: a missing or wrong file is an error, not a skip
        judges.emotion_fan = load_emotion_fan(Path(emotion_judge))  # JudgeWeightsMissing when absent
        judges.missing.pop("emotion_fan", None)
    return judges


# -- scoring -------------------------------------------------------------------------------------
class MethodScorer:
    """Accumulates every available metric for one method over the clips it is given.

    `csim_frames`: CSIM from that many evenly spaced frames per clip (None: every frame, the protocol);
    an estimate for quick runs, where the face descriptor is most of the evaluation's time.
    """

    def __init__(
        self, judges: Judges, fid_frames: int = 5, lse_crop: bool = True, csim_frames: int | None = None
    ) -> None:
        if csim_frames is not None and csim_frames < 1:
            raise ValueError(f"csim_frames must be >= 1 or None (every frame), got {csim_frames}")
        self.j, self.fid_frames, self.lse_crop, self.csim_frames = judges, fid_frames, lse_crop, csim_frames
        self.m: dict[str, Any] = {"psnr": PSNR(), "ssim": SSIM()}
        if judges.alexnet is not None:
            self.m["lpips"] = LPIPS(judges.alexnet)
        if judges.inception is not None:
            self.m["fid"] = FID(judges.inception)
        if judges.dlib is not None:
            self.m.update(csim=CSIM(), m_lmd=LMD("mouth"), f_lmd=LMD("face"))
        if judges.syncnet is not None:
            self.m["lse"] = LSE(judges.syncnet)
        if judges.emotion is not None:
            self.m["emotion_acc"] = EmotionAccuracy()
        self.fan = _FanJudge(judges.emotion_fan) if judges.emotion_fan is not None else None
        self.rows: list[dict[str, Any]] = []

    def add_video(self, gt: GroundTruth, video: Path) -> dict[str, Any]:
        """Score one result video (read at 25 fps, resized to the ground-truth size)."""
        frames, wav = load_result(video, gt)
        return self.add(gt, frames, wav)

    @torch.no_grad()
    def add(self, gt: GroundTruth, pred: np.ndarray, wav: np.ndarray) -> dict[str, Any]:
        """Score one clip (pred: T x H x W x 3 uint8 at the GT size); returns its per-clip row."""
        t = min(len(pred), len(gt.frames))
        p_u8, g_u8 = pred[:t], gt.frames[:t]
        p, g = from_uint8(p_u8), from_uint8(g_u8)
        row: dict[str, Any] = {"clip_id": gt.clip_id, "frames": t}
        for name in ("psnr", "ssim", "lpips"):
            if name in self.m:
                self.m[name].update(p, g)
                row[name] = self.m[name].last
        if "fid" in self.m:
            idx = evenly_spaced(t, self.fid_frames) if self.fid_frames else list(range(t))
            self.m["fid"].update(g[idx], real=True)
            self.m["fid"].update(p[idx], real=False)
        if self.j.dlib is not None:
            row.update(self._face(p_u8, gt))
        if "lse" in self.m:
            frames = face_crops_224(p_u8, self.j.dlib if self.lse_crop else None)
            self.m["lse"].update(frames, wav)
            row.update({k: v for k, v in self.m["lse"].last.as_dict().items()})
        if "emotion_acc" in self.m and self.j.emotion is not None:
            logits = self.j.emotion(p[None])  # 1 x T x 3 x H x W -> 1 x 8
            self.m["emotion_acc"].update(logits[:, None], _label(gt.clip_id))
            row["emotion_pred"] = EMOTIONS[int(logits.argmax())]
        if self.fan is not None:
            row.update(self.fan.add(gt.clip_id, p_u8))
        self.rows.append(row)
        return row

    def _face(self, p_u8: np.ndarray, gt: GroundTruth) -> dict[str, float]:
        dlib = self.j.dlib
        assert dlib is not None
        boxes = dlib.boxes(p_u8)
        lp, lg = torch.from_numpy(dlib.landmarks(p_u8, boxes)), torch.from_numpy(self._gt_landmarks(gt))
        g_u8 = gt.frames[: len(p_u8)]
        lg = lg[: len(p_u8)]
        self.m["m_lmd"].update(lp, lg)
        self.m["f_lmd"].update(lp, lg)
        idx = evenly_spaced(len(p_u8), self.csim_frames) if self.csim_frames else list(range(len(p_u8)))
        if self.j.arcface is not None:
            from metrics.judges import arcface_crops

            src = self.j.arcface(arcface_crops(g_u8[:1], lg[:1].numpy()))
            emb = self.j.arcface(arcface_crops(p_u8[idx], lp[idx].numpy()))
        else:
            src = torch.from_numpy(dlib.embeddings(g_u8[:1]))
            emb = torch.from_numpy(dlib.embeddings(p_u8[idx], [boxes[i] for i in idx]))
        self.m["csim"].update(src[0], emb)
        return {"csim": self.m["csim"].last, "m_lmd": self.m["m_lmd"].last, "f_lmd": self.m["f_lmd"].last}

    def _gt_landmarks(self, gt: GroundTruth) -> np.ndarray:
        """Ground-truth landmarks of the whole clip, computed once and shared by every method."""
        if gt.lmk is None:
            assert self.j.dlib is not None
            gt.lmk = self.j.dlib.landmarks(gt.frames)
        return gt.lmk

    def summary(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, metric in self.m.items():
            if name == "lse":
                if int(metric.count):
                    out.update({k: float(v) for k, v in metric.compute().items()})
            elif name == "fid":
                out["fid"] = float(metric.compute()) if int(metric.fake_n) >= 2 else math.nan
            else:
                out[name] = float(metric.compute())
        if self.fan is not None:
            out.update(self.fan.summary())
        return out


class _FanJudge:
    """Emotion-FAN accuracy (%) over clips, on EAT's face-chip inputs of the frames it is given."""

    def __init__(self, net: torch.nn.Module) -> None:
        from metrics.eat import EmotionFANInputs

        self.net, self.prep = net, EmotionFANInputs()
        self.hits: list[bool] = []

    @torch.no_grad()
    def add(self, clip_id: str, frames: np.ndarray) -> dict[str, Any]:
        from metrics.eat import emotion_fan_label
        from metrics.judges.emotion_fan import EMOTION_FAN_LABELS

        faces = self.prep(frames)
        if not len(faces):
            return {"emotion_fan_pred": "no face"}
        pred = int(self.net(faces).argmax())
        self.hits.append(pred == emotion_fan_label(clip_id))
        return {"emotion_fan_pred": EMOTION_FAN_LABELS[pred]}

    def summary(self) -> dict[str, float]:
        return {"emotion_fan_acc": 100.0 * float(np.mean(self.hits)) if self.hits else math.nan}


class PaperLSE:
    """LSE-D / LSE-C with syncnet_python's input preparation (`metrics.sync.prepare_lse_inputs`, S3FD
    crop); a result without audio is scored with the ground truth's sound."""

    def __init__(self, net: SyncNetV2, s3fd: Path) -> None:
        self.metric, self.s3fd = LSE(net), s3fd

    def add(self, video: Path, gt: GroundTruth) -> dict[str, Any]:
        import tempfile

        from edtalk.io import write_wav
        from metrics.sync import prepare_lse_inputs

        with tempfile.TemporaryDirectory() as tmp:
            audio = None if probe_video(video).has_audio else write_wav(Path(tmp) / "gt.wav", gt.wav)
            try:
                inputs = prepare_lse_inputs(video, "s3fd", audio, self.s3fd)
            except ValueError as err:  # no face track long enough: syncnet_python scores nothing either
                return {"lse_note": str(err)}
        self.metric.update(inputs.frames, inputs.wav)
        assert self.metric.last is not None
        return dict(self.metric.last.as_dict())

    def summary(self) -> dict[str, float]:
        if not int(self.metric.count):
            return {}
        return {k: float(v) for k, v in self.metric.compute().items()}


class PresetScorer:
    """`--protocol eat` (EAT's image protocol, Emotion-FAN, syncnet_python LSE) and `--protocol syncnet`
    (LSE only): scores computed from the result video files themselves (see `metrics.eat`)."""

    def __init__(self, judges: Judges, protocol: str, workdir: Path | None = None) -> None:
        from metrics.eat import EatAligner, EatJudges, EatScorer, EmotionFANInputs

        self.eat: EatScorer | None = None
        if protocol == "eat":
            fan = judges.emotion_fan
            eat_judges = EatJudges(
                EatAligner(), judges.inception_imagenet, fan, EmotionFANInputs() if fan is not None else None
            )
            self.eat = EatScorer(eat_judges, workdir)
        self.lse = PaperLSE(judges.syncnet, judges.s3fd) if judges.syncnet and judges.s3fd else None
        self.rows: list[dict[str, Any]] = []

    def add_video(self, gt: GroundTruth, video: Path) -> dict[str, Any]:
        row = self.eat.add(gt, video) if self.eat is not None else {"clip_id": gt.clip_id}
        if self.lse is not None:
            row.update(self.lse.add(video, gt))
        self.rows.append(row)
        return row

    def summary(self) -> dict[str, float]:
        out = self.eat.summary() if self.eat is not None else {}
        return {**out, **(self.lse.summary() if self.lse is not None else {})}


def _label(clip_id: str) -> int:
    from metrics.functional.emotion import emotion_label

    return emotion_label(clip_id)


def load_result(path: Path, gt: GroundTruth) -> tuple[np.ndarray, np.ndarray]:
    """Frames resized to the ground-truth size (T x H x W x 3 uint8) and the audio to judge sync with."""
    import cv2

    frames = read_video(path)
    h, w = gt.frames.shape[1:3]
    if frames.shape[1:3] != (h, w):
        frames = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames])
    wav = read_audio(path) if probe_video(path).has_audio else gt.wav
    return frames, wav


# -- the whole comparison ------------------------------------------------------------------------
@dataclass
class Report:
    """Results of `evaluate`: summary per method, per-clip rows, matching problems, skipped metrics."""

    summary: dict[str, dict[str, float]]
    rows: dict[str, list[dict[str, Any]]]
    missing: dict[str, list[str]]
    extra: dict[str, list[str]]
    skipped: dict[str, str]
    extras: dict[str, Any] = field(default_factory=dict)


def evaluate(
    methods: dict[str, Path],
    gt_clips: Iterator[GroundTruth],
    judges: Judges,
    fid_frames: int = 5,
    lse_crop: bool = True,
    log: Callable[[str], None] = print,
    protocol: str = "ours",
    csim_frames: int | None = None,
) -> Report:
    """Score each method's folder against the ground-truth clips (matched by clip id).

    `protocol`: "ours" (the default suite), "eat" or "syncnet" (`PresetScorer`); docs/protocols.md.
    `csim_frames`: see `MethodScorer` (None: every frame)."""
    videos = {name: find_videos(folder) for name, folder in methods.items()}
    scorers: dict[str, MethodScorer | PresetScorer] = {
        name: MethodScorer(judges, fid_frames, lse_crop, csim_frames)
        if protocol == "ours"
        else PresetScorer(judges, protocol)
        for name in methods
    }
    seen: list[str] = []
    for gt in gt_clips:
        seen.append(gt.clip_id)
        for name, vids in videos.items():
            if gt.clip_id in vids:
                scorers[name].add_video(gt, vids[gt.clip_id])
        gt.cache.clear()
        log(f"scored {gt.clip_id}")
    missing = {n: sorted(set(seen) - set(v)) for n, v in videos.items()}
    extra = {n: sorted(set(v) - set(seen)) for n, v in videos.items()}
    return Report(
        {n: s.summary() for n, s in scorers.items()},
        {n: s.rows for n, s in scorers.items()},
        missing,
        extra,
        judges.skipped(),
    )


# -- writing -------------------------------------------------------------------------------------
def markdown_table(summary: dict[str, dict[str, float]]) -> str:
    """Methods x metrics, with ↑ / ↓ after each metric name."""
    names = [m for m in METRICS if any(m in s for s in summary.values())]
    labels = {m: LABELS.get(m, m) if "emotion_fan_acc" in names else m for m in names}
    head = "| method | " + " | ".join(f"{labels[m]} {'↑' if METRICS[m][0] else '↓'}" for m in names) + " |"
    lines = [head, "|" + "---|" * (len(names) + 1)]
    for method, values in summary.items():
        cells = [f"{values[m]:.4f}" if m in values and not math.isnan(values[m]) else "–" for m in names]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(report: Report, out: str | Path) -> dict[str, Path]:
    """metrics.json, table.md, per_clip.csv and plots/<metric>.png under `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = markdown_table(report.summary)
    notes = [f"- {m}: skipped — {why}" for m, why in report.skipped.items()]
    notes += [
        f"- {n}: {len(ids)} ground-truth clips have no result video"
        for n, ids in report.missing.items()
        if ids
    ]
    notes += [
        f"- {n}: {len(ids)} videos match no ground-truth clip" for n, ids in report.extra.items() if ids
    ]
    (out / "table.md").write_text(table + ("\n\n" + "\n".join(notes) if notes else "") + "\n")
    payload = {
        "metrics": report.summary,
        "higher_is_better": {m: hib for m, (hib, _) in METRICS.items()},
        "skipped": report.skipped,
        "missing": report.missing,
        "extra": report.extra,
        **report.extras,
    }
    (out / "metrics.json").write_text(json.dumps(payload, indent=2, default=_jsonable))
    _write_csv(report.rows, out / "per_clip.csv")
    plots = _bar_charts(report.summary, out / "plots")
    return {"json": out / "metrics.json", "table": out / "table.md", "csv": out / "per_clip.csv", **plots}


def _jsonable(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return x.tolist()
    if isinstance(x, np.generic | np.ndarray):
        return x.tolist()
    raise TypeError(f"cannot write {type(x).__name__} to metrics.json")


def _write_csv(rows: dict[str, list[dict[str, Any]]], path: Path) -> None:
    flat = [{"method": m, **r} for m, rs in rows.items() for r in rs]
    keys = list(dict.fromkeys(k for r in flat for k in r))
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys or ["method"])
        writer.writeheader()
        writer.writerows(flat)


def _bar_charts(summary: dict[str, dict[str, float]], folder: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for metric, (hib, _) in METRICS.items():
        vals = {m: s[metric] for m, s in summary.items() if metric in s and not math.isnan(s[metric])}
        if not vals:
            continue
        fig, ax = plt.subplots(figsize=(1.2 + 0.8 * len(vals), 3))
        ax.bar(list(vals), list(vals.values()), color="tab:blue")
        ax.set_title(f"{metric} ({'higher' if hib else 'lower'} is better)")
        fig.tight_layout()
        path = folder / f"{metric}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        out[f"plot_{metric}"] = path
    return out


def heatmap(
    matrix: torch.Tensor | np.ndarray, title: str, path: Path, labels: list[str] | None = None
) -> Path:
    """Save a square heatmap (Gram / correlation matrices)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    arr = matrix.detach().cpu().numpy() if isinstance(matrix, torch.Tensor) else np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(5, 4.2))
    im = ax.imshow(arr, cmap="RdBu_r", vmin=-1, vmax=1)
    fig.colorbar(im, ax=ax)
    ax.set_title(title)
    if labels:
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=6)
        ax.set_yticks(range(len(labels)), labels, fontsize=6)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
