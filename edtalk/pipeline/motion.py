"""Motion resolution: which input drives mouth, pose and expression, as T x d bank weights per component.

| component | taken from (first that applies)                                                        |
|-----------|----------------------------------------------------------------------------------------|
| mouth     | lip video (`lip`) · audio through `Audio2Lip` · the source                              |
| pose      | pose video (`pose`) · the source (`fix_pose`) · audio through `Audio2Pose` · the source |
| expression| expression image/video (`exp`) · `emotion` (name, mix, 1 x 10 weights, "auto" =       |
|           | `Audio2Exp`) · the source; none with `no_expression` or a lip-pose generator           |

Driver videos go through the encoder in chunks and are reduced to their coefficients (T x 36 numbers).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edtalk.io import from_uint8
from edtalk.pipeline.inputs import (
    Extend,
    Inputs,
    ModeError,
    emotion_vector,
    extend_indices,
    is_auto,
    is_image,
)
from edtalk.pipeline.media import SAMPLES_PER_FRAME, Media, read_speech, soundtrack
from edtalk.pipeline.render import FrameSource, Renderer, Source, StillSource

AUDIO_BATCH = 512  # mel windows per Audio2Lip call (bounded memory for long audio)


@dataclass
class AudioModels:
    """The audio networks a render may use (each optional, in eval mode on the render's device)."""

    audio2lip: nn.Module | None = None
    audio2pose: nn.Module | None = None
    audio2exp: nn.Module | None = None


@dataclass
class Plan:
    """A resolved render: length, source, motion per component (None = from the source), soundtrack and
    which input drove what."""

    num_frames: int
    source: StillSource | FrameSource
    motion: dict[str, torch.Tensor | None]  # T x d per component, None = from the source
    soundtrack: np.ndarray | None
    sources: dict[str, str]


class MotionResolver:
    """Turns `Inputs` into a `Plan` (call it under inference mode; media staged by `Media`).

    Args:
        renderer: the renderer whose generator encodes the source and drivers.
        audio: the audio models.
        device: where mel windows and coefficients live.
        name: label of the generator checkpoint in error messages.
    """

    def __init__(self, renderer: Renderer, audio: AudioModels, device: torch.device, name: str) -> None:
        self.renderer, self.audio, self.device, self.name = renderer, audio, device, name
        self.generator = renderer.generator

    def plan(self, inputs: Inputs, media: Media) -> Plan:
        """Length, source and motion of every component; `sources` records who drives what."""
        wav, mel = read_speech(Path(inputs.audio), self.device) if inputs.audio is not None else (None, None)
        length = self.length(inputs, wav, media)
        source = self.source(inputs, length, media)
        sources: dict[str, str] = {}
        motion = {
            "mouth": self.mouth(inputs, mel, length, media, sources),
            "pose": self.pose(inputs, mel, length, media, source, sources),
        }
        if self.generator.cfg.has_expression and not inputs.no_expression:
            motion["exp"] = self.exp(inputs, mel, length, media, sources)
        else:
            sources["exp"] = "none"
        track = wav if wav is not None else soundtrack(inputs)
        return Plan(length, source, motion, track, sources)

    def length(self, inputs: Inputs, wav: np.ndarray | None, media: Media) -> int:
        """Frames of the clip: the lip video's, else floor(len(audio) / 640), else the first video's."""
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

    def source(self, inputs: Inputs, length: int, media: Media) -> StillSource | FrameSource:
        """A photo (encoded now) or a video source (extended to `length`, encoded chunk by chunk)."""
        path = Path(inputs.source)
        if is_image(path):
            return self.renderer.still(from_uint8(np.array(media.image(path)))[None].to(self.device))
        frames = media.video(path, length)
        index = extend_indices(len(frames), length, inputs.extend)

        def load(start: int, stop: int) -> torch.Tensor:
            return from_uint8(np.array(frames[index[start:stop]])).to(self.device)

        return FrameSource(self.renderer, load)

    # -- per component ---------------------------------------------------------------------------
    def mouth(
        self, inputs: Inputs, mel: torch.Tensor | None, length: int, media: Media, sources: dict[str, str]
    ) -> torch.Tensor | None:
        """T x 20 from the lip video or the audio (Audio2Lip, smoothed); None = the source's."""
        if inputs.lip is not None:
            sources["mouth"] = f"lip video {inputs.lip}"
            return self.driver(Path(inputs.lip), length, inputs.extend, media)["mouth"]
        if mel is not None:
            from edtalk.mel import smooth_coefficients

            assert self.audio.audio2lip is not None
            sources["mouth"] = f"audio {inputs.audio}"
            mouth = torch.cat([self.audio.audio2lip(m) for m in mel.split(AUDIO_BATCH)])  # -> T x 20
            return smooth_coefficients(mouth.float())
        sources["mouth"] = "source"
        return None

    def pose(
        self,
        inputs: Inputs,
        mel: torch.Tensor | None,
        length: int,
        media: Media,
        source: Source,
        sources: dict[str, str],
    ) -> torch.Tensor | None:
        """T x 6 from the pose video or Audio2Pose draws; None = the source's (fix_pose, video sources)."""
        if inputs.pose is not None:
            sources["pose"] = f"pose video {inputs.pose}"
            return self.driver(Path(inputs.pose), length, inputs.extend, media)["pose"]
        a2p = self.audio.audio2pose
        use_audio = mel is not None and a2p is not None and inputs.lip is None
        if inputs.fix_pose or not use_audio or not isinstance(source, StillSource):
            sources["pose"] = "source"
            return None
        assert mel is not None and a2p is not None
        rng = torch.Generator(device=self.device).manual_seed(inputs.seed)
        sample = a2p.sample  # Audio2Pose.sample(mel, temperature, generator, ref_pose)
        pose = sample(mel[None], inputs.pose_temperature, rng, ref_pose=source.own["pose"])  # type: ignore[operator]  # -> 1xTx6
        sources["pose"] = f"audio2pose (temperature {inputs.pose_temperature:g})"
        return pose[0, :length].float()

    def exp(
        self, inputs: Inputs, mel: torch.Tensor | None, length: int, media: Media, sources: dict[str, str]
    ) -> torch.Tensor | None:
        """T x 10 from the expression driver, an emotion or Audio2Exp; None = the source's."""
        if inputs.exp is not None:
            sources["exp"] = f"expression driver {inputs.exp}"
            return self.driver(Path(inputs.exp), length, inputs.extend, media)["exp"]
        emotion = inputs.emotion
        if emotion is None:
            sources["exp"] = "source"
            return None
        if is_auto(emotion):
            assert mel is not None and self.audio.audio2exp is not None
            weights = self.audio.audio2exp(mel[None]).exp.float()  # -> 1 x 10
            sources["exp"] = "audio2exp"
        else:
            weights = emotion_vector(emotion, self.generator.cfg.exp_dim, self.name)
            sources["exp"] = f"emotion {emotion}" if isinstance(emotion, str) else "emotion weights"
        if inputs.emotion_strength != 1.0:
            weights = weights * inputs.emotion_strength
            sources["exp"] += f" x {inputs.emotion_strength:g}"
        return weights.to(self.device).expand(length, -1)

    def driver(self, path: Path, length: int, extend: Extend, media: Media) -> dict[str, torch.Tensor]:
        """Coefficients of a driver image/video for `length` frames (encoder in chunks, extended)."""
        frames = media.frames(path, length)
        step = self.renderer.chunk_size
        coeffs = [
            self.renderer.coefficients(from_uint8(np.array(frames[i : i + step])).to(self.device))
            for i in range(0, len(frames), step)
        ]
        index = torch.from_numpy(extend_indices(len(frames), length, extend)).to(self.device)
        return {k: torch.cat([c[k] for c in coeffs]).float()[index] for k in coeffs[0]}
