"""Ground-truth clips of a split, result folders and clip lists: what the evaluation compares."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edtalk.io import probe_video, read_audio, read_video
from metrics.functional.emotion import EMOTIONS

VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm")
SPLITS = ("builtin", "mead_test", "hdtf_test")


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


def load_result(path: Path, gt: GroundTruth) -> tuple[np.ndarray, np.ndarray]:
    """Frames resized to the ground-truth size (T x H x W x 3 uint8) and the audio to judge sync with."""
    import cv2

    frames = read_video(path)
    if not len(frames):
        raise ValueError(f"{path} has no video frames")
    h, w = gt.frames.shape[1:3]
    if frames.shape[1:3] != (h, w):
        frames = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames])
    wav = read_audio(path) if probe_video(path).has_audio else gt.wav
    return frames, wav


def clip_ids(split: str, root: str | Path | None = None) -> list[str] | None:
    """The ids `ground_truth(split, root)` yields, from the shard index (nothing decoded); None when
    the split's shards are not there yet."""
    from datamodules.shards import read_index

    if split == "builtin" and root is None:
        from datamodules.synthetic import ensure_builtin

        root = ensure_builtin()
    if root is None or split not in SPLITS:
        return None
    stored = [c for s in read_index(root)["shards"] if s["split"] == "test" for c in s["clips"]]
    return [c for c in stored if split == "builtin" or _is_mead(c) == (split == "mead_test")]


# -- the ground-truth side, cached on disk ------------------------------------------------------------
GT_CACHE_VERSION = 1


def gt_cache_dir() -> Path:
    """``$EDTALK_CACHE/evaluate-gt`` or ``./.cache/edtalk/evaluate-gt``."""
    import os

    cache = os.environ.get("EDTALK_CACHE")
    return (Path(cache) if cache else Path.cwd() / ".cache" / "edtalk") / "evaluate-gt"


def gt_cached(gt: GroundTruth, kind: str, judge_files: Sequence[Path], compute: Any) -> np.ndarray:
    """`compute()` of one ground-truth clip, memoised in the clip (for the other methods of this run)
    and on disk (for later runs: a second method on the same split). The key is `kind` (the protocol's
    step), the sha256 of the clip's frames and of the judge files the step uses, so another clip
    content, judge or protocol never reads a stale entry."""
    import hashlib

    from metrics.store import atomic_write, sha256_file

    if kind in gt.cache:
        return np.asarray(gt.cache[kind])
    h = hashlib.sha256(f"{kind}:{GT_CACHE_VERSION}:{gt.frames.shape}".encode())
    h.update(np.ascontiguousarray(gt.frames).data)
    for f in judge_files:
        h.update(sha256_file(f).encode())
    path = gt_cache_dir() / kind / f"{h.hexdigest()[:32]}.npy"
    if path.is_file():
        value = np.load(path, allow_pickle=False)
    else:
        import io

        value = np.asarray(compute())
        buf = io.BytesIO()
        np.save(buf, value, allow_pickle=False)
        atomic_write(path, buf.getvalue())
    gt.cache[kind] = value
    return value
