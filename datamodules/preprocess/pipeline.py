"""Raw videos -> 256² 25-fps clips -> shards, resumable and parallel (``edtalk preprocess``).

Per input video (`VideoJob`): probe, read 16 kHz mono audio, stream frames resampled to 25 fps
(`edtalk.io.iter_frames`), cut into clips, and per clip: check lengths and loudness, track the face,
crop the FOMM-style tube box to 256², predict 68 landmarks on every stored frame, derive mouth
boxes and the mel spectrogram. A finished clip is staged as a one-sample tar under
``<out>/.staging/`` (written to ``.partial`` and renamed, so a kill leaves no partial clip); a
skipped clip leaves ``<out>/.skips/<id>.json``. After all jobs the staged clips are packed into
shards (`datamodules.shards.ShardWriter`) and ``skipped.json`` is rewritten. A rerun skips clips
that are in the index, staged or skipped before, so finished work is never redone.
"""

from __future__ import annotations

import json
import os
import random
import tarfile
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from datamodules.preprocess.crop import (
    CROP_SIZE,
    apply_affine,
    crop_frames,
    crop_matrix,
    mouth_boxes,
    tube_crop_box,
)
from datamodules.preprocess.landmarks import get_backend
from datamodules.preprocess.layouts import EMOTIONS, VideoJob, find_jobs
from datamodules.preprocess.track import SkipClip, track_face
from datamodules.shards import ClipRecord, ShardWriter, encode_clip, read_index, write_json_atomic
from datamodules.splits import load_splits

UNREADABLE = "unreadable video"
TOO_SHORT = "too short"
MISSING_AUDIO = "missing audio"
SILENT_AUDIO = "silent audio"
LENGTH_MISMATCH = "length mismatch"
SAMPLES_PER_FRAME = 640  # 16 kHz / 25 fps


@dataclass
class PreprocessConfig:
    """Knobs of `edtalk preprocess` (defaults follow SPEC 7 with the fixes of SPEC 11)."""

    backend: str = "dlib"
    backend_weights: str | None = None  # face_alignment: folder with the S3FD/FAN files
    size: int = CROP_SIZE
    detect_every: int = 5
    detect_max_side: int = 640
    max_side: int = 1024  # frames are downscaled to this on read (memory); crops come from here
    min_frames: int = 25
    max_mismatch_frames: int = 5
    silence_rms: float = 1e-4
    jpeg_quality: int = 90
    test_speakers: tuple[str, ...] = ()
    shard_clips: int = 64
    seed: int = 0


@dataclass
class Report:
    written: int = 0  # clips packed in this run
    total: int = 0  # clips in the index after this run
    already_done: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)


def face_backend(cfg: PreprocessConfig) -> Any:
    """The configured detector/landmark backend (cached per process)."""
    if cfg.backend == "face_alignment" and cfg.backend_weights:
        return get_backend(cfg.backend, weights_dir=str(cfg.backend_weights))
    return get_backend(cfg.backend)


# -- one clip ----------------------------------------------------------------------------------
def _check_lengths(key: str, num_video: int, wav: np.ndarray, cfg: PreprocessConfig) -> int:
    num_audio = len(wav) // SAMPLES_PER_FRAME
    if num_audio == 0:
        raise SkipClip(MISSING_AUDIO, "no audio samples")
    if abs(num_video - num_audio) > cfg.max_mismatch_frames:
        raise SkipClip(LENGTH_MISMATCH, f"{num_video} video frames vs {num_audio} frames of audio at 25 fps")
    t = min(num_video, num_audio)
    if t < cfg.min_frames:
        raise SkipClip(TOO_SHORT, f"{t} frames < min_frames={cfg.min_frames}")
    if float(np.sqrt(np.mean(wav[: t * SAMPLES_PER_FRAME] ** 2))) < cfg.silence_rms:
        raise SkipClip(SILENT_AUDIO, f"RMS below {cfg.silence_rms}")
    return t


def _meta(job: VideoJob, key: str, t: int, split: str, crop_box: np.ndarray) -> dict[str, Any]:
    meta = {**job.meta, "fps": 25, "num_frames": t, "split": split, "source": job.video.name}
    meta["crop_box"] = [round(float(v), 2) for v in crop_box]
    emotion = meta.get("emotion")
    meta["emotion_id"] = EMOTIONS.index(emotion) if emotion in EMOTIONS else -1
    factors = meta.get("factors")
    if isinstance(factors, dict):  # per-frame ground truth (built-in dataset): cut to the clip
        meta["factors"] = {k: v[:t] if isinstance(v, list) else v for k, v in factors.items()}
    return meta


def process_clip(
    job: VideoJob, key: str, frames: np.ndarray, wav: np.ndarray, cfg: PreprocessConfig, scale: float = 1.0
) -> ClipRecord:
    """Turn decoded frames (T x H x W x 3, 25 fps) + 16 kHz audio into a stored clip.

    `scale` is the factor by which `frames` were shrunk from the source video (for the metadata's
    ``crop_box``, which is in source pixels).

    Raises:
        SkipClip: with one of the report reasons.
    """
    from edtalk.mel import mel_spectrogram

    t = _check_lengths(key, len(frames), wav, cfg)
    frames, wav = frames[:t], wav[: t * SAMPLES_PER_FRAME]
    backend = face_backend(cfg)
    track = track_face(frames, backend, cfg.detect_every, cfg.detect_max_side)
    box = tube_crop_box(track.det_landmarks)
    matrix = crop_matrix(box, cfg.size)
    crops = crop_frames(frames, matrix, cfg.size)
    crop_boxes = apply_affine(track.boxes.reshape(-1, 2, 2), matrix).reshape(-1, 4)  # -> T x 4
    lmk = np.stack([backend.landmarks(c, b) for c, b in zip(crops, crop_boxes)]).astype(np.float32)
    split = load_splits().route(key, cfg.test_speakers)
    meta = _meta(job, key, t, split, box / scale)
    mel = mel_spectrogram(wav).astype(np.float32)
    return ClipRecord(key, crops, wav.astype(np.float32), lmk, mouth_boxes(lmk), meta, mel)


# -- one video ---------------------------------------------------------------------------------
def _frames(job: VideoJob, scale: float) -> Iterator[np.ndarray]:
    import cv2

    from edtalk.io import iter_frames

    for frame in iter_frames(job.video, fps=25):
        yield (
            cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else frame
        )


def _segments(job: VideoJob, scale: float) -> Iterator[tuple[str, np.ndarray, int]]:
    """(clip id, frames, first frame index) per clip of the job."""
    size = job.segment_frames
    buf: list[np.ndarray] = []
    k = 0
    for frame in _frames(job, scale):
        buf.append(frame)
        if size and len(buf) == size and k < len(job.clip_ids):
            yield job.clip_ids[k], np.stack(buf), k * size
            buf, k = [], k + 1
    if buf and k < len(job.clip_ids):
        yield job.clip_ids[k], np.stack(buf), k * (size or 0)


def _read_audio(job: VideoJob) -> np.ndarray:
    from edtalk.io import MediaError, read_audio

    try:
        return read_audio(job.audio or job.video)
    except MediaError as err:
        raise SkipClip(MISSING_AUDIO, str(err)) from err


def process_job(
    job: VideoJob, cfg: PreprocessConfig, out: Path, done: frozenset[str]
) -> list[dict[str, str]]:
    """Process the clips of one video that are not `done`; returns one record per clip."""
    from edtalk.io import MediaError, probe_video

    todo = [k for k in job.clip_ids if k not in done]
    if not todo:
        return []
    try:
        info = probe_video(job.video)
        wav = _read_audio(job)
        scale = min(1.0, cfg.max_side / max(info.width, info.height, 1))
        results = []
        for key, frames, start in _segments(job, scale):
            if key in done:
                continue
            audio = wav[start * SAMPLES_PER_FRAME : (start + len(frames)) * SAMPLES_PER_FRAME]
            results.append(_stage(job, key, frames, audio, cfg, out, scale))
        results += [
            _skip(out, job, k, TOO_SHORT, "video ends before this clip") for k in _missing(todo, results)
        ]
        return results
    except MediaError as err:
        return [_skip(out, job, k, UNREADABLE, str(err)) for k in todo]
    except SkipClip as err:
        return [_skip(out, job, k, err.reason, err.detail) for k in todo]


def _missing(todo: list[str], results: list[dict[str, str]]) -> list[str]:
    seen = {r["clip"] for r in results}
    return [k for k in todo if k not in seen]


def _stage(
    job: VideoJob,
    key: str,
    frames: np.ndarray,
    wav: np.ndarray,
    cfg: PreprocessConfig,
    out: Path,
    scale: float,
) -> dict[str, str]:
    try:
        clip = process_clip(job, key, frames, wav, cfg, scale)
    except SkipClip as err:
        return _skip(out, job, key, err.reason, err.detail)
    members = encode_clip(clip, cfg.jpeg_quality)
    folder = out / ".staging"
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f"{key}.tar.partial"
    with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
        for suffix, data in members:
            info = tarfile.TarInfo(f"{key}.{suffix}")
            info.size = len(data)
            tar.addfile(info, _bytes_io(data))
    os.replace(tmp, folder / f"{key}.tar")
    return {"clip": key, "file": str(job.video), "status": "ok", "split": clip.meta["split"]}


def _bytes_io(data: bytes) -> Any:
    import io

    return io.BytesIO(data)


def _skip(out: Path, job: VideoJob, key: str, reason: str, detail: str) -> dict[str, str]:
    record = {"clip": key, "file": str(job.video), "status": "skipped", "reason": reason, "detail": detail}
    folder = out / ".skips"
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / f"{key}.json", record)
    return record


# -- the run -----------------------------------------------------------------------------------
def _clean_partials(out: Path) -> None:
    for folder in (out, out / ".staging", out / ".skips"):
        if folder.is_dir():
            for stale in folder.glob("*.partial"):
                stale.unlink()


def done_clips(out: Path, retry_skipped: bool = False) -> frozenset[str]:
    """Clip ids that a rerun must not process again (indexed, staged, or skipped before)."""
    done = {c for s in read_index(out)["shards"] for c in s["clips"]}
    done |= {p.name.removesuffix(".tar") for p in (out / ".staging").glob("*.tar")}
    skips = out / ".skips"
    if retry_skipped:
        for p in skips.glob("*.json"):
            p.unlink()
    done |= {p.name.removesuffix(".json") for p in skips.glob("*.json")}
    return frozenset(done)


def _read_staged(path: Path) -> tuple[str, list[tuple[str, bytes]], dict[str, Any]]:
    members = []
    with tarfile.open(path) as tar:
        for info in tar.getmembers():
            f = tar.extractfile(info)
            assert f is not None, f"{path}: member {info.name} is not a file"
            members.append((info.name.split(".", 1)[1], f.read()))
    meta = json.loads(dict(members)["json"])
    return path.name.removesuffix(".tar"), members, meta


def pack(out: Path, shard_clips: int = 64, quality: int = 90, seed: int = 0) -> int:
    """Move staged clips into shards (new shards continue the numbering); returns clips packed."""
    staged = sorted((out / ".staging").glob("*.tar"))
    random.Random(seed).shuffle(staged)  # mix speakers across shards, reproducibly
    packed = 0
    with ShardWriter(out, max_clips=shard_clips, quality=quality) as writer:
        for split in ("train", "test"):
            for path in staged:
                key, members, meta = _read_staged(path)
                if meta["split"] != split or key in writer.known:
                    continue
                writer.write_members(key, split, members, int(meta["num_frames"]))
                packed += 1
    for path in staged:  # only after the index lists them
        path.unlink()
    return packed


def _write_skip_report(out: Path) -> list[dict[str, str]]:
    records = [json.loads(p.read_text()) for p in sorted((out / ".skips").glob("*.json"))]
    write_json_atomic(out / "skipped.json", records)
    return records


def _run_jobs(
    jobs: list[VideoJob], cfg: PreprocessConfig, out: Path, done: frozenset[str], workers: int, progress: bool
) -> None:
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), unit="video", desc="preprocess", disable=not progress)
    if workers <= 1:
        for job in jobs:
            process_job(job, cfg, out, done)
            bar.update()
    else:
        # spawn, not fork: a worker forked from a process whose thread pools (OpenCV's, OpenMP's) have run can
        # wait forever on a lock copied mid-use (a CI run hung here, its two workers idle for 30 minutes)
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            futures: list[Future[list[dict[str, str]]]] = [
                pool.submit(process_job, j, cfg, out, done) for j in jobs
            ]
            for future in futures:
                future.add_done_callback(lambda _: bar.update())
            for future in futures:
                future.result()
    bar.close()


def preprocess(
    input_dir: str | Path,
    layout: str,
    out: str | Path,
    cfg: PreprocessConfig | None = None,
    workers: int = 1,
    progress: bool = True,
    retry_skipped: bool = False,
) -> Report:
    """Run the whole preprocessing (see module docstring); returns what was written and skipped."""
    cfg = cfg or PreprocessConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _clean_partials(out)
    jobs = find_jobs(input_dir, layout)
    done = done_clips(out, retry_skipped)
    pending = [j for j in jobs if any(k not in done for k in j.clip_ids)]
    if pending:
        face_backend(cfg)  # missing weights or package: one clear error now, not one per clip
    _run_jobs(pending, cfg, out, done, workers, progress)
    written = pack(out, cfg.shard_clips, cfg.jpeg_quality, cfg.seed)
    report = Report(written=written, already_done=sum(k in done for j in jobs for k in j.clip_ids))
    report.total = sum(s["num_clips"] for s in read_index(out)["shards"])
    report.skipped = _write_skip_report(out)
    write_json_atomic(out / "preprocess_config.json", asdict(cfg))
    return report
