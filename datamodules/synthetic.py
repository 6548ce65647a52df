"""The built-in dataset: short talking clips synthesised from `skimage.data.astronaut()`.

It is the default data when no path is given, small enough to build in a couple of minutes, and it
carries its own ground truth, so disentanglement can be measured: per frame the mouth opening, yaw,
pitch and roll, and per clip the emotion id and its intensity. How a clip is made:

* speaker: eight looks of one face (colour gains, face width/height, eye spacing, background tint)
  and eight espeak-ng voices; S07 and S08 are held out (the test split);
* emotion (angry, happy, neutral, sad; MEAD level-3 strength, a per-clip intensity in `INTENSITY`): a
  configuration of several regions (`EXPRESSIONS`): brows, lid aperture, mouth-corner shape, cheeks,
  creases and colour (blush, flush, pallor), read by a linear probe at 32² (tests/datamodules);
* speech: espeak-ng reads a sentence in the speaker's voice with the emotion's prosody (`PROSODY`:
  pitch level and range, rate, loudness, scaled by the intensity), so the emotion is audible and
  independent of the voice (a synthetic vowel signal is used, with a warning, without espeak-ng);
* mouth: the opening per frame is the speech loudness (RMS over the frame's 40 ms, normalised to
  [0, 1] per clip); the lower lip and chin are pushed down by a smooth displacement field and the gap
  is shaded dark;
* head motion: smooth sinusoidal roll (in-plane rotation), yaw and pitch (rendered as a horizontal /
  vertical foreshortening plus shift, a 2-D stand-in for out-of-plane rotation), in degrees.

The raw clips (MEAD layout, 25 fps H.264 + AAC, a ``.json`` with the factors beside each video) are
then run through the real `edtalk preprocess` pipeline and shard writer. Clip ids:
``S01#happy#level_3#001``.
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

BUILD_VERSION = 4
RAW_SIZE = 256
SPEAKERS = ("S01", "S02", "S03", "S04", "S05", "S06", "S07", "S08")
BUILTIN_EMOTIONS = ("angry", "happy", "neutral", "sad")
TEST_SPEAKERS = ("S07", "S08")
SENTENCES = (
    "she sells sea shells by the sea shore",
    "a quick brown fox jumps over the lazy dog",
    "we will meet again at noon tomorrow",
    "please open the window before you leave",
    "my mother baked bread on monday morning",
    "the blue boat moved across the bay",
)


@dataclass(frozen=True)
class SpeakerStyle:
    """A speaker's voice and looks: espeak voice, RGB gains, face (width, height) scale, background tint
    (RGB added outside the face) and eye spacing scale. (A mirrored face was tried as a further look: it
    halves what a linear pixel probe reads of the head pose, whose pixel change follows the image's
    gradients, so it is not used.)"""

    voice: str
    gains: tuple[float, float, float]
    size: tuple[float, float]
    tint: tuple[float, float, float]
    eyes: float


SPEAKER_STYLE = {
    "S01": SpeakerStyle("en+m3", (1.00, 1.00, 1.00), (1.00, 1.00), (0, 0, 0), 1.00),
    "S02": SpeakerStyle("en+f2", (1.15, 0.92, 0.80), (0.88, 1.06), (40, -20, -30), 1.06),
    "S03": SpeakerStyle("en+m1", (0.80, 0.92, 1.15), (1.12, 0.94), (-30, 10, 50), 0.94),
    "S04": SpeakerStyle("en+f4", (1.05, 1.10, 0.85), (0.94, 1.12), (0, 40, -20), 1.00),
    "S05": SpeakerStyle("en+m5", (0.70, 0.72, 0.75), (1.06, 1.04), (60, 60, 60), 0.95),
    "S06": SpeakerStyle("en+f1", (1.20, 1.12, 1.05), (0.92, 0.94), (-40, -40, 0), 1.05),
    "S07": SpeakerStyle("en+m2", (0.92, 1.02, 1.08), (1.04, 0.97), (20, -30, 30), 1.03),
    "S08": SpeakerStyle("en+f3", (1.10, 0.98, 0.88), (0.96, 1.08), (-20, 30, 10), 0.97),
}
# Emotional prosody, the same for every speaker: pitch (espeak-ng's -p, 0-99; the voice's own base pitch
# shifts it), pitch range (SSML range, %), rate (words per minute) and loudness (dB of gain on speech made at
# `SPEECH_AMPLITUDE`: espeak-ng's own -a clips above ~150, so the gain is applied here). A clip's
# intensity scales the distance from neutral.
PROSODY = {
    "neutral": {"pitch": 45.0, "range": 100.0, "rate": 160.0, "gain_db": 0.0},
    "happy": {"pitch": 85.0, "range": 200.0, "rate": 175.0, "gain_db": 6.0},
    "angry": {"pitch": 60.0, "range": 50.0, "rate": 250.0, "gain_db": 12.0},
    "sad": {"pitch": 15.0, "range": 30.0, "rate": 105.0, "gain_db": -10.0},
}
SPEECH_AMPLITUDE = 30  # espeak-ng -a: peaks ~0.22, so +12 dB stays below full scale
INTENSITY = (0.7, 1.0)  # per-clip emotion intensity, uniform (MEAD level 3: strong); neutral clips: 0


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

    @property
    def intensity(self) -> float:
        """The clip's emotion intensity in `INTENSITY` (0 for neutral), fixed by its seed."""
        if self.emotion == "neutral":
            return 0.0
        return float(np.random.default_rng([self.seed, 7]).uniform(*INTENSITY))


def default_root() -> Path:
    """``$EDTALK_CACHE/builtin`` or ``./.cache/edtalk/builtin``."""
    cache = os.environ.get("EDTALK_CACHE")
    return (Path(cache) if cache else Path.cwd() / ".cache" / "edtalk") / "builtin"


# -- speech ------------------------------------------------------------------------------------
def prosody(emotion: str, intensity: float) -> dict[str, float]:
    """espeak-ng controls for an emotion at an intensity (0 = neutral's, 1 = the `PROSODY` row); the voice
    follows the intensity half as steeply as the face (intensity 0.7 keeps 85 % of the contrast)."""
    base, target = PROSODY["neutral"], PROSODY[emotion]
    scale = 0.5 + 0.5 * intensity if intensity > 0 else 0.0
    return {k: base[k] + scale * (target[k] - base[k]) for k in base}


def speak(
    text: str,
    voice: str = "en",
    speed: int = 165,
    pitch: float = 50.0,
    amplitude: float = 100.0,
    pitch_range: float = 100.0,
) -> np.ndarray:
    """16 kHz mono speech from espeak-ng, or a synthetic vowel signal (with a warning) without it.

    `pitch` (0-99), `amplitude` (0-200) and `speed` (words per minute) are espeak-ng's `-p`, `-a`, `-s`;
    `pitch_range` (%) goes in as SSML ``<prosody range>``.
    """
    from scipy.signal import resample_poly

    binary = shutil.which("espeak-ng")
    if binary is None:
        warnings.warn(
            "espeak-ng not found (apt-get install espeak-ng): the built-in dataset uses a synthetic vowel "
            "signal instead of speech",
            stacklevel=2,
        )
        wav = synthetic_vowels(len(text.split()) * 0.33 * 165 / speed, seed=len(text), f0=80 + 2.4 * pitch)
        return (wav * amplitude / 100).astype(np.float32)
    ssml = f'<speak><prosody range="{pitch_range:.0f}%">{text}</prosody></speak>'
    args = ["-v", voice, "-s", str(int(speed)), "-p", str(int(pitch)), "-a", str(int(amplitude)), "-m"]
    result = subprocess.run([binary, *args, "--stdout", ssml], capture_output=True, check=True)
    import soundfile as sf

    wav, rate = sf.read(io.BytesIO(result.stdout), dtype="float32")
    g = np.gcd(16000, int(rate))
    return resample_poly(wav, 16000 // g, int(rate) // g).astype(np.float32)


def synthetic_vowels(seconds: float, seed: int = 0, f0: float | None = None) -> np.ndarray:
    """A voiced buzz (f0 110-200 Hz, vowel formants) under a ~4 Hz syllable envelope with pauses."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    pitch = (f0 or rng.uniform(110, 200)) * (1 + 0.05 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / 16000
    voice = sum(np.sin(k * phase) / k * np.exp(-((k * pitch - 700) ** 2) / 2e5) for k in range(1, 20))
    syllables = np.clip(np.sin(2 * np.pi * rng.uniform(3, 5) * t + rng.uniform(0, 6)), 0, None) ** 2
    pauses = np.sin(2 * np.pi * 0.4 * t + rng.uniform(0, 6)) > -0.6
    wav = voice * syllables * pauses
    return (0.5 * wav / (np.abs(wav).max() + 1e-9)).astype(np.float32)


def frame_loudness(wav: np.ndarray, num_frames: int) -> np.ndarray:
    """Per-frame loudness: RMS of each 640-sample frame (zero-padded to `num_frames`), 3-tap smoothed."""
    frames = np.pad(wav, (0, max(0, num_frames * 640 - len(wav))))[: num_frames * 640].reshape(
        num_frames, 640
    )
    rms = np.sqrt((frames**2).mean(1))
    return np.convolve(np.pad(rms, 1, mode="edge"), [0.25, 0.5, 0.25], mode="valid")


def mouth_opening(wav: np.ndarray, num_frames: int) -> np.ndarray:
    """`frame_loudness` scaled to [0, 1] per clip (by its 95th percentile)."""
    rms = frame_loudness(wav, num_frames)
    return np.clip(rms / (np.percentile(rms, 95) + 1e-6), 0, 1).astype(np.float32)


def audio_statistics(wav: np.ndarray, rate: int = 16000) -> dict[str, float]:
    """Per-clip prosody: median and inter-quartile spread of f0 (semitones re 100 Hz, YIN), loudness
    (mean dB of the frames within 30 dB of the clip's loudest) and onset rate (1/s)."""
    import librosa

    wav = np.asarray(wav, np.float32)
    f0 = librosa.yin(wav, fmin=60, fmax=600, sr=rate, frame_length=1024, hop_length=320)
    db = 20 * np.log10(librosa.feature.rms(y=wav, frame_length=640, hop_length=320)[0] + 1e-6)
    n = min(len(f0), len(db))
    voiced = db[:n] > db.max() - 30
    semis = 12 * np.log2(f0[:n][voiced] / 100.0)
    onsets = librosa.onset.onset_detect(y=wav, sr=rate, hop_length=160, units="time")
    return {
        "f0_median": float(np.median(semis)),
        "f0_spread": float(np.percentile(semis, 75) - np.percentile(semis, 25)),
        "loudness": float(db[:n][voiced].mean()),
        "rate": float(len(onsets) / (len(wav) / rate)),
    }


# -- face rendering ----------------------------------------------------------------------------
@dataclass
class Face:
    image: np.ndarray  # base RGB uint8 (astronaut with the speaker's colour)
    lmk: np.ndarray  # 68 x 2 landmarks of the base image
    size: tuple[float, float]  # face geometry scale (width, height)
    tint: tuple[float, float, float] = (0.0, 0.0, 0.0)  # background tint outside the face


@lru_cache(maxsize=1)
def _astronaut() -> tuple[np.ndarray, np.ndarray]:
    from skimage import data

    from datamodules.preprocess.landmarks import get_backend

    image = data.astronaut()
    backend = get_backend("dlib")
    return image, backend.landmarks(image, backend.detect(image)[0])


# the 68-point landmark order of a horizontally mirrored face (left and right swap): an expression's
# moves are given for the face's left half and mirrored to the right
_MIRROR = np.array(
    [*range(16, -1, -1), *range(26, 16, -1), 27, 28, 29, 30, 35, 34, 33, 32, 31,
     45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40,
     54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55, 64, 63, 62, 61, 60, 67, 66, 65]
)  # fmt: skip


def base_face(speaker: str) -> Face:
    """The astronaut in a speaker's colours and geometry (face shape, eye spacing), with her 68 landmarks."""
    import cv2

    image, lmk = _astronaut()
    style = SPEAKER_STYLE[speaker]
    lmk = lmk.astype(np.float64)
    if style.eyes != 1.0:  # eye spacing: push the eye regions apart / together about the nose bridge
        w = float(lmk[:, 0].max() - lmk[:, 0].min())
        half = 0.5 * (lmk[36:42, 0].mean() - lmk[42:48, 0].mean())
        shift = (style.eyes - 1) * half
        bumps = [(lmk[36:42].mean(0), np.array([shift, 0.0]), 0.16 * w),
                 (lmk[42:48].mean(0), np.array([-shift, 0.0]), 0.16 * w)]  # fmt: skip
        ys, xs = np.mgrid[0 : image.shape[0], 0 : image.shape[1]].astype(np.float64)
        q = np.stack([xs, ys], -1)
        src = (q - _displacement(q, bumps)).astype(np.float32)
        image = cv2.remap(np.ascontiguousarray(image), src[..., 0], src[..., 1], cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT)  # fmt: skip
        for idx, (_, d, _) in zip((slice(36, 42), slice(42, 48)), bumps, strict=True):
            lmk[idx] = lmk[idx] + d
    coloured = np.clip(image.astype(np.float32) * np.asarray(style.gains, np.float32), 0, 255).astype(
        np.uint8
    )
    return Face(coloured, lmk, style.size, style.tint)


# An emotion is a configuration of regions, in units of the face width w (base pixels), at intensity 1:
# "move": (landmarks, (dx, dy), sigma) Gaussian displacement bumps (dx > 0: towards the face's middle on
# the left half, mirrored on the right); "eyes": lid aperture (< 0 narrower, > 0 wider) and where the
# lids meet (-1 upper lid drops, +1 lower lid rises); "lines": dark creases (landmark a, landmark b,
# offset of both ends, strength).
EXPRESSIONS: dict[str, dict[str, Any]] = {
    "neutral": {"move": [], "eyes": (0.0, 0.0), "lines": [], "tints": []},
    "happy": {
        "move": [((48,), (-0.07, -0.15), 0.10), ((2, 31), (0.0, -0.08), 0.12), ((17, 18, 19, 20, 21), (0.0, -0.03), 0.15)],
        "eyes": (-0.3, 1.0),
        "lines": [(31, 48, (-0.05, 0.0), 0.45)],
        "tints": [((2, 31), 0.13, (30.0, -8.0, -8.0))],
    },
    "sad": {
        "move": [((48,), (0.02, 0.13), 0.10), ((21,), (0.02, -0.06), 0.09), ((57,), (0.0, -0.04), 0.10)],
        "eyes": (-0.4, -1.0),
        "lines": [(21, 20, (0.0, -0.12), 0.35)],
        "tints": [((27, 30), 0.35, (-18.0, 0.0, 14.0)), ((40, 41), 0.06, (-25.0, -25.0, -15.0))],
    },
    "angry": {
        "move": [((17, 18, 19, 20, 21), (0.05, 0.09), 0.13), ((48,), (0.07, 0.02), 0.08), ((57,), (0.0, -0.05), 0.09)],
        "eyes": (0.35, -1.0),
        "lines": [(21, 27, (0.0, -0.04), 0.55)],
        "tints": [((21, 27), 0.22, (22.0, -18.0, -18.0))],
    },
}  # fmt: skip
# "tints": (landmarks, sigma, RGB added at the centre): blush, flush, pallor and shadows.
# (the brow and lid moves stop where dlib's HOG detector, which the real preprocessing runs, still finds
# the face in most frames: a larger inner-brow raise for sad lost the face in 11 of 16 sampled frames)


def _mirror_index(i: int) -> int:
    return int(_MIRROR[i])


def _expression(emotion: str, lmk: np.ndarray, intensity: float) -> dict[str, Any]:
    """An emotion's bumps, lid squeezes and creases in base pixels for a face, scaled by `intensity`."""
    spec = EXPRESSIONS[emotion]
    w = float(lmk[:, 0].max() - lmk[:, 0].min())
    mid = float(lmk[27:31, 0].mean())
    bumps = []
    for points, (dx, dy), sigma in spec["move"]:
        for side in (1, -1):  # the face's left half in the table, then its mirror image on the right
            idx = list(points) if side == 1 else [_mirror_index(i) for i in points]
            centre = lmk[idx].mean(0)
            inward = 1.0 if centre[0] < mid else -1.0
            bumps.append((centre, intensity * w * np.array([inward * dx, dy]), sigma * w))
    aperture, where = spec["eyes"]
    eyes = [(lmk[sl].mean(0), intensity * aperture, where, 0.11 * w) for sl in (slice(36, 42), slice(42, 48))]
    lines = []
    for a, b, (ox, oy), strength in spec["lines"]:
        for side in (1, -1):
            ia, ib = (a, b) if side == 1 else (_mirror_index(a), _mirror_index(b))
            inward = 1.0 if lmk[ia, 0] < mid else -1.0
            off = w * np.array([inward * ox, oy])
            lines.append((lmk[ia] + off, lmk[ib] + off, 0.025 * w, intensity * strength))
    tints = []
    for points, sigma, rgb in spec["tints"]:
        sides = {tuple(points), tuple(_mirror_index(i) for i in points)}  # one patch on the midline
        tints += [(lmk[list(idx)].mean(0), sigma * w, intensity * np.asarray(rgb)) for idx in sorted(sides)]
    return {"bumps": bumps, "eyes": eyes, "lines": lines, "tints": tints}


def _displacement(q: np.ndarray, bumps: list[tuple[np.ndarray, np.ndarray, float]]) -> np.ndarray:
    """Backward displacement at base points q (... x 2): content moves by +d, so sample at q - d."""
    out = np.zeros_like(q)
    for centre, d, sigma in bumps:
        weight = np.exp(-((q - centre) ** 2).sum(-1) / (2 * sigma**2))
        out += weight[..., None] * d
    return out


def _lids(q: np.ndarray, eyes: list[tuple[np.ndarray, float, float, float]]) -> np.ndarray:
    """Backward displacement of the eye regions: a vertical scaling about where the lids meet."""
    out = np.zeros_like(q)
    for centre, aperture, where, sigma in eyes:
        if aperture == 0:
            continue
        pivot_y = centre[1] + where * 0.35 * sigma
        weight = np.exp(
            -((q[..., 0] - centre[0]) ** 2) / (2 * sigma**2)
            - ((q[..., 1] - centre[1]) ** 2) / (2 * (0.6 * sigma) ** 2)
        )
        # aperture < 0: sample farther from the pivot, so the content is squeezed towards it
        out[..., 1] += weight * aperture / (1 + abs(aperture)) * (q[..., 1] - pivot_y)
    return out


def _tints(q: np.ndarray, tints: list[tuple[np.ndarray, float, np.ndarray]]) -> np.ndarray:
    """RGB (... x 3) added by Gaussian colour patches at base points q."""
    out = np.zeros((*q.shape[:-1], 3), np.float32)
    for centre, sigma, rgb in tints:
        weight = np.exp(-((q - centre) ** 2).sum(-1) / (2 * sigma**2)).astype(np.float32)
        out += weight[..., None] * rgb.astype(np.float32)
    return out


def _creases(q: np.ndarray, lines: list[tuple[np.ndarray, np.ndarray, float, float]]) -> np.ndarray:
    """Darkening (...) in [0, 1) of the creases at base points q."""
    dark = np.zeros(q.shape[:-1])
    for a, b, width, strength in lines:
        ab = b - a
        t = np.clip(((q - a) * ab).sum(-1) / max(float((ab**2).sum()), 1e-6), 0, 1)
        dist2 = ((q - (a + t[..., None] * ab)) ** 2).sum(-1)
        dark = np.maximum(dark, strength * np.exp(-dist2 / (2 * width**2)))
    return np.clip(dark, 0, 0.9)


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


def _outside(q: np.ndarray, lmk: np.ndarray) -> np.ndarray:
    """Soft mask (...) in [0, 1]: 1 well outside the face's ellipse (jaw and brows), 0 on the face."""
    centre = lmk[:27].mean(0)
    w = float(lmk[:, 0].max() - lmk[:, 0].min())
    h = float(lmk[:, 1].max() - lmk[:, 1].min())
    r = np.sqrt(((q[..., 0] - centre[0]) / (0.75 * w)) ** 2 + ((q[..., 1] - centre[1]) / (0.85 * h)) ** 2)
    return np.clip((r - 1.0) / 0.3, 0, 1)


def expression_maps(shape: tuple[int, ...], expression: dict[str, Any]) -> dict[str, np.ndarray]:
    """An expression's fields on the base image's pixel grid (computed once per clip, then sampled per
    frame): backward displacement H x W x 2 (bumps + lids), crease darkening H x W, colour H x W x 3."""
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    p = np.stack([xs, ys], -1)
    disp = _displacement(p, expression["bumps"]) + _lids(p, expression["eyes"])
    skin = p - disp
    return {
        "disp": disp.astype(np.float32),
        "dark": _creases(skin, expression["lines"]).astype(np.float32),
        "tint": _tints(skin, expression["tints"]),
    }


def render_frame(
    face: Face, expression: dict[str, Any], opening: float, yaw: float, pitch: float, roll: float
) -> np.ndarray:
    """One RAW_SIZE² RGB uint8 frame (`expression` from `_expression`; its `maps` are made if absent)."""
    import cv2

    if "maps" not in expression:
        expression["maps"] = expression_maps(face.image.shape, expression)
    maps = expression["maps"]
    m = _pose_matrix(face, yaw, pitch, roll)
    inv = np.linalg.inv(np.vstack([m, [0, 0, 1]]))[:2]
    ys, xs = np.mgrid[0:RAW_SIZE, 0:RAW_SIZE].astype(np.float64)
    q = np.stack([xs, ys], -1) @ inv[:, :2].T + inv[:, 2]  # -> S x S x 2 base coords
    qx, qy = q[..., 0].astype(np.float32), q[..., 1].astype(np.float32)

    def at_q(field: np.ndarray) -> np.ndarray:  # a base-grid field sampled at the frame's base coords
        return cv2.remap(field, qx, qy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    skin = q - at_q(maps["disp"])  # the expression moves the skin
    jaw, alpha = _mouth_warp(skin, face.lmk, opening)  # the mouth opens on the moved skin
    src = (skin - jaw).astype(np.float32)
    out = cv2.remap(face.image, src[..., 0], src[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    out = out.astype(np.float32) * (1 - at_q(maps["dark"])[..., None]) + at_q(maps["tint"])  # creases, colour
    out += _outside(q, face.lmk)[..., None] * np.asarray(face.tint, np.float32)
    dark = np.array([60, 20, 25], np.float32)
    blended = out * (1 - alpha[..., None]) + dark * alpha[..., None]
    return np.clip(blended.round(), 0, 255).astype(np.uint8)


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
def clip_speech(spec: ClipSpec, rng: np.random.Generator) -> np.ndarray:
    """A clip's sentence in its speaker's voice with its emotion's prosody (16 kHz mono)."""
    p = prosody(spec.emotion, spec.intensity)
    jitter = rng.uniform(0.95, 1.05)  # a little per-clip variation of the rate
    wav = speak(
        SENTENCES[spec.seed % len(SENTENCES)],
        SPEAKER_STYLE[spec.speaker].voice,
        speed=int(p["rate"] * jitter),
        pitch=p["pitch"],
        amplitude=SPEECH_AMPLITUDE,
        pitch_range=p["range"],
    )
    return np.clip(wav * 10 ** (p["gain_db"] / 20), -1, 1).astype(np.float32)


def make_raw_clip(spec: ClipSpec, raw_root: Path, max_seconds: float = 3.0) -> Path:
    """Render one raw clip (mp4 with audio + json factors) in the MEAD layout; returns the video path."""
    from edtalk.io import write_video

    rng = np.random.default_rng(spec.seed)
    wav = clip_speech(spec, rng)
    num_frames = int(np.clip(len(wav) // 640, 50, max_seconds * 25))
    wav = np.pad(wav, (0, max(0, num_frames * 640 - len(wav))))[: num_frames * 640]
    face = base_face(spec.speaker)
    expression = _expression(spec.emotion, face.lmk, spec.intensity)
    opening = mouth_opening(wav, num_frames)
    pose = head_motion(num_frames, rng)
    frames = np.stack([render_frame(face, expression, float(opening[i]), *(float(pose[k][i]) for k in ("yaw", "pitch", "roll")))
                       for i in range(num_frames)])  # fmt: skip
    folder = raw_root / spec.speaker / "video" / "front" / spec.emotion / spec.level
    video = write_video(folder / f"{spec.index:03d}.mp4", frames, audio=wav)
    factors = {"mouth_open": opening.tolist(), **{k: v.tolist() for k, v in pose.items()}}
    factors["emotion_id"] = EMOTIONS.index(spec.emotion)
    factors["intensity"] = spec.intensity
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
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:  # not fork: see preprocess
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


# the code that makes the built-in dataset: a change to any of it (a detector retry, a crop, the mel) changes
# the shards, so a dataset built before it is stale and is built again
BUILD_SOURCES = (
    "datamodules/synthetic.py",
    "datamodules/preprocess/crop.py",
    "datamodules/preprocess/landmarks.py",
    "datamodules/preprocess/layouts.py",
    "datamodules/preprocess/pipeline.py",
    "datamodules/preprocess/track.py",
    "datamodules/shards.py",
    "datamodules/splits.py",
    "datamodules/assets/splits.json",
    "datamodules/assets/crop_template_M003.json",
    "edtalk/io.py",
    "edtalk/mel.py",
)


def build_fingerprint() -> str:
    """sha256 (16 hex digits) of `BUILD_SOURCES` and `BUILD_VERSION`: the build stamp's `code`."""
    import hashlib

    top = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256(str(BUILD_VERSION).encode())
    for name in BUILD_SOURCES:
        path = top / name
        digest.update(name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b"missing"))
    return digest.hexdigest()[:16]


def is_built(root: Path) -> bool:
    """Whether `root` holds the built-in dataset as today's code makes it (`build.json`'s version and code,
    and the shard index it describes)."""
    stamp = root / "build.json"
    if not stamp.is_file() or not (root / "shards" / "index.json").is_file():
        return False
    made = json.loads(stamp.read_text())
    return bool(made.get("version") == BUILD_VERSION and made.get("code") == build_fingerprint())


def build(root: Path, workers: int = 2, progress: bool = False) -> Path:
    """Build raw clips and shards under `root` (``raw/``, ``shards/``); returns the shard directory."""
    from datamodules.preprocess.pipeline import PreprocessConfig, preprocess

    (root / "build.json").unlink(missing_ok=True)  # the stamp goes first: an interrupted build is no build
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
    from datamodules.shards import write_json_atomic

    stamp = {"version": BUILD_VERSION, "code": build_fingerprint(), "clips": report.total}
    write_json_atomic(root / "build.json", stamp)
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
