"""Scorers: one method's clips -> per-clip rows and the split's summary.

Every scorer has the same shape: `add_video(gt, video)` scores one clip and leaves its contribution in
`part`; `restore(row, part)` adds a clip scored earlier (read back from disk) without recomputing it;
`summary()` folds all clips' parts in clip order. `MethodScorer` runs the metric table
(`metrics.table`); `PresetScorer` runs a preset protocol (`--protocol eat|syncnet`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from metrics.clips import GroundTruth, load_result
from metrics.judges import SyncNetV2
from metrics.judging import Judges
from metrics.table import TABLE, ClipInputs, MetricRow, Options, fold_lse, fold_parts


def active_rows(judges: Judges) -> list[MetricRow]:
    """The table's rows whose judges are all loaded."""
    return [r for r in TABLE if all(getattr(judges, j, None) is not None for j in r.judges)]


class MethodScorer:
    """Accumulates every available metric of the table for one method over the clips it is given.

    `csim_frames`: CSIM from that many evenly spaced frames per clip (None: every frame, the protocol);
    an estimate for quick runs, where the face descriptor is most of the evaluation's time.
    `fast`: the shared path (`Options.fast`); False: the path before issue 29 (same values to 1e-6).
    """

    def __init__(
        self,
        judges: Judges,
        fid_frames: int = 5,
        lse_crop: bool = True,
        csim_frames: int | None = None,
        fast: bool = True,
    ) -> None:
        if csim_frames is not None and csim_frames < 1:
            raise ValueError(f"csim_frames must be >= 1 or None (every frame), got {csim_frames}")
        self.j, self.opts = judges, Options(fid_frames, lse_crop, csim_frames, fast)
        self.table = active_rows(judges)
        self.m: dict[str, Any] = {row.name: row.make(judges, self.opts) for row in self.table}
        self.rows: list[dict[str, Any]] = []
        self.parts: list[dict[str, Any]] = []
        self.part: dict[str, Any] = {}

    def add_video(self, gt: GroundTruth, video: Path) -> dict[str, Any]:
        """Score one result video (read at 25 fps, resized to the ground-truth size)."""
        frames, wav = load_result(video, gt)
        return self.add(gt, frames, wav)

    @torch.no_grad()
    def add(self, gt: GroundTruth, pred: np.ndarray, wav: np.ndarray) -> dict[str, Any]:
        """Score one clip (pred: T x H x W x 3 uint8 at the GT size); returns its per-clip row."""
        x = ClipInputs(gt, pred, wav, self.j, self.opts)
        row: dict[str, Any] = {"clip_id": gt.clip_id, "frames": x.t}
        part: dict[str, Any] = {}
        for metric in self.table:
            values, part[metric.name] = metric.score(self.m[metric.name], x)
            row.update(values)
        self.restore(row, part)
        return row

    def restore(self, row: dict[str, Any], part: dict[str, Any]) -> None:
        """Add a clip's row and contribution (from `add`, or read back from disk)."""
        self.rows.append(row)
        self.parts.append(part)
        self.part = part

    def summary(self) -> dict[str, float]:
        return fold_parts(self.table, self.parts)


class PaperLSE:
    """LSE-D / LSE-C with syncnet_python's input preparation (`metrics.sync.prepare_lse_inputs`, S3FD
    crop); a result without audio is scored with the ground truth's sound.

    `fast`: S3FD loaded once and run on batches of `S3FD_BATCH` frames, SyncNet on channels-last windows
    (False: S3FD loaded per video, one frame per call, the path before issue 29; boxes and distances agree
    to ~1e-6).
    """

    S3FD_BATCH = 16

    def __init__(self, net: SyncNetV2, s3fd: Path, fast: bool = True) -> None:
        from metrics.sync import LSE

        self.metric, self.s3fd, self.fast = LSE(net, channels_last=fast), s3fd, fast
        self._detector: Any = None
        self.parts: list[tuple[float, float]] = []
        self.part: tuple[float, float] | None = None

    def add(self, video: Path, gt: GroundTruth, frames: np.ndarray | None = None) -> dict[str, Any]:
        """Score one video (`frames`: its frames at 25 fps as `read_video_ffmpeg_rate` gives them, when
        decoded already)."""
        import tempfile

        from edtalk.io import probe_video, write_wav
        from metrics.sync import prepare_lse_inputs

        self.part = None
        with tempfile.TemporaryDirectory() as tmp:
            audio = None if probe_video(video).has_audio else write_wav(Path(tmp) / "gt.wav", gt.wav)
            try:
                inputs = prepare_lse_inputs(
                    video,
                    "s3fd",
                    audio,
                    self.s3fd,
                    detector=self.detector(),
                    batch_size=self.batch,
                    frames=frames,
                )
            except ValueError as err:  # no face track long enough: syncnet_python scores nothing either
                return {"lse_note": str(err)}
        self.metric.update(inputs.frames, inputs.wav)
        assert self.metric.last is not None
        self.part = (self.metric.last.lse_d, self.metric.last.lse_c)
        self.parts.append(self.part)
        return dict(self.metric.last.as_dict())

    @property
    def batch(self) -> int:
        return self.S3FD_BATCH if self.fast else 0

    def detector(self) -> Any:
        """The S3FD detector, loaded once (fast path), or None: `prepare_lse_inputs` loads its own."""
        if not self.fast:
            return None
        if self._detector is None:
            from metrics.syncnet_crop import s3fd_from

            self._detector = s3fd_from(self.s3fd)
        return self._detector

    def summary(self) -> dict[str, float]:
        return fold_lse(self.parts)


class PresetScorer:
    """`--protocol eat` (EAT's image protocol, Emotion-FAN, syncnet_python LSE) and `--protocol syncnet`
    (LSE only): scores computed from the result video files themselves (see `metrics.eat`)."""

    def __init__(self, judges: Judges, protocol: str, workdir: Path | None = None, fast: bool = True) -> None:
        from metrics.eat import EatAligner, EatJudges, EatScorer, EmotionFANInputs
        from metrics.judges import EmotionFAN

        self.eat: EatScorer | None = None
        self.fast = fast
        if protocol == "eat":
            fan = judges.emotion_fan
            if fast and isinstance(fan, EmotionFAN):
                fan = fan.fused()  # batch norms folded into the convolutions, channels-last
            eat_judges = EatJudges(
                EatAligner(),
                judges.inception_imagenet,
                fan,
                EmotionFANInputs() if fan is not None else None,
                files=dict(judges.files),
                fast=fast,
            )
            self.eat = EatScorer(eat_judges, workdir)
        self.lse = PaperLSE(judges.syncnet, judges.s3fd, fast) if judges.syncnet and judges.s3fd else None
        self.rows: list[dict[str, Any]] = []
        self.part: dict[str, Any] = {}

    def add_video(self, gt: GroundTruth, video: Path) -> dict[str, Any]:
        """Score one result video. Fast path: the video is decoded once (by EAT's re-encode), its frames
        passed to Emotion-FAN and the LSE."""
        from metrics.eat import DecodedVideo

        decoded = DecodedVideo() if self.fast and self.eat is not None else None
        row = self.eat.add(gt, video, decoded) if self.eat is not None else {"clip_id": gt.clip_id}
        self.part = dict(self.eat.part) if self.eat is not None else {}
        if self.lse is not None:
            row.update(self.lse.add(video, gt, decoded.at_25fps() if decoded is not None else None))
            self.part["lse"] = self.lse.part
        self.rows.append(row)
        return row

    def restore(self, row: dict[str, Any], part: dict[str, Any]) -> None:
        """Add a clip scored earlier (row and part read back from disk)."""
        if self.eat is not None:
            self.eat.restore(part)
            self.eat.rows.append(row)
        if self.lse is not None and part.get("lse") is not None:
            d, c = part["lse"]
            self.lse.parts.append((float(d), float(c)))
        self.rows.append(row)

    def summary(self) -> dict[str, float]:
        out = self.eat.summary() if self.eat is not None else {}
        return {**out, **(self.lse.summary() if self.lse is not None else {})}


def scorer_active(scorer: MethodScorer | PresetScorer) -> list[str]:
    """What a scorer computes, by name (what `summarize` needs to fold its parts without judges)."""
    if isinstance(scorer, MethodScorer):
        return [row.name for row in scorer.table]
    names = []
    if scorer.eat is not None:
        names.append("eat")
        names += ["fid"] if scorer.eat.judges.inception is not None else []
        names += ["emotion_fan"] if scorer.eat.judges.emotion_fan is not None else []
    return names + (["lse"] if scorer.lse is not None else [])


def summarize(protocol: str, active: list[str], parts: list[dict[str, Any]]) -> dict[str, float]:
    """The split's values from the clips' parts in clip order (merging shards: no judges needed)."""
    if protocol == "ours":
        return fold_parts([row for row in TABLE if row.name in active], parts)
    out: dict[str, float] = {}
    if "eat" in active:
        from metrics.eat import EatJudges, EatScorer

        eat = EatScorer(EatJudges(aligner=None))  # type: ignore[arg-type]  # folding only
        for part in parts:
            eat.restore(part)
        out.update(eat.fold("fid" in active, "emotion_fan" in active))
    if "lse" in active:
        out.update(fold_lse([(p["lse"][0], p["lse"][1]) for p in parts if p.get("lse") is not None]))
    return out
