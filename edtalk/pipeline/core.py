"""`Pipeline`: files in (source + drivers), an mp4 out; and loading its models through `edtalk.weights`."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edtalk.io import FPS
from edtalk.nn.generator import Generator
from edtalk.pipeline.inputs import Available, Inputs, Result, check_inputs
from edtalk.pipeline.media import Media
from edtalk.pipeline.motion import AudioModels, MotionResolver, Plan
from edtalk.pipeline.render import Renderer, autocast, default_chunk_size, pick_device, precision_note
from edtalk.pipeline.writer import legacy_frames, write_chunks

AUDIO_KINDS = ("audio2lip", "audio2pose", "audio2exp")


class Pipeline:
    """Source + drivers -> frames, streamed to an mp4.

    Args:
        generator: a full or lip-pose `Generator` (ours or an official checkpoint's).
        audio2lip: `Audio2Lip` (mel windows -> mouth weights); needed when audio drives the mouth.
        audio2pose: `Audio2Pose`; used for pose when audio is given and no pose driver / `fix_pose`.
        audio2exp: `Audio2Exp`; needed for `emotion="auto"`.
        device: "auto" (CUDA, MPS, CPU) or a torch device string.
        chunk_size: frames per render batch (default: 2 on CPU, 32 on CUDA).
        bf16: bfloat16 autocast (GPUs, CPUs with bf16 units) for the drivers' encoder and the fine decoder
            levels; the source encoding, flows, EEM, coarse decoder levels, bases, latents and motion
            heads stay float32 (`edtalk.nn.synthesis`). Off by default: vs float32 it holds 35-56 dB
            PSNR on the parity weights with a photo, but ~25 dB with noise images (chaotic random
            weights), see README's speed section and benchmarks/render.py --layers.
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
        self.audio2lip, self.audio2pose, self.audio2exp = (
            m.eval().to(self.device) if m is not None else None for m in (audio2lip, audio2pose, audio2exp)
        )
        self.chunk_size = chunk_size or default_chunk_size(self.device)
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.bf16, self.crop, self.progress, self.name = bf16, crop, progress, name
        self.size = generator.cfg.size
        self.renderer = Renderer(self.generator, self.chunk_size)
        self.precision = precision_note(self.device, bf16)  # which numeric path renders, in words

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
        models = load_models(checkpoint, audio2lip, audio2pose, audio2exp)
        return cls(*models, name=str(checkpoint), **kwargs)

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
            **drivers: audio, lip, pose, exp, emotion, emotion_strength, fix_pose, no_expression, extend,
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
                frames = legacy_frames(frames, plan.num_frames, Path(tmp))
            path = write_chunks(frames, Path(out), plan.num_frames, plan.soundtrack, self.progress)
        return Result(path, plan.num_frames, FPS, time.perf_counter() - start, plan.sources)

    def stream(self, inputs: Inputs) -> Iterator[torch.Tensor]:
        """Rendered frames as float [-1, 1] chunks (n x 3 x S x S, CPU), for callers that write themselves."""
        with tempfile.TemporaryDirectory(prefix="edtalk-") as tmp:
            plan = self._plan(inputs, Path(tmp))
            yield from self._render(plan)

    # -- planning and rendering ------------------------------------------------------------------
    def _plan(self, inputs: Inputs, tmp: Path) -> Plan:
        available = Available(
            self.generator.cfg, self.name, self.audio2lip is not None, self.audio2exp is not None
        )
        check_inputs(inputs, available)
        audio = AudioModels(self.audio2lip, self.audio2pose, self.audio2exp)
        resolver = MotionResolver(self.renderer, audio, self.device, self.name)
        with torch.inference_mode(), autocast(self.device, self.bf16):
            return resolver.plan(inputs, Media(tmp, self.size, self.crop))

    def _render(self, plan: Plan) -> Iterator[torch.Tensor]:
        """Chunks of frames n x 3 x S x S (float32, CPU) in [-1, 1] (not clamped)."""
        with torch.inference_mode(), autocast(self.device, self.bf16):
            for frames, _ in self.renderer.stream(plan.source, plan.motion, plan.num_frames):
                yield frames.float().cpu()


# -- loading models ------------------------------------------------------------------------------
def load_audio_model(path: str | Path, kind: str) -> nn.Module:
    """Audio2Lip / Audio2Pose / Audio2Exp from an official file (Audio2Lip.pt), one of ours, or the
    Lightning checkpoint of the stage that trained it (`edtalk.weights.load` decides which).

    Raises:
        CheckpointError: missing/unreadable file or a checkpoint of another kind (named in the message).
    """
    from edtalk import weights

    if kind not in AUDIO_KINDS:
        raise ValueError(f"audio model kind must be audio2lip, audio2pose or audio2exp, got {kind!r}")
    return weights.load(path, kind)


def load_models(
    checkpoint: str | Path,
    audio2lip: str | Path | None = None,
    audio2pose: str | Path | None = None,
    audio2exp: str | Path | None = None,
) -> tuple[Generator, nn.Module | None, nn.Module | None, nn.Module | None]:
    """(generator, audio2lip, audio2pose, audio2exp) from files through `edtalk.weights`; None where no path.

    Raises:
        CheckpointError: a missing/unreadable file or one of another kind (named in the message).
    """
    from edtalk.weights import load_generator

    generator = load_generator(checkpoint)
    paths = (audio2lip, audio2pose, audio2exp)
    audio = [
        load_audio_model(p, k) if p is not None else None for p, k in zip(paths, AUDIO_KINDS, strict=True)
    ]
    return generator, audio[0], audio[1], audio[2]
