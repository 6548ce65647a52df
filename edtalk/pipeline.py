"""Inference pipeline: a source (photo or video) + any drivers -> a 25 fps talking-head video.

One `Pipeline.__call__` covers every mode of the original demos (SPEC section 6) and more:

| component | taken from (first that applies)                                                        |
|-----------|----------------------------------------------------------------------------------------|
| mouth     | lip video (`lip`) · audio through `Audio2Lip` · the source                              |
| pose      | pose video (`pose`) · the source (`fix_pose`) · audio through `Audio2Pose` · the source |
| expression| expression image/video (`exp`) · `emotion` (name, mix, 1 x 10 weights, "auto" =       |
|           | `Audio2Exp`) · the source; none with `no_expression` or a lip-pose generator           |

"The source" means the source's own coefficients: the photo's, or each frame's of a source video
(changing a video's lip: identity, pose and expression from frame t, mouth from the audio).

Frame count: floor(len(audio) / 640) when audio drives the clip (SPEC 4.1), else the lip video's,
else the source video's, pose video's or expression video's length. Shorter driver videos are
extended by ping-pong or by holding their last frame (`extend`). All inputs are resampled to 25 fps
and auto-cropped (photo: template alignment; video: one tracked tube crop) unless `crop=False`.

Speed and memory: images enter the networks channels-last (oneDNN / cuDNN's fast layout; the
decoder follows the source's layout), the source is encoded once (its EEM half cached), Q is computed once per clip,
driver videos go through the encoder in chunks and are reduced to their coefficients (T x 36 numbers),
frames are rendered in chunks of `chunk_size` and streamed to the H.264 writer, and videos are
staged in disk-backed arrays, so memory stays flat in the video length.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from edtalk.io import FPS, MediaError, VideoWriter, from_uint8, iter_frames, probe_video, read_audio, to_uint8
from edtalk.nn.generator import Generator, SourceEncoding

Extend = Literal["pingpong", "hold"]
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"})
SAMPLES_PER_FRAME = 640  # 16 kHz / 25 fps
AUDIO_BATCH = 512  # mel windows per Audio2Lip call (bounded memory for long audio)


class ModeError(ValueError):
    """The requested combination of inputs and models cannot be rendered."""


# -- small helpers -------------------------------------------------------------------------------
def pick_device(name: str | None = None) -> torch.device:
    """ "auto"/None -> CUDA, else MPS, else CPU; any other value is passed to `torch.device`."""
    if name not in (None, "auto"):
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def default_chunk_size(device: torch.device) -> int:
    """Frames per render call: small on CPU, big on GPU.

    On CPU a 256^2 frame's largest activations are ~17 MB; beyond 2 frames they pass glibc's 32 MiB
    mmap threshold and every call pays page faults again (measured: 2 > 1 > 4 frames per call).
    """
    return {"cuda": 32, "mps": 8}.get(device.type, 2)


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def extend_indices(n: int, length: int, mode: Extend) -> np.ndarray:
    """Indices into an `n`-frame driver for `length` output frames.

    "pingpong" plays 0..n-1, n-1..0, 0..n-1, ... (the original's `cat[x, flip(x)]`); "hold" repeats
    the last frame. Drivers longer than `length` are cut.
    """
    if n < 1:
        raise ValueError("cannot extend an empty driver")
    t = np.arange(length)
    if mode == "hold" or n == 1:
        return np.minimum(t, n - 1)
    if mode != "pingpong":
        raise ValueError(f"extend must be 'pingpong' or 'hold', got {mode!r}")
    k = t % (2 * n)
    return np.where(k < n, k, 2 * n - 1 - k)


def _is_auto(emotion: object) -> bool:
    return isinstance(emotion, str) and emotion.strip().lower() == "auto"


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 H x W x 3 -> size x size x 3 (bicubic, as the original demos' PIL resize)."""
    if image.shape[:2] == (size, size):
        return image
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BICUBIC))


def read_image(path: Path) -> np.ndarray:
    """RGB uint8 H x W x 3 of an image file; MediaError naming the file when it cannot be read."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise MediaError(f"image not found: {path}")
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError) as err:
        raise MediaError(f"cannot read image {path} ({err}); give a .png or .jpg photo") from err


# -- inputs and results --------------------------------------------------------------------------
@dataclass
class Inputs:
    """What to render. Paths may be str or Path; see the module docstring for who drives what.

    Attributes:
        source: photo or video of the person.
        audio: speech (any audio file or a video with sound); sets the length and the soundtrack.
        lip: video whose mouth motion is copied (sets the length when given).
        pose: video whose head pose is copied.
        exp: image or video whose expression is copied.
        emotion: predefined emotion name or mix ("happy:0.7,sad:0.3"), "auto" (Audio2Exp), or weights.
        fix_pose: keep the source's pose (never take pose from audio).
        no_expression: render without the expression module (mouth and pose only).
        extend: how shorter driver videos fill the clip: "pingpong" or "hold".
        pose_temperature: spread of Audio2Pose draws (0 = its mean motion).
        seed: random seed of Audio2Pose draws.
    """

    source: str | Path
    audio: str | Path | None = None
    lip: str | Path | None = None
    pose: str | Path | None = None
    exp: str | Path | None = None
    emotion: str | torch.Tensor | None = None
    fix_pose: bool = False
    no_expression: bool = False
    extend: Extend = "pingpong"
    pose_temperature: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("source", "audio", "lip", "pose", "exp"):
            value = getattr(self, name)
            if value is not None:
                path = Path(value)
                if not path.is_file():
                    raise MediaError(f"--{name} file not found: {path}")
                setattr(self, name, path)


@dataclass
class Result:
    """A finished render: output path, frame count, fps, wall seconds and which input drove what."""

    path: Path
    num_frames: int
    fps: int
    seconds: float
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def fps_rendered(self) -> float:
        return self.num_frames / max(self.seconds, 1e-9)


# -- source providers ----------------------------------------------------------------------------
class _ImageSource:
    """A photo: encoded once; its own coefficients broadcast over every frame."""

    def __init__(self, gen: Generator, image: torch.Tensor) -> None:
        self.enc = gen.encode(image.contiguous(memory_format=torch.channels_last))
        self.own = gen.navigator(self.enc.w_a)

    def take(self, start: int, stop: int) -> tuple[SourceEncoding, dict[str, torch.Tensor]]:
        n = stop - start
        return self.enc, {k: v.expand(n, -1) for k, v in self.own.items()}


class _VideoSource:
    """A video: frame t (through `index`) is encoded when its chunk is rendered; coefficients per frame."""

    def __init__(self, gen: Generator, frames: np.ndarray, index: np.ndarray, device: torch.device) -> None:
        self.gen, self.frames, self.index, self.device = gen, frames, index, device

    def take(self, start: int, stop: int) -> tuple[SourceEncoding, dict[str, torch.Tensor]]:
        batch = from_uint8(np.array(self.frames[self.index[start:stop]])).to(self.device)
        enc = self.gen.encode(batch.contiguous(memory_format=torch.channels_last))
        return enc, self.gen.navigator(enc.w_a)


class _Media:
    """Reads, crops and resizes the inputs of one render; videos are staged on disk under `tmp`, once each."""

    def __init__(self, tmp: Path, size: int, crop: bool) -> None:
        self.tmp, self.size, self.crop = tmp, size, crop
        self._videos: dict[Path, tuple[int | None, np.ndarray]] = {}

    def image(self, path: Path) -> np.ndarray:
        """A photo, face-aligned (unless crop is off) and resized: size x size x 3 uint8."""
        image = read_image(path)
        if self.crop:
            image = _crop_photo(image, path)
        return _resize(image, self.size)

    def video(self, path: Path, limit: int | None) -> np.ndarray:
        """Frames at 25 fps (at most `limit`), cropped and resized: N x size x size x 3 uint8 (memmap)."""
        key = path.resolve()
        if key in self._videos:
            read_limit, frames = self._videos[key]
            if read_limit is None or (limit is not None and limit <= read_limit):
                return frames[:limit]
        frames = _stage_video(path, limit, self.size, self.crop, self.tmp / f"video{len(self._videos)}")
        self._videos[key] = (limit, frames)
        return frames


@dataclass
class _Plan:
    num_frames: int
    source: _ImageSource | _VideoSource
    motion: dict[str, torch.Tensor | None]  # T x d per component, None = from the source
    soundtrack: np.ndarray | None
    sources: dict[str, str]


# -- the pipeline --------------------------------------------------------------------------------
class Pipeline:
    """Source + drivers -> frames, streamed to an mp4.

    Args:
        generator: a full or lip-pose `Generator` (ours or an official checkpoint's).
        audio2lip: `Audio2Lip` (mel windows -> mouth weights); needed when audio drives the mouth.
        audio2pose: `Audio2Pose`; used for pose when audio is given and no pose driver / `fix_pose`.
        audio2exp: `Audio2Exp`; needed for `emotion="auto"`.
        device: "auto" (CUDA, MPS, CPU) or a torch device string.
        chunk_size: frames per render batch (default: 2 on CPU, 32 on CUDA).
        bf16: run the networks under bfloat16 autocast (GPUs, and CPUs with bf16 units).
        crop: auto-crop inputs (photo: template alignment; video: tracked tube crop).
        progress: show a progress bar.
        name: label of the generator checkpoint in error messages.

    Example:
        pipe = Pipeline.from_checkpoints("EDTalk.pt", audio2lip="Audio2Lip.pt")
        pipe("me.jpg", audio="speech.wav", emotion="happy", out="out.mp4")
    """

    def __init__(
        self,
        generator: Generator,
        audio2lip: nn.Module | None = None,
        audio2pose: nn.Module | None = None,
        audio2exp: nn.Module | None = None,
        *,
        device: str | torch.device | None = "auto",
        chunk_size: int | None = None,
        bf16: bool = False,
        crop: bool = True,
        progress: bool = True,
        name: str = "the generator",
    ) -> None:
        self.device = device if isinstance(device, torch.device) else pick_device(device)
        self.generator = generator.eval().to(self.device)
        self.audio2lip = audio2lip.eval().to(self.device) if audio2lip is not None else None
        self.audio2pose = audio2pose.eval().to(self.device) if audio2pose is not None else None
        self.audio2exp = audio2exp.eval().to(self.device) if audio2exp is not None else None
        self.chunk_size = chunk_size or default_chunk_size(self.device)
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.bf16, self.crop, self.progress, self.name = bf16, crop, progress, name
        self.size = generator.cfg.size

    @classmethod
    def from_checkpoints(
        cls,
        checkpoint: str | Path,
        audio2lip: str | Path | None = None,
        audio2pose: str | Path | None = None,
        audio2exp: str | Path | None = None,
        **kwargs: Any,
    ) -> Pipeline:
        """Build from files: official (`EDTalk.pt`, `EDTalk_lip_pose.pt`, `Audio2Lip.pt`) or ours."""
        from edtalk.weights import load_generator

        def load(path: str | Path | None, kind: str) -> nn.Module | None:
            return load_audio_model(path, kind) if path is not None else None

        return cls(
            load_generator(checkpoint),
            load(audio2lip, "audio2lip"),
            load(audio2pose, "audio2pose"),
            load(audio2exp, "audio2exp"),
            name=str(checkpoint),
            **kwargs,
        )

    # -- public API ------------------------------------------------------------------------------
    def __call__(
        self,
        source: str | Path | Inputs,
        out: str | Path,
        *,
        legacy_normalize: bool = False,
        **drivers: Any,
    ) -> Result:
        """Render `source` driven by `drivers` (the fields of `Inputs`) into the mp4 `out`.

        Args:
            source: photo/video path, or a complete `Inputs`.
            out: output .mp4 (H.264 + AAC when there is a soundtrack, 25 fps).
            legacy_normalize: map pixels with the original demos' per-clip min-max stretch instead
                of the fixed [-1, 1] -> [0, 255] map (for comparisons with upstream outputs).
            **drivers: audio, lip, pose, exp, emotion, fix_pose, no_expression, extend,
                pose_temperature, seed.

        Returns:
            `Result` with the path, frame count and timing.
        """
        inputs = source if isinstance(source, Inputs) else Inputs(source, **drivers)
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="edtalk-") as tmp:
            plan = self._plan(inputs, Path(tmp))
            frames = self._render(plan)
            if legacy_normalize:
                frames = _legacy_frames(frames, plan.num_frames, Path(tmp))
            path = self._write(frames, plan, Path(out))
        return Result(path, plan.num_frames, FPS, time.perf_counter() - start, plan.sources)

    def stream(self, inputs: Inputs) -> Iterator[torch.Tensor]:
        """Rendered frames as float [-1, 1] chunks (n x 3 x S x S, CPU), for callers that write themselves."""
        with tempfile.TemporaryDirectory(prefix="edtalk-") as tmp:
            plan = self._plan(inputs, Path(tmp))
            yield from self._render(plan)

    # -- planning --------------------------------------------------------------------------------
    def _plan(self, inputs: Inputs, tmp: Path) -> _Plan:
        self._check(inputs)
        with torch.inference_mode(), self._autocast():
            media = _Media(tmp, self.size, self.crop)
            wav, mel = self._audio(inputs)
            length = self._length(inputs, wav, media)
            source = self._source(inputs, length, media)
            sources: dict[str, str] = {}
            motion = {
                "mouth": self._mouth(inputs, mel, length, media, sources),
                "pose": self._pose(inputs, mel, length, media, source, sources),
            }
            if self.generator.cfg.has_expression and not inputs.no_expression:
                motion["exp"] = self._exp(inputs, mel, length, media, sources)
            else:
                sources["exp"] = "none"
        soundtrack = wav if wav is not None else self._soundtrack(inputs)
        return _Plan(length, source, motion, soundtrack, sources)

    def _check(self, inputs: Inputs) -> None:
        """Reject impossible combinations before any heavy work."""
        self._check_expression(inputs)
        if inputs.fix_pose and inputs.pose is not None:
            raise ModeError("--fix-pose contradicts --pose; give one of them")
        if inputs.audio is not None and inputs.lip is None and self.audio2lip is None:
            raise ModeError(f"audio {inputs.audio} drives the mouth: also give --audio2lip Audio2Lip.pt")
        if inputs.extend not in ("pingpong", "hold"):
            raise ModeError(f"--extend must be pingpong or hold, got {inputs.extend!r}")

    def _check_expression(self, inputs: Inputs) -> None:
        wants_exp = inputs.exp is not None or inputs.emotion is not None
        if wants_exp and not self.generator.cfg.has_expression:
            raise ModeError(
                f"{self.name} is a lip-pose generator (no expression): --emotion/--exp-driver need the full "
                "EDTalk.pt checkpoint; or drop them / pass --no-expression"
            )
        if wants_exp and inputs.no_expression:
            raise ModeError("--no-expression contradicts --emotion/--exp-driver; give one of them")
        if inputs.exp is not None and inputs.emotion is not None:
            raise ModeError("give either --exp-driver or --emotion, not both")
        if _is_auto(inputs.emotion):
            if self.audio2exp is None or inputs.audio is None:
                raise ModeError("--emotion auto needs --audio and an --audio2exp checkpoint")
        elif inputs.emotion is not None:
            self._emotion_vector(inputs.emotion)  # unknown names fail before any decoding

    def _audio(self, inputs: Inputs) -> tuple[np.ndarray | None, torch.Tensor | None]:
        """(waveform cut to whole frames, mel windows T x 1 x 80 x 16) or (None, None)."""
        if inputs.audio is None:
            return None, None
        from edtalk.mel import mel_windows

        path = Path(inputs.audio)
        wav = read_audio(path)
        frames = len(wav) // SAMPLES_PER_FRAME
        if frames < 1:
            raise MediaError(
                f"audio {path} lasts {len(wav) / 16000:.3f} s, shorter than one video frame (40 ms); "
                "give a longer audio"
            )
        wav = wav[: frames * SAMPLES_PER_FRAME]
        return wav, torch.from_numpy(mel_windows(wav)).to(self.device)

    def _length(self, inputs: Inputs, wav: np.ndarray | None, media: _Media) -> int:
        if inputs.lip is not None:
            return len(media.video(Path(inputs.lip), None))
        if wav is not None:
            return len(wav) // SAMPLES_PER_FRAME
        for path in (inputs.source, inputs.pose, inputs.exp):
            if path is not None and not is_image(Path(path)):
                return len(media.video(Path(path), None))
        raise ModeError(
            "nothing sets the video length: give --audio (speech), --lip (a video), or a video as "
            "--source/--pose/--exp-driver"
        )

    def _source(self, inputs: Inputs, length: int, media: _Media) -> _ImageSource | _VideoSource:
        path = Path(inputs.source)
        if is_image(path):
            image = from_uint8(np.array(media.image(path)))[None].to(self.device)
            return _ImageSource(self.generator, image)
        frames = media.video(path, length)
        return _VideoSource(
            self.generator, frames, extend_indices(len(frames), length, inputs.extend), self.device
        )

    # -- motion sources --------------------------------------------------------------------------
    def _mouth(
        self, inputs: Inputs, mel: torch.Tensor | None, length: int, media: _Media, sources: dict[str, str]
    ) -> torch.Tensor | None:
        if inputs.lip is not None:
            sources["mouth"] = f"lip video {inputs.lip}"
            return self._driver(Path(inputs.lip), length, inputs.extend, media)["mouth"]
        if mel is not None:
            from edtalk.mel import smooth_coefficients

            assert self.audio2lip is not None
            sources["mouth"] = f"audio {inputs.audio}"
            mouth = torch.cat([self.audio2lip(m) for m in mel.split(AUDIO_BATCH)])  # -> T x 20
            return smooth_coefficients(mouth.float())
        sources["mouth"] = "source"
        return None

    def _pose(
        self,
        inputs: Inputs,
        mel: torch.Tensor | None,
        length: int,
        media: _Media,
        source: _ImageSource | _VideoSource,
        sources: dict[str, str],
    ) -> torch.Tensor | None:
        if inputs.pose is not None:
            sources["pose"] = f"pose video {inputs.pose}"
            return self._driver(Path(inputs.pose), length, inputs.extend, media)["pose"]
        use_audio = mel is not None and self.audio2pose is not None and inputs.lip is None
        if inputs.fix_pose or not use_audio or isinstance(source, _VideoSource):
            sources["pose"] = "source"
            return None
        assert mel is not None and self.audio2pose is not None
        rng = torch.Generator(device=self.device).manual_seed(inputs.seed)
        ref = source.own["pose"]
        sample = self.audio2pose.sample  # Audio2Pose.sample(mel, temperature, generator, ref_pose)
        pose = sample(mel[None], inputs.pose_temperature, rng, ref_pose=ref)  # type: ignore[operator]  # -> 1xTx6
        sources["pose"] = f"audio2pose (temperature {inputs.pose_temperature:g})"
        return pose[0, :length].float()

    def _exp(
        self, inputs: Inputs, mel: torch.Tensor | None, length: int, media: _Media, sources: dict[str, str]
    ) -> torch.Tensor | None:
        if inputs.exp is not None:
            sources["exp"] = f"expression driver {inputs.exp}"
            return self._driver(Path(inputs.exp), length, inputs.extend, media)["exp"]
        emotion = inputs.emotion
        if emotion is None:
            sources["exp"] = "source"
            return None
        if _is_auto(emotion):
            assert mel is not None and self.audio2exp is not None
            weights = self.audio2exp(mel[None]).exp.float()  # -> 1 x 10
            sources["exp"] = "audio2exp"
        else:
            weights = self._emotion_vector(emotion)
            sources["exp"] = f"emotion {emotion}" if isinstance(emotion, str) else "emotion weights"
        return weights.to(self.device).expand(length, -1)

    def _emotion_vector(self, emotion: str | torch.Tensor) -> torch.Tensor:
        from edtalk.emotions import emotion_weights

        weights = emotion_weights(emotion) if isinstance(emotion, str) else torch.as_tensor(emotion).float()
        weights = weights.reshape(1, -1)
        if weights.shape[1] != self.generator.cfg.exp_dim:
            raise ModeError(
                f"emotion weights have {weights.shape[1]} values but {self.name} has "
                f"{self.generator.cfg.exp_dim} expression directions"
            )
        return weights

    def _driver(self, path: Path, length: int, extend: Extend, media: _Media) -> dict[str, torch.Tensor]:
        """Coefficients of a driver image/video for `length` frames (encoder in chunks, extended)."""
        frames = media.image(path)[None] if is_image(path) else media.video(path, length)
        coeffs: list[dict[str, torch.Tensor]] = []
        for i in range(0, len(frames), self.chunk_size):
            batch = from_uint8(np.array(frames[i : i + self.chunk_size])).to(self.device)
            coeffs.append(self.generator.coefficients(batch.contiguous(memory_format=torch.channels_last)))
        index = torch.from_numpy(extend_indices(len(frames), length, extend)).to(self.device)
        return {k: torch.cat([c[k] for c in coeffs]).float()[index] for k in coeffs[0]}

    def _soundtrack(self, inputs: Inputs) -> np.ndarray | None:
        """Audio for modes without --audio: the lip video's, else the source video's sound."""
        for path in (inputs.lip, inputs.source):
            if path is not None and not is_image(Path(path)) and probe_video(path).has_audio:
                return read_audio(path)
        return None

    # -- rendering and writing -------------------------------------------------------------------
    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def _render(self, plan: _Plan) -> Iterator[torch.Tensor]:
        """Chunks of frames n x 3 x S x S (float32, CPU) in [-1, 1] (not clamped)."""
        gen = self.generator
        with torch.inference_mode(), self._autocast():
            q = gen.basis()
            for start in range(0, plan.num_frames, self.chunk_size):
                stop = min(start + self.chunk_size, plan.num_frames)
                enc, own = plan.source.take(start, stop)
                alpha = {k: own[k] if m is None else m[start:stop] for k, m in plan.motion.items()}
                w, e = gen.latent(enc.w_a, alpha, q)
                yield gen.render(enc, w, e).float().cpu()

    def _write(self, frames: Iterator[torch.Tensor], plan: _Plan, out: Path) -> Path:
        """Encode chunk i on a writer thread while chunk i+1 renders (H.264 encoding overlaps the GPU)."""
        from concurrent.futures import Future, ThreadPoolExecutor

        from tqdm import tqdm

        def write(chunk: torch.Tensor) -> None:
            writer.write(chunk if chunk.dtype == torch.uint8 else to_uint8(chunk))
            bar.update(len(chunk))

        with (
            VideoWriter(out, fps=FPS, audio=plan.soundtrack) as writer,
            tqdm(total=plan.num_frames, unit="frame", desc="generate", disable=not self.progress) as bar,
            ThreadPoolExecutor(1, thread_name_prefix="edtalk-writer") as pool,
        ):
            pending: Future[None] | None = None
            for chunk in frames:
                if pending is not None:
                    pending.result()  # at most one chunk in flight: memory stays flat
                pending = pool.submit(write, chunk)
            if pending is not None:
                pending.result()
        return writer.path


# -- loading models ------------------------------------------------------------------------------
def load_audio_model(path: str | Path, kind: str) -> nn.Module:
    """Audio2Lip / Audio2Pose / Audio2Exp from an official file (Audio2Lip.pt), one of ours, or the
    Lightning checkpoint of the stage that trained it (`edtalk.weights.load` decides which).

    Raises:
        CheckpointError: missing/unreadable file or a checkpoint of another kind (named in the message).
    """
    from edtalk import weights

    if kind not in ("audio2lip", "audio2pose", "audio2exp"):
        raise ValueError(f"audio model kind must be audio2lip, audio2pose or audio2exp, got {kind!r}")
    return weights.load(path, kind)


# -- cropping and staging media ------------------------------------------------------------------
def _crop_photo(image: np.ndarray, path: Path) -> np.ndarray:
    from datamodules.preprocess.crop import crop_image

    try:
        return crop_image(image)
    except ValueError as err:
        raise MediaError(f"{path}: {err}; or pass --no-crop if it is already a square face crop") from err


def _stage_video(path: Path, limit: int | None, size: int, crop: bool, stem: Path) -> np.ndarray:
    """Decode (25 fps), crop and resize a video into a uint8 memmap N x size x size x 3 at `stem`.u8."""
    info = probe_video(path)
    frames: Iterator[np.ndarray] = iter_frames(path)
    raw_file = stem.with_suffix(".raw")
    if crop:  # the tube crop needs the whole clip first: stage the raw frames on disk
        raw = _to_memmap(frames, limit, (info.height, info.width), raw_file)
        frames = _crop_video(raw, path) if len(raw) else iter(())
    out = _to_memmap((_resize(f, size) for f in frames), limit, (size, size), stem.with_suffix(".u8"))
    raw_file.unlink(missing_ok=True)
    if len(out) == 0:
        raise MediaError(f"{path} contains no decodable video frames")
    return out


def _to_memmap(
    frames: Iterator[np.ndarray], limit: int | None, hw: tuple[int, int], file: Path
) -> np.ndarray:
    """Write frames into a growing disk file, then map it (memory stays flat)."""
    n = 0
    with open(file, "wb") as fh:
        for frame in frames:
            if limit is not None and n >= limit:
                break
            if frame.shape[:2] != hw:
                raise MediaError(f"{file.name}: frame size changed mid-video ({frame.shape[:2]} vs {hw})")
            fh.write(np.ascontiguousarray(frame, np.uint8).tobytes())
            n += 1
    if n == 0:
        return np.zeros((0, *hw, 3), np.uint8)
    return np.memmap(file, dtype=np.uint8, mode="r", shape=(n, *hw, 3))


def _crop_video(frames: np.ndarray, path: Path, chunk: int = 64) -> Iterator[np.ndarray]:
    """One tracked square tube crop (256^2) for the whole clip, applied chunk by chunk."""
    from datamodules.preprocess.crop import crop_frames, crop_matrix, tube_crop_box
    from datamodules.preprocess.landmarks import get_backend
    from datamodules.preprocess.track import SkipClip, track_face

    try:
        track = track_face(frames, get_backend("dlib"))
    except SkipClip as err:
        raise MediaError(
            f"{path}: {err}; give a video of one face, or --no-crop if it is already cropped"
        ) from err
    matrix = crop_matrix(tube_crop_box(track.det_landmarks))
    for i in range(0, len(frames), chunk):
        yield from crop_frames(np.asarray(frames[i : i + chunk]), matrix)


def _legacy_frames(frames: Iterator[torch.Tensor], total: int, tmp: Path) -> Iterator[torch.Tensor]:
    """The original demos' pixel map: clamp, min-max over the whole clip, truncate (two passes via disk)."""
    from edtalk.io import legacy_to_uint8

    store: np.ndarray | None = None
    lo, hi, n = float("inf"), float("-inf"), 0
    for chunk in frames:
        x = chunk.clamp(-1, 1)
        if store is None:
            store = np.memmap(tmp / "legacy.f32", dtype=np.float32, mode="w+", shape=(total, *x.shape[1:]))
        store[n : n + len(x)] = x.numpy()
        lo, hi, n = min(lo, float(x.min())), max(hi, float(x.max())), n + len(x)
    assert store is not None
    for i in range(0, n, 16):
        yield legacy_to_uint8(torch.from_numpy(np.array(store[i : i + 16])), value_range=(lo, hi))
