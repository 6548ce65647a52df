"""Inference pipeline: a source (photo or video) + any drivers -> a 25 fps talking-head video.

One `Pipeline.__call__` covers every mode of the original demos (SPEC section 6) and more.

Which input drives mouth, pose and expression is `edtalk.pipeline.motion`'s table.

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

| module    | holds                                                                                   |
|-----------|-----------------------------------------------------------------------------------------|
| `inputs`  | `Inputs`, `Result`, `ModeError`, the mode checks, `extend_indices`, emotion vectors      |
| `media`   | reading, cropping, resizing and disk staging of photos / videos; speech and soundtrack  |
| `motion`  | motion resolution: who drives mouth, pose and expression -> a `Plan`                    |
| `render`  | `Renderer`: tensor-in/tensor-out chunked rendering (`Generator.animate`), device choice |
| `writer`  | the H.264 writer thread and the legacy min-max pixel map                                |
| `core`    | `Pipeline` (files in, mp4 out) and model loading through `edtalk.weights`               |
"""

from __future__ import annotations

from edtalk.pipeline.core import AUDIO_KINDS, Pipeline, load_audio_model, load_models
from edtalk.pipeline.inputs import (
    IMAGE_SUFFIXES,
    Available,
    Extend,
    Inputs,
    ModeError,
    Result,
    check_inputs,
    emotion_vector,
    extend_indices,
    is_image,
)
from edtalk.pipeline.media import SAMPLES_PER_FRAME, Media, read_image, read_speech
from edtalk.pipeline.motion import AUDIO_BATCH, AudioModels, MotionResolver, Plan
from edtalk.pipeline.render import (
    DrivenSource,
    FrameSource,
    Motion,
    Renderer,
    StillSource,
    autocast,
    bf16_native,
    default_chunk_size,
    pick_device,
    precision_note,
)
from edtalk.pipeline.writer import legacy_frames, write_chunks

_legacy_frames = legacy_frames  # the name tests and older callers import

__all__ = [
    "AUDIO_BATCH",
    "AUDIO_KINDS",
    "IMAGE_SUFFIXES",
    "SAMPLES_PER_FRAME",
    "AudioModels",
    "Available",
    "DrivenSource",
    "Extend",
    "FrameSource",
    "Inputs",
    "Media",
    "ModeError",
    "Motion",
    "MotionResolver",
    "Pipeline",
    "Plan",
    "Renderer",
    "Result",
    "StillSource",
    "autocast",
    "bf16_native",
    "check_inputs",
    "default_chunk_size",
    "emotion_vector",
    "extend_indices",
    "is_image",
    "legacy_frames",
    "load_audio_model",
    "load_models",
    "pick_device",
    "precision_note",
    "read_image",
    "read_speech",
    "write_chunks",
]
