"""Evaluation runner: score result videos of one or more methods against a split's ground-truth clips.

Result folders hold one video per clip named `<clip id>.<ext>` (mp4/avi/mov/mkv/webm). Videos are read
at 25 fps and resized to the ground-truth size; the first min(T_pred, T_gt) frames are compared. Per
clip: PSNR, SSIM, LPIPS (all frames), FID (5 evenly spaced frames per clip pooled over the split;
`fid_frames=0`: all frames), CSIM (dlib 128-d, or ArcFace; source = the clip's first ground-truth
frame), M-LMD / F-LMD (dlib 68 points on both videos), LSE-D / LSE-C (syncnet_python protocol; the
result's own audio when it has some, else the ground-truth audio), emotion accuracy (classifier
checkpoint, label from the clip id). A metric whose judge is unavailable is skipped with a reason.

The pieces: `metrics.clips` (ground truth, result folders), `metrics.judging` (judges per protocol),
`metrics.table` (the metric table), `metrics.scoring` (scorers), `metrics.store` (per-clip results on
disk: resume, shards, merge), `metrics.report` (files). This module runs them and re-exports their
public names.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metrics.clips import (
    SPLITS,
    VIDEO_EXTS,
    GroundTruth,
    eat_clip_id,
    find_videos,
    ground_truth,
    load_result,
    read_clip_list,
)
from metrics.judges import load_emotion_classifier as load_emotion_classifier  # re-exported
from metrics.judges import load_emotion_fan as load_emotion_fan  # re-exported
from metrics.judging import (
    PROTOCOL_JUDGES,
    PROTOCOL_METRIC_JUDGES,
    PROTOCOLS,
    WEIGHT_FILES,
    Judges,
    load_judges,
)
from metrics.report import Report, heatmap, markdown_table, paper_table, write_report
from metrics.scoring import MethodScorer, PaperLSE, PresetScorer, scorer_active, summarize
from metrics.store import ClipStore, read_shards, settings_key, sha256_file, write_shard
from metrics.table import LABELS, METRICS, TABLE

__all__ = [
    "LABELS",
    "METRICS",
    "PROTOCOLS",
    "PROTOCOL_JUDGES",
    "PROTOCOL_METRIC_JUDGES",
    "SPLITS",
    "TABLE",
    "VIDEO_EXTS",
    "WEIGHT_FILES",
    "GroundTruth",
    "Judges",
    "MethodScorer",
    "PaperLSE",
    "PresetScorer",
    "Report",
    "eat_clip_id",
    "evaluate",
    "find_videos",
    "ground_truth",
    "heatmap",
    "load_emotion_classifier",
    "load_emotion_fan",
    "load_judges",
    "load_result",
    "markdown_table",
    "merge",
    "paper_table",
    "read_clip_list",
    "write_report",
]

# what a result video that cannot be scored raises (recorded with its reason; the run goes on)
UNSCORABLE: tuple[type[BaseException], ...] = (ValueError, RuntimeError, OSError, IndexError)


@dataclass
class Store:
    """Where per-clip results go (`metrics.store`), and which part of the split this process scores."""

    root: Path
    shard: tuple[int, int] = (0, 1)
    worker: tuple[int, int] = (0, 1)  # (k, W): this process scores every W-th clip of its shard
    settings: dict[str, Any] = field(default_factory=dict)

    def mine(self, position: int) -> bool:
        i, n = self.shard
        k, w = self.worker
        return position % n == i and (position // n) % w == k


def judge_files(judges: Judges) -> dict[str, tuple[str, str]]:
    """{judge: (file, sha256)} of the judge files that were loaded (the caption's and the key's)."""
    return {k: (str(p), sha256_file(p)) for k, p in judges.files.items() if Path(p).is_file()}


def run_settings(
    judges: Judges, protocol: str, fid_frames: int, lse_crop: bool, csim_frames: int | None
) -> dict[str, Any]:
    """Everything that changes a number: the protocol, its options, the judge files' sha256."""
    options = {"fid_frames": fid_frames, "lse_crop": lse_crop, "csim_frames": csim_frames}
    return {
        "protocol": protocol,
        "options": options if protocol == "ours" else {},
        "judges": {k: h for k, (_, h) in judge_files(judges).items()},
    }


class Progress:
    """A one-line progress bar with rate and ETA on stderr (tqdm), or nothing."""

    def __init__(self, total: int | None, enabled: bool) -> None:
        self.bar: Any = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="clip", desc="evaluate", file=sys.stderr, dynamic_ncols=True)

    def step(self, note: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(note, refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _score_one(
    scorer: MethodScorer | PresetScorer, store: ClipStore | None, gt: GroundTruth, video: Path
) -> str | None:
    """Score (or restore) one clip of one method; the reason when the video cannot be scored."""
    stored = store.load(gt.clip_id, video) if store is not None else None
    if stored is not None:
        scorer.restore(*stored)
        return None
    try:
        row = scorer.add_video(gt, video)
    except UNSCORABLE as err:
        if store is None:
            raise
        reason = f"{type(err).__name__}: {err}"
        store.fail(gt.clip_id, video, reason)
        return reason
    if store is not None:
        store.save(gt.clip_id, video, row, scorer.part)
    return None


def evaluate(
    methods: dict[str, Path],
    gt_clips: Iterator[GroundTruth],
    judges: Judges,
    fid_frames: int = 5,
    lse_crop: bool = True,
    log: Callable[[str], None] = print,
    protocol: str = "ours",
    csim_frames: int | None = None,
    store: Store | None = None,
    total: int | None = None,
    progress: bool = False,
    fast: bool = True,
) -> Report:
    """Score each method's folder against the ground-truth clips (matched by clip id).

    `protocol`: "ours" (the default suite), "eat" or "syncnet" (`PresetScorer`); docs/protocols.md.
    `csim_frames`: see `MethodScorer` (None: every frame).
    `store`: write each clip's result as it finishes under `store.root` and reuse the ones already
    there; a video that cannot be scored is recorded with its reason and the run goes on (without a
    store its error stops the run, as before). Only the clips of `store.shard` / `store.worker` are
    scored; the report then covers those. `total`: the number of clips, for the progress bar's ETA.
    `fast`: detections shared between metrics, detectors batched and loaded once, the ground truth's
    side cached on disk (False: the unbatched path before issue 29; the same values to 1e-6).
    """
    videos = {name: find_videos(folder) for name, folder in methods.items()}
    scorers: dict[str, MethodScorer | PresetScorer] = {
        name: MethodScorer(judges, fid_frames, lse_crop, csim_frames, fast)
        if protocol == "ours"
        else PresetScorer(judges, protocol, fast=fast)
        for name in methods
    }
    settings = run_settings(judges, protocol, fid_frames, lse_crop, csim_frames)
    key = settings_key(settings)
    stores = {n: ClipStore(store.root, key, n) if store else None for n in methods}
    seen: list[str] = []
    positions: list[tuple[int, str]] = []
    failed: dict[str, dict[str, str]] = {n: {} for n in methods}
    bar = Progress(_share(total, store), progress)
    for pos, gt in enumerate(gt_clips):
        seen.append(gt.clip_id)
        if store is not None and not store.mine(pos):
            continue
        positions.append((pos, gt.clip_id))
        for name, vids in videos.items():
            if gt.clip_id in vids:
                why = _score_one(scorers[name], stores[name], gt, vids[gt.clip_id])
                if why is not None:
                    failed[name][gt.clip_id] = why
        gt.cache.clear()
        log(f"scored {gt.clip_id}")
        bar.step(gt.clip_id)
    bar.close()
    missing = {n: sorted(set(seen) - set(v)) for n, v in videos.items()}
    extra = {n: sorted(set(v) - set(seen)) for n, v in videos.items()}
    report = Report(
        {n: s.summary() for n, s in scorers.items()},
        {n: s.rows for n, s in scorers.items()},
        missing,
        extra,
        judges.skipped(),
        failed=failed,
        caption={"protocol": protocol, "clips": len(positions), "judges": judge_files(judges)},
    )
    if store is not None and store.worker == (0, 1):
        record = {
            "shard": list(store.shard),
            "key": key,
            "settings": settings,
            "clips": positions,
            "total": len(seen),
            "active": {n: scorer_active(s) for n, s in scorers.items()},
            "missing": missing,
            "extra": extra,
            "skipped": report.skipped,
            "caption": report.caption,
            "finished": time.time(),
        }
        write_shard(store.root, store.shard, record)
    return report


def _share(total: int | None, store: Store | None) -> int | None:
    """The number of clips this process scores out of `total`."""
    if total is None or store is None:
        return total
    return sum(1 for p in range(total) if store.mine(p))


def merge(folders: list[Path]) -> Report:
    """The report of a split scored in shards (`evaluate --shard I/N --out DIR` each): the per-clip
    results of every shard, folded in the split's clip order, so the table equals one machine's."""
    records = read_shards(folders)
    first = records[0]
    n = first["shard"][1]
    for rec in records:
        if rec["key"] != first["key"]:
            raise ValueError(
                f"shard {rec['shard'][0]}/{rec['shard'][1]} in {rec['folder']} was scored with other settings "
                f"({rec['settings']}) than shard {first['shard'][0]}/{n} ({first['settings']}); rescore it"
            )
        if rec["shard"][1] != n:
            raise ValueError(
                f"{rec['folder']} holds shard {rec['shard'][0]}/{rec['shard'][1]}, others are /{n}"
            )
    have = {rec["shard"][0]: rec for rec in records}
    absent = [i for i in range(n) if i not in have]
    if absent:
        raise ValueError(
            f"shards {', '.join(f'{i}/{n}' for i in absent)} are missing; run them before merging"
        )
    placed = sorted((pos, clip, rec["folder"]) for rec in have.values() for pos, clip in rec["clips"])
    methods = list(first["active"])
    summary: dict[str, dict[str, float]] = {}
    rows: dict[str, list[dict[str, Any]]] = {}
    failed: dict[str, dict[str, str]] = {}
    for m in methods:
        parts, rows[m], failed[m] = [], [], {}
        for _, clip, folder in placed:
            store = ClipStore(Path(folder), first["key"], m)
            stored = store.load(clip)
            if stored is not None:
                rows[m].append(stored[0])
                parts.append(stored[1])
            else:
                failed[m].update(store.failures([clip]))
        summary[m] = summarize(first["settings"]["protocol"], first["active"][m], parts)
    missing = {m: sorted(set.intersection(*(set(r["missing"][m]) for r in records))) for m in methods}
    extra = {m: sorted(set.intersection(*(set(r["extra"][m]) for r in records))) for m in methods}
    caption = dict(first["caption"], clips=len(placed))
    report = Report(summary, rows, missing, extra, first["skipped"], failed=failed, caption=caption)
    if first["settings"]["protocol"] != "ours":
        report.extras["protocol"] = first["settings"]["protocol"]
    return report
