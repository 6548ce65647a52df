"""The built-in dataset: short talking clips synthesised from `skimage.data.astronaut()`.

It is the default data when no path is given, small enough to build in seconds, and it carries its
own ground truth, so disentanglement can be measured: per frame the mouth opening, yaw, pitch and
roll, and per clip the emotion id. How a clip is made:

* speech: Debian's ``espeak-ng`` reads a sentence with a per-speaker voice (a synthetic vowel signal
  with a syllable rhythm is used, with a warning, when the binary is absent); 16 kHz mono;
* mouth: the opening per frame is the speech loudness (RMS over the frame's 40 ms, normalised to
  [0, 1]); the lower lip and chin are pushed down by a smooth displacement field and the gap is
  shaded dark;
* emotion: a static displacement of brows and mouth corners (angry: brows down and in; happy: corners
  up and out; sad: corners down, inner brows up; neutral: none);
* speaker: colour (channel gains) and face geometry (width/height scale) per speaker;
* head motion: smooth sinusoidal roll (in-plane rotation), yaw and pitch (rendered as a horizontal /
  vertical foreshortening plus shift, a 2-D stand-in for out-of-plane rotation), in degrees.

The raw clips (MEAD layout, 25 fps H.264 + AAC, a ``.json`` with the factors beside each video) are
then run through the real `edtalk preprocess` pipeline and shard writer. Speaker S04 is the test
split. Clip ids: ``S01#happy#level_3#001``.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import shutil
import subprocess
import warnings
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from datamodules.preprocess.layouts import EMOTIONS

BUILD_VERSION = 2
RAW_SIZE = 256
SPEAKERS = ("S01", "S02", "S03", "S04")
BUILTIN_EMOTIONS = ("angry", "happy", "neutral", "sad")
TEST_SPEAKERS = ("S04",)
SENTENCES = (
    "she sells sea shells by the sea shore",
    "a quick brown fox jumps over the lazy dog",
    "we will meet again at noon tomorrow",
    "please open the window before you leave",
    "my mother baked bread on monday morning",
    "the blue boat moved across the bay",
)
# per speaker: espeak voice, RGB gains, face (width, height) scale
SPEAKER_STYLE = {
    "S01": ("en+m3", (1.00, 1.00, 1.00), (1.00, 1.00)),
    "S02": ("en+f2", (1.12, 0.95, 0.85), (0.90, 1.05)),
    "S03": ("en+m1", (0.85, 0.95, 1.15), (1.10, 0.95)),
    "S04": ("en+f4", (1.05, 1.08, 0.90), (0.95, 1.10)),
}


@dataclass
class ClipSpec:
    speaker: str
    emotion: str
    index: int
    seed: int

    @property
    def level(self) -> str:
        return "level_1" if self.emotion == "neutral" else "level_3"

    @property
    def key(self) -> str:
        return f"{self.speaker}#{self.emotion}#{self.level}#{self.index:03d}"


def default_root() -> Path:
    """``$EDTALK_CACHE/builtin`` or ``./.cache/edtalk/builtin``."""
    cache = os.environ.get("EDTALK_CACHE")
    return (Path(cache) if cache else Path.cwd() / ".cache" / "edtalk") / "builtin"


# -- speech ------------------------------------------------------------------------------------
def speak(text: str, voice: str = "en", speed: int = 165) -> np.ndarray:
    """16 kHz mono speech from espeak-ng, or a synthetic vowel signal (with a warning) without it."""
    from scipy.signal import resample_poly

    binary = shutil.which("espeak-ng")
    if binary is None:
        warnings.warn(
            "espeak-ng not found (apt-get install espeak-ng): the built-in dataset uses a synthetic vowel "
            "signal instead of speech",
            stacklevel=2,
        )
        return synthetic_vowels(len(text.split()) * 0.33, seed=len(text))
    result = subprocess.run(
        [binary, "-v", voice, "-s", str(speed), "--stdout", text], capture_output=True, check=True
    )
    import soundfile as sf

    wav, rate = sf.read(io.BytesIO(result.stdout), dtype="float32")
    g = np.gcd(16000, int(rate))
    return resample_poly(wav, 16000 // g, int(rate) // g).astype(np.float32)


def synthetic_vowels(seconds: float, seed: int = 0) -> np.ndarray:
    """A voiced buzz (f0 110-200 Hz, vowel formants) under a ~4 Hz syllable envelope with pauses."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    f0 = rng.uniform(110, 200) * (1 + 0.05 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(f0) / 16000
    voice = sum(np.sin(k * phase) / k * np.exp(-((k * f0 - 700) ** 2) / 2e5) for k in range(1, 20))
    syllables = np.clip(np.sin(2 * np.pi * rng.uniform(3, 5) * t + rng.uniform(0, 6)), 0, None) ** 2
    pauses = np.sin(2 * np.pi * 0.4 * t + rng.uniform(0, 6)) > -0.6
    wav = voice * syllables * pauses
    return (0.5 * wav / (np.abs(wav).max() + 1e-9)).astype(np.float32)


def mouth_opening(wav: np.ndarray, num_frames: int) -> np.ndarray:
    """Per-frame loudness (RMS of each 640-sample frame), 3-tap smoothed, scaled to [0, 1]."""
    frames = np.pad(wav, (0, max(0, num_frames * 640 - len(wav))))[: num_frames * 640].reshape(
        num_frames, 640
    )
    rms = np.sqrt((frames**2).mean(1))
    rms = np.convolve(np.pad(rms, 1, mode="edge"), [0.25, 0.5, 0.25], mode="valid")
    return np.clip(rms / (np.percentile(rms, 95) + 1e-6), 0, 1).astype(np.float32)


# -- face rendering ----------------------------------------------------------------------------
@dataclass
class Face:
    image: np.ndarray  # base RGB uint8 (astronaut with the speaker's colour)
    lmk: np.ndarray  # 68 x 2 landmarks of the base image
    size: tuple[float, float]  # face geometry scale (width, height)


@lru_cache(maxsize=1)
def _astronaut() -> tuple[np.ndarray, np.ndarray]:
    from skimage import data

    from datamodules.preprocess.landmarks import get_backend

    image = data.astronaut()
    backend = get_backend("dlib")
    return image, backend.landmarks(image, backend.detect(image)[0])


def base_face(speaker: str) -> Face:
    """The astronaut in a speaker's colours, with her 68 landmarks."""
    image, lmk = _astronaut()
    _, gains, size = SPEAKER_STYLE[speaker]
    coloured = np.clip(image.astype(np.float32) * np.asarray(gains, np.float32), 0, 255).astype(np.uint8)
    return Face(coloured, lmk, size)


def _bumps(emotion: str, lmk: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """(centre, displacement, sigma) Gaussian bumps in base pixels for an emotion."""
    w = float(lmk[:, 0].max() - lmk[:, 0].min())
    s, u = 0.1 * w, 0.07 * w  # bump width, displacement unit
    left_c, right_c, inner_l, inner_r = lmk[48], lmk[54], lmk[21], lmk[22]
    brows_l, brows_r = lmk[17:22].mean(0), lmk[22:27].mean(0)
    table: dict[str, list[tuple[np.ndarray, tuple[float, float], float]]] = {
        "neutral": [],
        "happy": [(left_c, (-0.4 * u, -u), s), (right_c, (0.4 * u, -u), s)],
        "sad": [(left_c, (0, u), s), (right_c, (0, u), s), (inner_l, (0, -0.8 * u), s), (inner_r, (0, -0.8 * u), s)],
        "angry": [(brows_l, (0.4 * u, 0.8 * u), 1.5 * s), (brows_r, (-0.4 * u, 0.8 * u), 1.5 * s),
                  (left_c, (0.3 * u, 0), s), (right_c, (-0.3 * u, 0), s)],
    }  # fmt: skip
    return [(np.asarray(c), np.asarray(d, np.float64), sig) for c, d, sig in table[emotion]]


def _displacement(q: np.ndarray, bumps: list[tuple[np.ndarray, np.ndarray, float]]) -> np.ndarray:
    """Backward displacement at base points q (... x 2): content moves by +d, so sample at q - d."""
    out = np.zeros_like(q)
    for centre, d, sigma in bumps:
        weight = np.exp(-((q - centre) ** 2).sum(-1) / (2 * sigma**2))
        out += weight[..., None] * d
    return out


def _mouth_warp(q: np.ndarray, lmk: np.ndarray, opening: float) -> tuple[np.ndarray, np.ndarray]:
    """Jaw displacement (... x 2) and dark-gap alpha (...) for a mouth opening in [0, 1]."""
    centre = lmk[60:68].mean(0)
    width = float(lmk[54, 0] - lmk[48, 0])
    gap = opening * 0.35 * width
    rel = q - centre
    below = 1 / (1 + np.exp(-rel[..., 1] / 1.5))
    falloff = np.exp(-(rel[..., 0] ** 2) / (2 * (0.7 * width) ** 2)) * np.exp(
        -np.clip(rel[..., 1], 0, None) / (1.6 * width)
    )
    disp = np.zeros_like(q)
    disp[..., 1] = gap * below * falloff
    ellipse = (rel[..., 0] / (0.42 * width)) ** 2 + ((rel[..., 1] - gap / 2) / max(gap / 2, 1e-3)) ** 2
    alpha = np.clip((1 - ellipse) * 3, 0, 1) * min(1.0, gap / 2)
    return disp, alpha


def _pose_matrix(face: Face, yaw: float, pitch: float, roll: float) -> np.ndarray:
    """2x3 affine from base pixels to raw-frame pixels for a head pose (degrees)."""
    centre = face.lmk.mean(0)
    face_w = float(face.lmk[:, 0].max() - face.lmk[:, 0].min())
    zoom = 0.45 * RAW_SIZE / face_w
    ry, rp, rr = np.radians([yaw, pitch, roll])
    squash = np.diag([face.size[0] * np.cos(ry), face.size[1] * np.cos(rp)])
    rot = np.array([[np.cos(rr), -np.sin(rr)], [np.sin(rr), np.cos(rr)]])
    lin = zoom * rot @ squash
    target = np.array(
        [
            RAW_SIZE / 2 + 0.35 * face_w * zoom * np.sin(ry),
            RAW_SIZE * 0.55 + 0.35 * face_w * zoom * np.sin(rp),
        ]
    )
    return np.hstack([lin, (target - lin @ centre)[:, None]])


def render_frame(
    face: Face, bumps: list[Any], opening: float, yaw: float, pitch: float, roll: float
) -> np.ndarray:
    """One RAW_SIZE² RGB uint8 frame."""
    import cv2

    m = _pose_matrix(face, yaw, pitch, roll)
    inv = np.linalg.inv(np.vstack([m, [0, 0, 1]]))[:2]
    ys, xs = np.mgrid[0:RAW_SIZE, 0:RAW_SIZE].astype(np.float64)
    q = np.stack([xs, ys], -1) @ inv[:, :2].T + inv[:, 2]  # -> S x S x 2 base coords
    jaw, alpha = _mouth_warp(q, face.lmk, opening)
    src = q - _displacement(q, bumps) - jaw
    out = cv2.remap(face.image, src[..., 0].astype(np.float32), src[..., 1].astype(np.float32), cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_REFLECT)  # fmt: skip
    dark = np.array([60, 20, 25], np.float32)
    blended = out.astype(np.float32) * (1 - alpha[..., None]) + dark * alpha[..., None]
    return blended.round().astype(np.uint8)


def head_motion(num_frames: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Smooth yaw / pitch / roll (degrees) as sums of two slow sinusoids."""
    t = np.arange(num_frames) / 25
    motion = {}
    for name, amp in (("yaw", 12.0), ("pitch", 8.0), ("roll", 6.0)):
        waves = [rng.uniform(0.3, 0.8) * amp * np.sin(2 * np.pi * rng.uniform(0.15, 0.6) * t + rng.uniform(0, 6))
                 for _ in range(2)]  # fmt: skip
        motion[name] = np.clip(sum(waves), -amp, amp).astype(np.float32)
    return motion


# -- building ----------------------------------------------------------------------------------
def make_raw_clip(spec: ClipSpec, raw_root: Path, max_seconds: float = 3.0) -> Path:
    """Render one raw clip (mp4 with audio + json factors) in the MEAD layout; returns the video path."""
    from edtalk.io import write_video

    rng = np.random.default_rng(spec.seed)
    voice = SPEAKER_STYLE[spec.speaker][0]
    wav = speak(SENTENCES[spec.seed % len(SENTENCES)], voice, speed=int(rng.integers(150, 185)))
    num_frames = int(np.clip(len(wav) // 640, 50, max_seconds * 25))
    wav = np.pad(wav, (0, max(0, num_frames * 640 - len(wav))))[: num_frames * 640]
    face = base_face(spec.speaker)
    bumps = _bumps(spec.emotion, face.lmk)
    opening = mouth_opening(wav, num_frames)
    pose = head_motion(num_frames, rng)
    frames = np.stack([render_frame(face, bumps, float(opening[i]), *(float(pose[k][i]) for k in ("yaw", "pitch", "roll")))
                       for i in range(num_frames)])  # fmt: skip
    folder = raw_root / spec.speaker / "video" / "front" / spec.emotion / spec.level
    video = write_video(folder / f"{spec.index:03d}.mp4", frames, audio=wav)
    factors = {"mouth_open": opening.tolist(), **{k: v.tolist() for k, v in pose.items()}}
    factors["emotion_id"] = EMOTIONS.index(spec.emotion)
    sidecar = {
        "dataset": "builtin",
        "factors": factors,
        "speech": "espeak-ng" if shutil.which("espeak-ng") else "vowels",
    }
    video.with_suffix(".json").write_text(json.dumps(sidecar))
    return video


def clip_specs(clips_per_pair: int = 2) -> list[ClipSpec]:
    specs = []
    for s, speaker in enumerate(SPEAKERS):
        for e, emotion in enumerate(BUILTIN_EMOTIONS):
            for k in range(1, clips_per_pair + 1):
                specs.append(ClipSpec(speaker, emotion, k, seed=100 * s + 10 * e + k))
    return specs


def build_raw(raw_root: Path, workers: int = 2, clips_per_pair: int = 2) -> list[Path]:
    """Render every raw clip (in parallel) under `raw_root`."""
    specs = clip_specs(clips_per_pair)
    if workers <= 1:
        return [make_raw_clip(s, raw_root) for s in specs]
    with ProcessPoolExecutor(workers, mp_context=get_context("fork")) as pool:
        return list(pool.map(make_raw_clip, specs, [raw_root] * len(specs)))


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def is_built(root: Path) -> bool:
    stamp = root / "build.json"
    return stamp.is_file() and json.loads(stamp.read_text()).get("version") == BUILD_VERSION


def build(root: Path, workers: int = 2, progress: bool = False) -> Path:
    """Build raw clips and shards under `root` (``raw/``, ``shards/``); returns the shard directory."""
    from datamodules.preprocess.pipeline import PreprocessConfig, preprocess

    for name in ("raw", "shards", ".shards-build"):
        shutil.rmtree(root / name, ignore_errors=True)
    build_raw(root / "raw", workers)
    cfg = PreprocessConfig(test_speakers=TEST_SPEAKERS, shard_clips=4)
    report = preprocess(root / "raw", "mead", root / ".shards-build", cfg, workers=workers, progress=progress)
    if report.skipped:
        raise RuntimeError(
            f"built-in dataset: preprocessing skipped {report.skipped}; please report this bug"
        )
    os.replace(root / ".shards-build", root / "shards")
    (root / "build.json").write_text(json.dumps({"version": BUILD_VERSION, "clips": report.total}))
    return root / "shards"


def ensure_builtin(root: Path | None = None, workers: int | None = None) -> Path:
    """The built-in dataset's shard directory, built first if missing (safe across processes).

    Args:
        root: dataset folder (default `default_root()`); shards go to ``root/shards``.
        workers: processes for building (default: up to 2).

    Returns:
        The shard directory (``index.json`` + ``train-*.tar`` / ``test-*.tar``).
    """
    root = Path(root) if root is not None else default_root()
    if is_built(root):
        return root / "shards"
    with _locked(root):
        if not is_built(root):
            build(root, workers or min(2, os.cpu_count() or 1))
    return root / "shards"
