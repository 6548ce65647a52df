"""Input layouts: find the videos (and their audio) and name the clips they become.

* ``mead``: ``<root>/<speaker>/video/front/<emotion>/level_<k>/<nnn>.mp4`` (audio inside the mp4 or in
  ``<root>/<speaker>/audio/<emotion>/level_<k>/<nnn>.m4a|.wav``), or the flattened
  ``<root>/Original_video/<spk>#<emotion>#level_<k>#<nnn>.mp4`` + ``<root>/audio/<same>.wav``.
  Clip id ``<spk>#<emotion>#level_<k>#<nnn>``.
* ``hdtf``: ``<root>/original_videos/<video>.mp4`` + ``<root>/audios/<video>.wav``, cut into 5-s clips
  ``<video>#<k>`` (k from 1, as ``split_HDTF_video.py``).
* ``folder``: every video under ``<root>`` (recursively); clip id = relative path without suffix,
  ``/`` replaced by ``#``; audio from the video or a ``.wav`` of the same stem beside it.

A ``<video stem>.json`` beside a video is merged into the clip metadata (the built-in dataset stores
its ground-truth factors this way). Dots in names become ``_`` (webdataset keys stop at the first dot).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".flv")
AUDIO_SUFFIXES = (".wav", ".m4a", ".mp3", ".aac", ".flac")
EMOTIONS = ("angry", "contempt", "disgusted", "fear", "happy", "neutral", "sad", "surprised")
HDTF_CLIP_SECONDS = 5


@dataclass
class VideoJob:
    """One input video and the clips it yields.

    Attributes:
        video: the video file.
        audio: separate audio file, or None to take the video's own audio track.
        clip_ids: one id per clip; with `segment_frames`, clip k covers frames [k*n, (k+1)*n).
        segment_frames: frames per clip at 25 fps (HDTF), or None for one clip per video.
        meta: metadata shared by the clips (dataset, speaker, emotion, level, extra json).
    """

    video: Path
    audio: Path | None
    clip_ids: list[str]
    segment_frames: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def clean_id(text: str) -> str:
    return text.replace(".", "_").replace("/", "#").replace(" ", "_")


def _sidecar(video: Path) -> dict[str, Any]:
    path = video.with_suffix(".json")
    if not path.is_file():
        return {}
    extra: dict[str, Any] = json.loads(path.read_text())
    return extra


def _first_audio(candidates: list[Path]) -> Path | None:
    return next((p for p in candidates if p.is_file()), None)


def _mead_meta(speaker: str, emotion: str, level: str, video: Path) -> dict[str, Any]:
    meta = {"dataset": "mead", "speaker": speaker, "emotion": emotion, "level": level}
    return {**meta, **_sidecar(video)}


def _mead_nested(root: Path) -> Iterator[VideoJob]:
    for video in sorted(root.glob("*/video/front/*/level_*/*")):
        if video.suffix.lower() not in VIDEO_SUFFIXES:
            continue
        speaker, emotion, level = video.parts[-6], video.parts[-3], video.parts[-2]
        audio_dir = root / speaker / "audio" / emotion / level
        audio = _first_audio([audio_dir / f"{video.stem}{s}" for s in AUDIO_SUFFIXES])
        key = clean_id(f"{speaker}#{emotion}#{level}#{video.stem}")
        yield VideoJob(video, audio, [key], None, _mead_meta(speaker, emotion, level, video))


def _mead_flat(root: Path) -> Iterator[VideoJob]:
    for video in sorted((root / "Original_video").iterdir()):
        if video.suffix.lower() not in VIDEO_SUFFIXES:
            continue
        parts = video.stem.split("#")
        if len(parts) != 4:
            raise ValueError(f"{video}: MEAD flat names are <spk>#<emotion>#level_<k>#<nnn>.mp4")
        audio = _first_audio([root / "audio" / f"{video.stem}{s}" for s in AUDIO_SUFFIXES])
        meta = _mead_meta(parts[0], parts[1], parts[2], video)
        yield VideoJob(video, audio, [clean_id(video.stem)], None, meta)


def mead_jobs(root: Path) -> list[VideoJob]:
    """Jobs of a MEAD tree (nested or flattened ``Original_video`` layout)."""
    return list(_mead_flat(root) if (root / "Original_video").is_dir() else _mead_nested(root))


def hdtf_jobs(root: Path) -> list[VideoJob]:
    """Jobs of an HDTF tree; clip ids come from each video's duration (5-s clips, k from 1)."""
    from edtalk.io import MediaError, probe_video

    videos_dir = root / "original_videos"
    if not videos_dir.is_dir():
        raise FileNotFoundError(
            f"{videos_dir} not found; the hdtf layout is original_videos/*.mp4 + audios/*.wav"
        )
    segment = HDTF_CLIP_SECONDS * 25
    jobs = []
    for video in sorted(videos_dir.iterdir()):
        if video.suffix.lower() not in VIDEO_SUFFIXES:
            continue
        audio = _first_audio([root / "audios" / f"{video.stem}{s}" for s in AUDIO_SUFFIXES])
        try:
            frames = round(probe_video(video).duration * 25)
        except MediaError:
            frames = segment  # unreadable: one job, reported when processed
        count = max(1, -(-frames // segment))
        name = clean_id(video.stem)
        meta = {"dataset": "hdtf", "speaker": name, "emotion": None, "level": None, **_sidecar(video)}
        jobs.append(VideoJob(video, audio, [f"{name}#{k}" for k in range(1, count + 1)], segment, meta))
    return jobs


def folder_jobs(root: Path) -> list[VideoJob]:
    """One job per video anywhere under `root`."""
    jobs = []
    for video in sorted(p for p in root.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file()):
        rel = video.relative_to(root).with_suffix("")
        audio = _first_audio([video.with_suffix(s) for s in AUDIO_SUFFIXES])
        speaker = rel.parts[0] if len(rel.parts) > 1 else rel.name
        meta = {"dataset": "folder", "speaker": speaker, "emotion": None, "level": None, **_sidecar(video)}
        jobs.append(VideoJob(video, audio, [clean_id(str(rel))], None, meta))
    return jobs


def find_jobs(root: str | Path, layout: str) -> list[VideoJob]:
    """Jobs for `layout` in ``folder``, ``mead``, ``hdtf``."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"input folder {root} does not exist")
    readers = {"folder": folder_jobs, "mead": mead_jobs, "hdtf": hdtf_jobs}
    if layout not in readers:
        raise ValueError(f"unknown layout {layout!r}; choose one of {sorted(readers)}")
    jobs = readers[layout](root)
    if not jobs:
        raise FileNotFoundError(f"no videos found under {root} for layout {layout!r}")
    return jobs
