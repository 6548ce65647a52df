"""Stream stages that turn raw shard samples (one per clip) into training samples.

Each sampler is a small picklable callable ``sampler(iterator of raw samples) -> iterator of dicts of
tensors``; the DataModules put one at the end of the webdataset pipeline. Images leave here as
uint8 3 x S x S (channels first), resized from the stored 256² with area filtering; the stages turn
them into float [-1, 1] on the device (`edtalk.io.images_to_float` in `on_after_batch_transfer`).
Measured by ``benchmarks/loader.py``: uint8 batches are a quarter of the bytes to collate and pass
between processes, and the float conversion leaves the loader workers.

Randomness: with ``deterministic=True`` (validation) every choice is seeded by the clip id, so the
validation set is the same in every epoch, process and worker; otherwise by the worker's torch seed
(different per worker and epoch, reproducible under `lightning.seed_everything`).
"""

from __future__ import annotations

import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from datamodules.mouth_swap import swap_mouth
from datamodules.shards import Clip

Sample = dict[str, torch.Tensor]


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """uint8 (... x H x W x 3) -> uint8 (... x size x size x 3): area filter down, bicubic up."""
    import cv2

    if frames.shape[-2] == size:
        return frames
    flat = frames.reshape(-1, *frames.shape[-3:])  # -> N x H x W x 3
    interp = cv2.INTER_AREA if size < frames.shape[-2] else cv2.INTER_CUBIC
    flat = np.stack([cv2.resize(f, (size, size), interpolation=interp) for f in flat])
    return flat.reshape(*frames.shape[:-3], size, size, 3)


def to_image_tensor(frames: np.ndarray, size: int) -> torch.Tensor:
    """uint8 (... x H x W x 3) -> uint8 (... x 3 x size x size): what the samplers yield."""
    return torch.from_numpy(np.ascontiguousarray(resize_frames(frames, size))).movedim(-1, -3)


def to_tensor(frames: np.ndarray, size: int) -> torch.Tensor:
    """uint8 (... x H x W x 3) -> float (... x 3 x size x size) in [-1, 1]."""
    from edtalk.io import from_uint8

    return from_uint8(resize_frames(frames, size))


@dataclass
class _Base:
    image_size: int = 256
    samples_per_clip: int = 1
    deterministic: bool = False
    seed: int = 0
    _count: int = field(default=0, init=False, repr=False)

    def set_epoch(self, epoch: int) -> None:
        """Worker-seeded draws of epoch `epoch` continue from a counter of their own, so that a resumed run
        draws what an uninterrupted one does (loader workers get a fresh copy every epoch anyway)."""
        self._count = epoch << 32

    def rng(self, key: str) -> np.random.Generator:
        """Clip-seeded generator (deterministic) or worker-seeded with a running counter."""
        if self.deterministic:
            return np.random.default_rng([self.seed, zlib.crc32(key.encode())])
        self._count += 1
        return np.random.default_rng([torch.initial_seed() % 2**63, zlib.crc32(key.encode()), self._count])

    def image(self, frame: np.ndarray) -> torch.Tensor:
        return to_image_tensor(frame, self.image_size)

    def box(self, clip: Clip, index: int, stored_width: int) -> torch.Tensor:
        """Frame `index`'s mouth box (x1, y1, x2, y2) in pixels of the image_size² sample, float32."""
        return torch.from_numpy(clip.bbox[index] * (self.image_size / stored_width)).float()


RIGID = slice(17, 48)  # brows, nose, eyes of the 68-point layout: they move with the head, not the mouth


def rigid_motion(lmk: np.ndarray, index: int, width: int) -> torch.Tensor:
    """How frame `index`'s rigid landmarks (`RIGID`) lie from their clip mean: T x 68 x 2 pixel landmarks of a
    `width`-wide clip -> 62 numbers in units of half the width (the head's motion within the clip, not the
    speaker's face)."""
    rigid = np.asarray(lmk[:, RIGID], np.float64)
    return torch.from_numpy(((rigid[index] - rigid.mean(0)) * (2.0 / width)).astype(np.float32).reshape(-1))


# Landmark pairs of the 68-point layout whose distances describe the mouth: inner-lip gaps (61-67, 62-66, 63-65),
# outer-lip gaps (50-58, 51-57, 52-56), outer and inner width (48-54, 60-64).
MOUTH_PAIRS = ((61, 67), (62, 66), (63, 65), (50, 58), (51, 57), (52, 56), (48, 54), (60, 64))


def mouth_motion(lmk: np.ndarray, index: int) -> torch.Tensor:
    """How frame `index`'s mouth shape differs from its clip mean: T x 68 x 2 landmarks -> the 8 `MOUTH_PAIRS`
    distances over the frame's outer-eye-corner distance (36-45), less their clip mean (how the mouth moves
    within the clip: not the speaker's mouth size, not the head's position or in-plane turn)."""
    lmk = np.asarray(lmk, np.float64)
    a, b = (np.asarray(side) for side in zip(*MOUTH_PAIRS))
    eyes = np.linalg.norm(lmk[:, 36] - lmk[:, 45], axis=-1, keepdims=True)  # -> T x 1
    shape = np.linalg.norm(lmk[:, a] - lmk[:, b], axis=-1) / np.maximum(eyes, 1e-6)  # -> T x 8
    return torch.from_numpy((shape[index] - shape.mean(0)).astype(np.float32))


def is_labelled(clip: Any) -> bool:
    """The clip has an emotion label (MEAD, the built-in data); HDTF and plain folders have none."""
    return int(clip.meta.get("emotion_id", -1)) >= 0


def is_neutral(clip: Any) -> bool:
    return clip.meta.get("emotion") == "neutral"


@dataclass
class NeutralPool:
    """Per speaker, JPEG frames of the neutral clips this stream has seen (the identity frames).

    A stream reads one clip at a time, so the speaker's neutral frames are remembered as they pass
    (`frames_per_clip` random frames of each neutral clip, the newest `per_speaker` kept): a few
    kilobytes per frame instead of whole clips.
    """

    frames_per_clip: int = 4
    per_speaker: int = 16
    _frames: dict[str, deque[tuple[bytes, str]]] = field(default_factory=dict, repr=False)

    def add(self, clip: Clip, rng: np.random.Generator) -> None:
        speaker = str(clip.meta.get("speaker"))
        store = self._frames.setdefault(speaker, deque(maxlen=self.per_speaker))
        n = min(self.frames_per_clip, clip.num_frames)
        for i in rng.choice(clip.num_frames, n, replace=False):
            store.append((clip.jpeg(int(i)), clip.key))

    def has(self, speaker: Any) -> bool:
        return bool(self._frames.get(str(speaker)))

    def draw(self, speaker: Any, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        """(H x W x 3 uint8 neutral frame of `speaker`, the key of its clip)."""
        from datamodules.shards import decode_jpeg

        store = self._frames[str(speaker)]
        jpeg, key = store[int(rng.integers(len(store)))]
        return decode_jpeg(jpeg), key


@dataclass
class _SpeakerPairs(_Base):
    """Shared stream logic of the identity-frame pairings (stage 1 and the expression stage).

    Labelled clips (MEAD) take their identity frame from a *neutral* clip of the same speaker. With
    `neutral_bank` (the path of a `datamodules.shards.NeutralBank` file; the DataModules pass the one
    beside the shards) every stream can draw a neutral frame of any speaker from its first sample, so the
    pairing does not depend on which clips a rank or loader worker happens to read: a target pairs within
    its own clip only when its speaker has no neutral clip at all. Without a bank, neutral clips fill a
    `NeutralPool` as they pass; a target whose speaker has no neutral frame yet waits (at most `pending`
    clips, then the oldest is paired within itself, as are leftovers at the end of a finite stream).
    Either way such a fallback is counted in `fallbacks` and marked in the sample ("pair_fallback", bool).
    Unlabelled clips (HDTF, folders) pair two frames of one clip, or are dropped with
    ``unlabelled="drop"``. ``pairing="clip"`` pairs every clip within itself (the previous behaviour).
    With ``keys=True`` samples also carry "source_key" / "target_key" (clip ids, for inspection).

    Subclasses say which clips are targets (`is_target`) and how a sample is made (`make`).
    """

    pairing: str = "neutral"
    unlabelled: str = "same_clip"
    pending: int = 16
    neutral_frames: int = 4
    neutral_bank: str | None = None
    keys: bool = False
    fallbacks: int = field(default=0, init=False)
    _bank: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.pairing not in ("neutral", "clip"):
            raise ValueError(
                f"pairing={self.pairing!r}: use 'neutral' (identity from a neutral clip) or 'clip'"
            )
        if self.unlabelled not in ("same_clip", "drop"):
            raise ValueError(f"unlabelled={self.unlabelled!r}: use 'same_clip' or 'drop'")

    def is_target(self, clip: Any) -> bool:
        return True

    def make(self, clip: Clip, rng: np.random.Generator, source: tuple[np.ndarray, str] | None) -> Sample:
        raise NotImplementedError

    def schedule(
        self, clips: Iterable[Any], has: Callable[[Any], bool], add: Callable[[Any], None], bank: bool
    ) -> Iterator[tuple[Any, bool]]:
        """(target clip, whether its identity frame comes from a neutral clip) in emission order.

        The whole pairing decision, on anything with `key`, `meta` and `num_frames` (a `Clip`, or the
        metadata `edtalk data pairing` simulates with): `has(clip)` says whether a neutral frame of the
        clip's speaker is available, `add(clip)` offers a neutral clip to the stream's pool; with `bank`
        the availability is known from the start and nothing waits.
        """
        waiting: deque[Any] = deque()
        for clip in clips:
            if not self.usable(clip):
                continue
            if not is_labelled(clip) or self.pairing == "clip":
                yield clip, False
                continue
            if is_neutral(clip) and not bank:
                add(clip)
                ready = [c for c in waiting if has(c)]
                for c in ready:
                    waiting.remove(c)
                    yield c, True
            if not self.is_target(clip):
                continue
            if bank or has(clip):
                yield clip, has(clip)
                continue
            waiting.append(clip)
            if len(waiting) > self.pending:
                yield waiting.popleft(), False
        for c in waiting:
            yield c, False

    def _emit(
        self, clip: Clip, draw: Callable[..., tuple[np.ndarray, str]] | None, fallback: bool
    ) -> Iterator[Sample]:
        rng = self.rng(clip.key)
        speaker = clip.meta.get("speaker")
        for _ in range(self.samples_per_clip):
            out = self.make(clip, rng, draw(speaker, rng, clip.key) if draw is not None else None)
            out["pair_fallback"] = torch.tensor(fallback)
            yield out

    def _draw_bank(self, speaker: Any, rng: np.random.Generator, key: str) -> tuple[np.ndarray, str]:
        from datamodules.shards import decode_jpeg

        rows = self._bank.candidates(speaker, exclude=key)
        jpeg, source_key = self._bank.jpeg(rows[int(rng.integers(len(rows)))])
        return decode_jpeg(jpeg), source_key

    def __call__(self, src: Iterable[dict[str, Any]]) -> Iterator[Sample]:
        from datamodules.shards import NeutralBank

        if self.neutral_bank and self._bank is None:
            self._bank = NeutralBank(self.neutral_bank)  # once per process (loader workers load their own)
        pool = NeutralPool(self.neutral_frames, 4 * self.neutral_frames)
        if self._bank is not None:
            bank = self._bank

            def has(c: Clip) -> bool:
                return bool(bank.candidates(c.meta.get("speaker")))

            draw: Callable[..., tuple[np.ndarray, str]] = self._draw_bank
        else:

            def has(c: Clip) -> bool:
                return pool.has(c.meta.get("speaker"))

            def draw(speaker: Any, rng: np.random.Generator, key: str) -> tuple[np.ndarray, str]:
                return pool.draw(speaker, rng)

        def add(c: Clip) -> None:
            pool.add(c, self.rng(c.key + "#pool"))

        clips = (Clip(raw) for raw in src)
        for clip, neutral in self.schedule(clips, has, add, bank=self._bank is not None):
            fallback = not neutral and is_labelled(clip) and self.pairing == "neutral"
            self.fallbacks += int(fallback)
            yield from self._emit(clip, draw if neutral else None, fallback)

    def usable(self, clip: Any) -> bool:
        """Whether the clip takes part at all (long enough, labelled when unlabelled='drop')."""
        return clip.num_frames >= 2 and (is_labelled(clip) or self.unlabelled != "drop")

    def pair(self, clip: Clip, rng: np.random.Generator, source: tuple[np.ndarray, str] | None) -> Sample:
        """{"source", "target", "target_box"}: the neutral frame (or another frame of `clip`), a frame of `clip`
        and that frame's mouth box (pixels of the sample; the `model.loss.mouth` term)."""
        if source is None:
            i, j = (int(v) for v in rng.choice(clip.num_frames, 2, replace=False))
            src_img, src_key = clip.frame(i), clip.key
        else:
            j = int(rng.integers(clip.num_frames))
            src_img, src_key = source
        target = clip.frame(j)
        out: dict[str, Any] = {
            "source": self.image(src_img),
            "target": self.image(target),
            "target_box": self.box(clip, j, target.shape[1]),
        }
        if self.keys:
            out |= {"source_key": src_key, "target_key": clip.key}
        return out


@dataclass
class PairSampler(_SpeakerPairs):
    """{"source", "target"} for stage 1 (spec 5.1): MEAD-style labelled clips take the source from a
    neutral clip of the speaker and the target from any clip of that speaker (neutral clips too);
    unlabelled clips (HDTF) two frames of one clip. ``pairing="clip"``: two frames of one clip always.
    "emotion": the target clip's label id (-1 unlabelled; stage 1's optional `model.loss.emotion`)."""

    def make(self, clip: Clip, rng: np.random.Generator, source: tuple[np.ndarray, str] | None) -> Sample:
        out = self.pair(clip, rng, source)
        out["emotion"] = torch.tensor(int(clip.meta.get("emotion_id", -1)), dtype=torch.long)
        return out


@dataclass
class CrossPairSampler(_Base):
    """Two clips a, b (different speakers when the recent pool has one): identity + target frame of each,
    and the mouth-swapped targets swap_ab (a with b's mouth) and swap_ba, built at 256² then resized; "box_a",
    "box_b": the targets' mouth boxes (pixels of the sample). With ``neutral_only`` (ours, off) emotional
    clips are skipped: pairs come from neutral and unlabelled clips only, as the released lip-pose model was
    trained on HDTF only (SPEC 5.2, upstream issue #47), so an emotion's mouth corners never differ between
    the two sides of a swap. With ``rigid_landmarks`` (ours, off) also "rigid_a", "rigid_b": where the targets'
    brow, nose and eye landmarks (17-47, no jaw or mouth) lie from their clip's mean (`rigid_motion`): the
    head's motion, which mouth_pose's `model.loss.leak` keeps out of the mouth weights (swap_ab shows a's).
    With ``mouth_landmarks`` (ours, off) also "mouth_a", "mouth_b": the targets' mouth shape from their lip
    landmarks, less its clip mean (`mouth_motion`), which mouth_pose's `model.loss.mouth_read` asks the mouth
    weights to hold (swap_ab shows b's mouth)."""

    pool_size: int = 4
    margin: float = 5.0
    align_mouth: bool = True
    neutral_only: bool = False
    rigid_landmarks: bool = False
    mouth_landmarks: bool = False

    def _partner(self, clip: Clip, pool: deque[Clip], rng: np.random.Generator) -> Clip | None:
        others = [c for c in pool if c.meta.get("speaker") != clip.meta.get("speaker")]
        others = others or [c for c in pool if c.key != clip.key]
        return others[int(rng.integers(len(others)))] if others else None

    def __call__(self, src: Iterable[dict[str, Any]]) -> Iterator[Sample]:
        pool: deque[Clip] = deque(maxlen=self.pool_size)
        for raw in src:
            a = Clip(raw)
            if self.neutral_only and is_labelled(a) and not is_neutral(a):
                continue
            rng = self.rng(a.key)
            b = self._partner(a, pool, rng)
            pool.append(a)
            if b is None:
                continue
            for _ in range(self.samples_per_clip):
                yield self.sample(a, b, rng)

    def sample(self, a: Clip, b: Clip, rng: np.random.Generator) -> Sample:
        ia, ta = (int(v) for v in rng.choice(a.num_frames, 2, replace=False))
        ib, tb = (int(v) for v in rng.choice(b.num_frames, 2, replace=False))
        frame_a, frame_b = a.frame(ta), b.frame(tb)
        swap_ab, _ = swap_mouth(frame_a, a.lmk[ta], frame_b, b.lmk[tb], self.margin, self.align_mouth)
        swap_ba, _ = swap_mouth(frame_b, b.lmk[tb], frame_a, a.lmk[ta], self.margin, self.align_mouth)
        images = np.stack([a.frame(ia), frame_a, b.frame(ib), frame_b, swap_ab, swap_ba])
        t = self.image(images)  # -> 6 x 3 x S x S
        names = ("source_a", "target_a", "source_b", "target_b", "swap_ab", "swap_ba")
        boxes = {"box_a": self.box(a, ta, frame_a.shape[1]), "box_b": self.box(b, tb, frame_b.shape[1])}
        if self.rigid_landmarks:
            boxes |= {
                "rigid_a": rigid_motion(a.lmk, ta, frame_a.shape[1]),
                "rigid_b": rigid_motion(b.lmk, tb, frame_b.shape[1]),
            }
        if self.mouth_landmarks:
            boxes |= {"mouth_a": mouth_motion(a.lmk, ta), "mouth_b": mouth_motion(b.lmk, tb)}
        return dict(zip(names, t.unbind(0))) | boxes


@dataclass
class EmotionSampler(_SpeakerPairs):
    """{"source", "target", "emotion"} for the expression stage: the identity frame from a *neutral*
    clip of the speaker, the target from an *emotional* clip of the same speaker (the only MEAD pairing
    upstream released); unlabelled clips (HDTF; emotion -1) as two frames of one clip.
    ``pairing="clip"``: two frames of one labelled clip, neutral clips included (the emotion
    classifier). With clip_frames T > 0 also "frames" (T x 3 x S x S consecutive frames of the target
    clip, for the emotion classifier). With second_target also "target2": another frame of the
    target's clip (same emotion, other mouth and pose; the expression stage's
    `model.loss.invariance`). With neutral_targets (ours, off: the paper pairs neutral -> emotional only)
    neutral clips are targets too, so the expression weights also learn what "no emotion" renders as.
    """

    clip_frames: int = 0
    second_target: bool = False
    neutral_targets: bool = False

    def usable(self, clip: Any) -> bool:
        return super().usable(clip) and clip.num_frames >= self.clip_frames

    def is_target(self, clip: Any) -> bool:
        return self.neutral_targets or not is_neutral(clip)

    def make(self, clip: Clip, rng: np.random.Generator, source: tuple[np.ndarray, str] | None) -> Sample:
        out = self.pair(clip, rng, source)
        out["emotion"] = torch.tensor(int(clip.meta.get("emotion_id", -1)), dtype=torch.long)
        if self.second_target:
            out["target2"] = self.image(clip.frame(int(rng.integers(clip.num_frames))))
        if self.clip_frames:
            start = int(rng.integers(clip.num_frames - self.clip_frames + 1))
            out["frames"] = self.image(clip.frames(range(start, start + self.clip_frames)))
        return out


def mel_windows_of(clip: Clip) -> np.ndarray:
    """T x 1 x 80 x 16 windows of a clip, window t centred on frame t (SPEC 4.1), from the stored mel."""
    from edtalk.mel import mel_windows, window_rows

    mel = clip.mel()
    if mel is None:
        return mel_windows(clip.wav()[: clip.num_frames * 640])
    rows = window_rows(clip.num_frames, mel.shape[0])  # T x 16
    return np.ascontiguousarray(mel[rows].transpose(0, 2, 1)[:, None], dtype=np.float32)  # -> T x 1 x 80 x 16


class CoefficientCache:
    """Per-shard coefficient sidecars (format: `datamodules.sidecars`), opened lazily."""

    def __init__(self) -> None:
        self._files: dict[str, Any] = {}

    @staticmethod
    def path(url: str) -> Path:
        from datamodules.sidecars import sidecar_path

        return sidecar_path(url)

    def get(self, clip: Clip) -> dict[str, np.ndarray]:
        """{"mouth": T x 20, "pose": T x 6[, "exp": T x 10]} of `clip`, from its shard's sidecar."""
        from datamodules.sidecars import open_sidecar

        if clip.url not in self._files:
            fix = "extract coefficients first (`edtalk extract`) or set coefficients=False"
            self._files[clip.url] = open_sidecar(clip.url, fix)
        sidecar = self._files[clip.url]
        if clip.key not in sidecar:
            raise KeyError(f"{sidecar.path} has no coefficients for clip {clip.key}; re-run `edtalk extract`")
        return sidecar.parts(clip.key)


NOSE_TIP = 30  # index of the nose tip among the 68 landmarks


def face_boxes(lmk: np.ndarray) -> np.ndarray:
    """Per-frame face boxes x1, y1, x2, y2 from 68 landmarks: ... x 68 x 2 -> ... x 4 float32.

    Our stand-in for the face-detector box of Wav2Lip's preprocessing (one box per frame, no padding,
    no smoothing) whose 96 x 96 resize and lower half are the lip-sync expert's input: sideways the
    landmarks' extent (jaw line), at the bottom the chin, at the top the brows or, where that is
    higher, the height that puts the nose tip at the box centre. A detector box includes part of the
    forehead, so its lower half runs from about the nose to the chin; the tight landmark box stops at
    the brows, and its lower half can cut the upper lip. Shards keep landmarks, not detector boxes
    (every landmark backend gives the same 68 points; detectors disagree on their boxes).
    """
    lo, hi = lmk.min(-2), lmk.max(-2)  # -> ... x 2 (x, y)
    top = np.minimum(lo[..., 1], 2 * lmk[..., NOSE_TIP, 1] - hi[..., 1])
    return np.stack([lo[..., 0], top, hi[..., 0], hi[..., 1]], -1).astype(np.float32)


@dataclass
class AudioSampler(_Base):
    """T consecutive frames + their mel windows + identity frame + mouth and face boxes (+ cached coefficients).

    Keys: "frames" T x 3 x S x S (uint8, like every image here), "mel" T x 1 x 80 x 16 (window t centred on frame t), "identity"
    3 x S x S, "bbox" T x 4 mouth boxes and "face_box" T x 4 face boxes (`face_boxes`; both x1, y1, x2, y2 in
    pixels of the S² frame), "emotion" (long, -1 unknown), and with `coefficients` "mouth" T x 20, "pose" T x 6,
    "exp" T x 10; with `hubert` "hubert" T x D (`<shard>.hubert.npz`, `edtalk extract-hubert`), with `text`
    "text" D_text per clip (`<shard>.text.npz`); see `datamodules.preprocess.hubert`.
    """

    clip_frames: int = 5
    coefficients: bool = False
    hubert: bool = False
    text: bool = False
    _coeffs: CoefficientCache = field(default_factory=CoefficientCache, init=False, repr=False)
    _features: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    def __call__(self, src: Iterable[dict[str, Any]]) -> Iterator[Sample]:
        for raw in src:
            clip = Clip(raw)
            if clip.num_frames < self.clip_frames:
                continue
            rng = self.rng(clip.key)
            windows = mel_windows_of(clip)
            coeffs = self._coeffs.get(clip) if self.coefficients else {}
            coeffs = {**coeffs, **self.side_features(clip)}
            for _ in range(self.samples_per_clip):
                start = int(rng.integers(clip.num_frames - self.clip_frames + 1))
                out = self.sample(clip, windows, coeffs, start, int(rng.integers(clip.num_frames)))
                yield self.with_text(out, clip)

    def _cache(self, suffix: str, fix: str) -> Any:
        from datamodules.preprocess.hubert import FeatureCache

        return self._features.setdefault(suffix, FeatureCache(suffix, fix))

    def side_features(self, clip: Clip) -> dict[str, np.ndarray]:
        """{"hubert": T x D} from the shard's HuBERT sidecar when `hubert` (sliced like the coefficients)."""
        if not self.hubert:
            return {}
        from datamodules.preprocess.hubert import HUBERT

        feats = self._cache(HUBERT, "write it with `edtalk extract-hubert CHECKPOINT --shards DIR`")
        rows = feats.get(clip.url, clip.key)
        if rows.shape[0] != clip.num_frames:
            raise ValueError(
                f"{clip.url}{HUBERT}: clip {clip.key} has {rows.shape[0]} feature rows for {clip.num_frames} "
                "frames; re-run `edtalk extract-hubert ... --overwrite`"
            )
        return {"hubert": rows}

    def with_text(self, out: Sample, clip: Clip) -> Sample:
        """Adds "text" (D_text float32, one vector per clip) from the shard's text sidecar when `text`."""
        if self.text:
            from datamodules.preprocess.hubert import TEXT

            vec = self._cache(
                TEXT, "write per-clip text vectors with datamodules.preprocess.hubert.write_features"
            )
            out["text"] = torch.from_numpy(vec.get(clip.url, clip.key).reshape(-1))
        return out

    def sample(
        self, clip: Clip, windows: np.ndarray, coeffs: dict[str, np.ndarray], start: int, ident: int
    ) -> Sample:
        span = slice(start, start + self.clip_frames)
        frames = clip.frames(range(start, start + self.clip_frames))  # T x H x W x 3 uint8
        scale = self.image_size / frames.shape[2]  # stored pixels -> pixels of the S² frame
        out = {
            "frames": self.image(frames),
            "mel": torch.from_numpy(windows[span].copy()),
            "identity": self.image(clip.frame(ident)),
            "bbox": torch.from_numpy(clip.bbox[span] * scale).float(),
            "face_box": torch.from_numpy(face_boxes(clip.lmk[span]) * scale).float(),
            "emotion": torch.tensor(int(clip.meta.get("emotion_id", -1)), dtype=torch.long),
        }
        out.update({k: torch.from_numpy(np.asarray(v[span], np.float32)) for k, v in coeffs.items()})
        return out


def _availability(
    bank: Any, seen: dict[str, set[str]]
) -> tuple[Callable[[Any], bool], Callable[[Any], bool]]:
    """(has, own_only) of a simulated stream: whether a neutral frame of the clip's speaker is at hand, and
    whether the only one at hand is of the clip itself (from the bank, or from the neutral clips `seen`)."""
    if bank is not None:

        def has(c: Any) -> bool:
            return bool(bank.candidates(c.meta.get("speaker")))

        def own_only(c: Any) -> bool:
            rows = bank.candidates(c.meta.get("speaker"), exclude=c.key)
            return all(bank.keys[r] == c.key for r in rows)

        return has, own_only

    def seen_has(c: Any) -> bool:
        return bool(seen.get(str(c.meta.get("speaker"))))

    def seen_own_only(c: Any) -> bool:
        return seen.get(str(c.meta.get("speaker"))) == {c.key}

    return seen_has, seen_own_only


def simulate_pairing(
    sampler: _SpeakerPairs,
    shards: dict[str, list[Any]],
    world_size: int,
    workers: int,
    bank: Any = None,
    seed: int = 0,
) -> dict[str, Any]:
    """One training epoch's identity pairing over `world_size` ranks x `workers` loader workers, on metadata.

    Each of the world_size x workers streams reads shards drawn with replacement (as the resampled training
    pipeline does, seeded per rank and worker) until it has yielded its share of the epoch (one sample per
    clip, split evenly), and runs `sampler.schedule` on them: with `bank` (a `NeutralBank`) every speaker's
    neutral frames are there from the start; without, each stream pools the neutral clips it has read.

    Args:
        sampler: the stage's sampler (its pairing options are used; no media is decoded).
        shards: per shard URL, its clips' metadata (`datamodules.shards.clip_infos`).
        world_size, workers: ranks and loader workers per rank (workers >= 1).
        bank: the neutral bank, or None for the stream pools.
        seed: seed of the simulated shard draws.

    Returns:
        {"targets", "same_clip" (targets whose identity frame comes from their own clip), "fraction",
        "fallbacks" (labelled targets with no neutral frame at hand), "unlabelled" (HDTF-style targets,
        same-clip by design), "streams", "world_size", "workers", "bank"}.
    """
    import random
    from itertools import islice

    urls = sorted(shards)
    total = sum(len(v) for v in shards.values())
    streams = world_size * max(1, workers)
    per_stream = max(1, -(-total // streams))
    counts = {"targets": 0, "same_clip": 0, "fallbacks": 0, "unlabelled": 0}
    for stream in range(streams):
        rng = random.Random(f"{seed}/{stream // max(1, workers)}/{stream % max(1, workers)}")
        seen: dict[str, set[str]] = {}

        def endless(rng: random.Random = rng) -> Iterator[Any]:
            for _ in range(10 * (len(urls) + per_stream)):  # bounded: a split may hold no target at all
                yield from shards[urls[rng.randrange(len(urls))]]

        def add(c: Any, seen: dict[str, set[str]] = seen) -> None:
            seen.setdefault(str(c.meta.get("speaker")), set()).add(c.key)

        has, own_only = _availability(bank, seen)
        plan = sampler.schedule(endless(), has, add, bank=bank is not None)
        for clip, neutral in islice(plan, per_stream):
            labelled = is_labelled(clip) and sampler.pairing == "neutral"
            counts["targets"] += 1
            counts["unlabelled"] += int(not is_labelled(clip))
            counts["fallbacks"] += int(labelled and not neutral)
            counts["same_clip"] += int(not neutral or own_only(clip))
    fraction = counts["same_clip"] / max(1, counts["targets"])
    return {**counts, "fraction": fraction, "streams": streams, "world_size": world_size, "workers": workers}
