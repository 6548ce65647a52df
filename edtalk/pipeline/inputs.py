"""What to render and whether it can be: `Inputs`, `Result`, and the mode checks run before any decoding."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from edtalk.config import GeneratorConfig
from edtalk.io import MediaError

Extend = Literal["pingpong", "hold"]
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"})


class ModeError(ValueError):
    """The requested combination of inputs and models cannot be rendered."""


def is_image(path: Path) -> bool:
    """True for still-image files (by suffix); everything else is read as a video."""
    return path.suffix.lower() in IMAGE_SUFFIXES


def is_auto(emotion: object) -> bool:
    """`emotion="auto"`: expression weights from the audio through Audio2Exp."""
    return isinstance(emotion, str) and emotion.strip().lower() == "auto"


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


@dataclass
class Inputs:
    """What to render. Paths may be str or Path; see `edtalk.pipeline` for who drives what.

    Attributes:
        source: photo or video of the person.
        audio: speech (any audio file or a video with sound); sets the length and the soundtrack.
        lip: video whose mouth motion is copied (sets the length when given).
        pose: video whose head pose is copied.
        exp: image or video whose expression is copied.
        emotion: predefined emotion name or mix ("happy:0.7,sad:0.3"), "auto" (Audio2Exp), or weights.
        emotion_strength: multiplies the expression weights of `emotion` (names, mixes, weights and "auto"
            alike); 1 = as given, 2 = twice as far from the neutral face.
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
    emotion_strength: float = 1.0
    fix_pose: bool = False
    no_expression: bool = False
    extend: Extend = "pingpong"
    pose_temperature: float = 1.0
    seed: int = 0

    @classmethod
    def fields(cls) -> tuple[str, ...]:
        """The request's field names: the one shape `edtalk generate`'s flags (same dest), the page's
        controls (`edtalk.apps.ui.REQUEST_MAP`) and the demo's modes map onto (tests/test_request_shape.py)."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_values(cls, values: Mapping[str, Any], **overrides: Any) -> Inputs:
        """An `Inputs` from a mapping holding every field (e.g. `vars(args)` of `edtalk generate`).

        Raises:
            KeyError: naming the fields the mapping lacks (a new field without a flag).
        """
        missing = [name for name in cls.fields() if name not in values and name not in overrides]
        if missing:
            raise KeyError(f"request fields without a value: {missing}; add them where the request is built")
        return cls(**{name: values[name] for name in cls.fields() if name not in overrides}, **overrides)

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


@dataclass(frozen=True)
class Available:
    """What the loaded models can do, for the mode checks.

    Attributes:
        cfg: the generator's config (lip-pose generators have no expression).
        name: label of the generator checkpoint in error messages.
        audio2lip / audio2exp: whether those audio models are loaded.
    """

    cfg: GeneratorConfig
    name: str
    audio2lip: bool
    audio2exp: bool


def check_inputs(inputs: Inputs, can: Available) -> None:
    """Reject impossible combinations before any heavy work.

    Raises:
        ModeError: naming the contradicting flags or the missing model.
    """
    _check_expression(inputs, can)
    if inputs.fix_pose and inputs.pose is not None:
        raise ModeError("--fix-pose contradicts --pose; give one of them")
    if inputs.audio is not None and inputs.lip is None and not can.audio2lip:
        raise ModeError(f"audio {inputs.audio} drives the mouth: also give --audio2lip Audio2Lip.pt")
    if inputs.extend not in ("pingpong", "hold"):
        raise ModeError(f"--extend must be pingpong or hold, got {inputs.extend!r}")


def _check_expression(inputs: Inputs, can: Available) -> None:
    wants_exp = inputs.exp is not None or inputs.emotion is not None
    if wants_exp and not can.cfg.has_expression:
        raise ModeError(
            f"{can.name} is a lip-pose generator (no expression): --emotion/--exp-driver need the full "
            "EDTalk.pt checkpoint; or drop them / pass --no-expression"
        )
    if wants_exp and inputs.no_expression:
        raise ModeError("--no-expression contradicts --emotion/--exp-driver; give one of them")
    if inputs.exp is not None and inputs.emotion is not None:
        raise ModeError("give either --exp-driver or --emotion, not both")
    if inputs.emotion_strength != 1.0 and inputs.emotion is None:
        raise ModeError(
            "--emotion-strength scales --emotion's weights: give --emotion (a name, a mix or auto)"
        )
    if inputs.emotion_strength < 0:
        raise ModeError(f"--emotion-strength must be >= 0, got {inputs.emotion_strength:g}")
    if is_auto(inputs.emotion):
        if not can.audio2exp or inputs.audio is None:
            raise ModeError("--emotion auto needs --audio and an --audio2exp checkpoint")
    elif inputs.emotion is not None:
        emotion_vector(inputs.emotion, can.cfg.exp_dim, can.name)  # unknown names fail before any decoding


def emotion_vector(emotion: str | torch.Tensor, exp_dim: int, name: str) -> torch.Tensor:
    """1 x exp_dim expression weights of an emotion name/mix or a weight vector.

    Raises:
        ValueError: unknown emotion name (from `edtalk.emotions`).
        ModeError: a weight vector whose length is not the generator's `exp_dim`.
    """
    from edtalk.emotions import emotion_weights

    weights = emotion_weights(emotion) if isinstance(emotion, str) else torch.as_tensor(emotion).float()
    weights = weights.reshape(1, -1)
    if weights.shape[1] != exp_dim:
        raise ModeError(
            f"emotion weights have {weights.shape[1]} values but {name} has {exp_dim} expression directions"
        )
    return weights
