"""`edtalk ui`: a local web page (Gradio) for `edtalk generate` and `edtalk stream`.

The Generate tab calls the same `edtalk.pipeline.Pipeline` as the CLI: source photo (with an auto-crop
preview), audio upload or recording, optional pose / expression videos, an emotion with intensity
and an optional second emotion mixed in, checkpoint choice, 512² face super-resolution, a progress
bar, the result video and a download link. The Live tab runs `edtalk stream --realtime`'s session
(`edtalk.pipeline.live`): the speech is read at real time and each frame is shown on the page as soon
as its look-ahead is in; at the end the fragmented mp4 it wrote is offered with the stream's numbers.

Nothing happens at import: Gradio is imported by `build_app` / `launch`, models are loaded on the
first render that needs them, analytics are switched off in `launch`, and the page makes no network
calls (local fonts; no share link, no SSR node server). Without an official checkpoint the page
offers a random-weight tiny demo model, so it works out of the box (its videos show noise-like faces).

`Studio` holds everything but the widgets, so it is usable (and tested) without a browser.
"""

from __future__ import annotations

import os
import queue
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import gradio as gr
    import torch
    from torch import nn

    from edtalk.apps.facesr import FaceRestorer
    from edtalk.nn.generator import Generator
    from edtalk.pipeline import Result
    from edtalk.pipeline.live import LiveSession, LiveStats, PcmReader

DEMO_MODEL = "random tiny demo model (untrained, 64²)"
NO_EMOTION = "none (keep the source's expression)"
NO_EXPRESSION = "none (lip and pose only)"
EMOTION_CHOICES = (
    NO_EMOTION,
    NO_EXPRESSION,
    "angry",
    "contempt",
    "disgusted",
    "fear",
    "happy",
    "neutral",
    "sad",
    "surprised",
)
LIVE_EMOTIONS = (NO_EMOTION, *EMOTION_CHOICES[2:])  # a stream keeps an expression (no lip-only choice)
LIVE_VIEW = 256  # pixels: the live tab enlarges smaller frames by whole factors


@dataclass(frozen=True)
class UIConfig:
    """What `edtalk ui` serves.

    Attributes:
        checkpoints: generator files (official `EDTalk.pt` / `EDTalk_lip_pose.pt` or ours); the page
            also offers the random demo model when this is empty or `demo` is set.
        audio2lip / audio2pose / audio2exp: audio models used with every checkpoint.
        gfpgan: `GFPGANv1.4.pth` for face super-resolution (the demo model uses a random tiny
            GFPGAN when this is absent).
        device: "auto", "cpu", "cuda", ...
        out_dir: where rendered videos are written (default: a fresh temporary folder).
        demo: offer the demo model even when checkpoints are given.
    """

    checkpoints: tuple[Path, ...] = ()
    audio2lip: Path | None = None
    audio2pose: Path | None = None
    audio2exp: Path | None = None
    gfpgan: Path | None = None
    device: str = "auto"
    out_dir: Path | None = None
    demo: bool = False

    def model_choices(self) -> list[str]:
        names = [str(p) for p in self.checkpoints]
        return [*names, DEMO_MODEL] if self.demo or not names else names


@dataclass
class Request:
    """One render request as the page collects it (paths are local files Gradio uploaded)."""

    source: str | None
    audio: str | None = None
    pose: str | None = None
    exp: str | None = None
    emotion: str = NO_EMOTION
    intensity: float = 1.0
    mix_with: str = NO_EMOTION
    mix: float = 0.0
    fix_pose: bool = False
    crop: bool = True
    face_sr: bool = False
    model: str = DEMO_MODEL


# How the page's request maps onto `edtalk.pipeline.Inputs` (checked both ways by tests/test_request_shape.py):
# Inputs field -> the `Request` fields that set it, or why the page does not offer it.
REQUEST_MAP: dict[str, tuple[str, ...] | str] = {
    "source": ("source",),
    "audio": ("audio",),
    "lip": "not offered: the page drives the mouth from speech (use `edtalk generate --lip`)",
    "pose": ("pose",),
    "exp": ("exp",),
    "emotion": ("emotion", "intensity", "mix_with", "mix"),  # via emotion_spec
    "emotion_strength": "not offered: the page's intensity scales the emotion in emotion_spec",
    "fix_pose": ("fix_pose",),
    "no_expression": ("emotion",),  # the NO_EXPRESSION choice
    "extend": "not offered: shorter driver videos ping-pong (the default)",
    "pose_temperature": "not offered: no Audio2Pose control on the page (default 1.0)",
    "seed": "not offered: Audio2Pose draws use seed 0",
}
PAGE_ONLY = ("crop", "face_sr", "model")  # Request fields that are rendering options, not Inputs


def emotion_spec(emotion: str, intensity: float, mix_with: str, mix: float) -> str | None:
    """The pipeline's emotion text for the page's controls, e.g. ("happy", 1.2, "sad", 0.25) ->
    "happy:0.9,sad:0.3" (intensity scales the whole mix; `mix` is the second emotion's share)."""
    if emotion in (NO_EMOTION, NO_EXPRESSION):
        return None
    if not 0.0 <= mix <= 1.0:
        raise ValueError(f"the mix share must be in [0, 1], got {mix}")
    if mix_with in (NO_EMOTION, NO_EXPRESSION, emotion) or mix == 0.0:
        return f"{emotion}:{intensity:g}"
    return f"{emotion}:{intensity * (1 - mix):g},{mix_with}:{intensity * mix:g}"


@dataclass
class _Models:
    generator: Generator
    audio2lip: nn.Module | None
    audio2pose: nn.Module | None
    audio2exp: nn.Module | None
    demo: bool


@dataclass
class Studio:
    """The page's logic: model loading (cached per choice), crop preview and rendering."""

    cfg: UIConfig = field(default_factory=UIConfig)
    _models: dict[str, _Models] = field(default_factory=dict, repr=False)
    _restorers: dict[bool, FaceRestorer] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.out_dir = self.cfg.out_dir or Path(tempfile.mkdtemp(prefix="edtalk-ui-"))
        self.out_dir.mkdir(parents=True, exist_ok=True)

    # -- models ----------------------------------------------------------------------------------
    def _load(self, choice: str) -> _Models:
        if choice not in self._models:
            if choice not in self.cfg.model_choices():
                raise ValueError(f"unknown model {choice!r}; choose one of {self.cfg.model_choices()}")
            self._models[choice] = _demo_models() if choice == DEMO_MODEL else self._load_files(Path(choice))
        return self._models[choice]

    def _load_files(self, checkpoint: Path) -> _Models:
        from edtalk.pipeline import load_models

        cfg = self.cfg
        return _Models(*load_models(checkpoint, cfg.audio2lip, cfg.audio2pose, cfg.audio2exp), demo=False)

    def restorer(self, demo: bool) -> FaceRestorer:
        """GFPGAN v1.4 from `cfg.gfpgan`; for the demo model without weights, a random tiny one."""
        from edtalk.apps.facesr import FaceRestorer
        from edtalk.pipeline import pick_device

        random_ok = demo and self.cfg.gfpgan is None
        if random_ok not in self._restorers:
            device = pick_device(self.cfg.device)
            if random_ok:
                self._restorers[random_ok] = FaceRestorer.from_module(_demo_gfpgan(), device, batch_size=4)
            elif self.cfg.gfpgan is None:
                raise ValueError(
                    "face super-resolution needs GFPGANv1.4.pth: start the page with "
                    "`edtalk ui --gfpgan PATH` (GFPGAN release v1.3.4)"
                )
            else:
                self._restorers[random_ok] = FaceRestorer(self.cfg.gfpgan, device, batch_size=8)
        return self._restorers[random_ok]

    # -- page actions ----------------------------------------------------------------------------
    def preview(self, photo: str | None, crop: bool = True) -> tuple[np.ndarray | None, str]:
        """The face crop the render will use (256² uint8) and a status line."""
        if not photo:
            return None, "Upload a photo of one face."
        from datamodules.preprocess.crop import crop_image
        from edtalk.pipeline import read_image

        image = read_image(Path(photo))
        if not crop:
            return image, "Auto-crop is off: the photo is used as it is (resized to a square)."
        try:
            return crop_image(image), "Face found: this crop is what the model sees."
        except ValueError as err:
            return None, f"Auto-crop failed ({err}); give a photo of one face, or turn auto-crop off."

    def generate(self, req: Request) -> tuple[Result, str]:
        """Render `req` into `out_dir`; returns the result and a one-line summary for the page."""
        from edtalk.pipeline import Inputs, Pipeline

        if not req.source:
            raise ValueError("upload a source photo first")
        models = self._load(req.model)
        inputs = Inputs(
            source=req.source,
            audio=req.audio or None,
            pose=req.pose or None,
            exp=req.exp or None,
            emotion=None if req.exp else emotion_spec(req.emotion, req.intensity, req.mix_with, req.mix),
            fix_pose=req.fix_pose and not req.pose,
            no_expression=req.emotion == NO_EXPRESSION and not req.exp,
        )
        pipe = Pipeline(
            models.generator,
            models.audio2lip,
            models.audio2pose,
            models.audio2exp,
            device=self.cfg.device,
            crop=req.crop,
            progress=True,
            name=req.model,
        )
        out = self.out_dir / f"edtalk-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}.mp4"
        if req.face_sr:
            from edtalk.apps.facesr import render_restored

            result = render_restored(pipe, inputs, out, self.restorer(models.demo))
        else:
            result = pipe(inputs, out)
        size = self.restorer(models.demo).size if req.face_sr else pipe.size
        summary = (
            f"{result.num_frames} frames, {result.num_frames / result.fps:.2f} s at {result.fps} fps, "
            f"{size}x{size}, rendered in {result.seconds:.1f} s on {pipe.device}"
        )
        return result, summary

    def live(
        self, source: str | None, audio: str | None, emotion: str = NO_EMOTION, model: str = DEMO_MODEL
    ) -> Iterator[tuple[np.ndarray | None, str | None, str]]:
        """Stream `source` speaking `audio` as `edtalk stream --realtime` does, frame by frame.

        The audio (any format, made 16 kHz mono) is read at real time; a frame is rendered once its
        look-ahead (`EXACT_LOOKAHEAD`) is in, frames more than 1 s late are dropped (the last repeats).

        Yields:
            (newest frame H x W x 3 uint8, enlarged to >= `LIVE_VIEW`, None, status) while streaming, then (last frame, the
            fragmented mp4 written into `out_dir`, a summary with first-frame latency, real-time
            factor and drops).
        """
        from edtalk import io
        from edtalk.pipeline import pick_device
        from edtalk.pipeline.live import LiveStats, PcmReader, photo_session

        if not source or not audio:
            raise ValueError("upload a source photo and speech first")
        models = self._load(model)
        if models.audio2lip is None:
            raise ValueError(
                "the live tab needs Audio2Lip: start the page with `edtalk ui --audio2lip Audio2Lip.pt`"
            )
        device = pick_device(self.cfg.device)
        spec = emotion_spec(emotion, 1.0, NO_EMOTION, 0.0)
        session = photo_session(
            models.generator,
            models.audio2lip,
            Path(source),
            device=device,
            emotion=spec,
            name=model,
            max_lag=1.0,
        )
        stem = self.out_dir / f"edtalk-live-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        wav = io.write_wav(stem.with_suffix(".wav"), io.read_audio(audio, align_to_video=False))
        session.warm_up()
        stats, frames = LiveStats(), _LiveFrames(stem.with_suffix(".mp4"))
        with open(wav, "rb") as fh:
            reader = PcmReader(fh, Path(audio).name, realtime=True)
            worker = threading.Thread(target=frames.run, args=(session, reader, stats), daemon=True)
            worker.start()
            last = None
            for frame in frames:
                last = frame
                yield (
                    frame,
                    None,
                    f"live: {stats.frames} frames ({stats.frames / 25:.1f} s), {stats.dropped} dropped",
                )
            worker.join()
        if frames.error is not None:
            raise frames.error
        summary = (
            f"{stats.frames} frames streamed; first frame {stats.first_frame_latency_s} s after the audio began, "
            f"real-time factor {stats.rtf}, {stats.dropped} dropped, on {device}"
        )
        yield last, str(frames.path), f"**Done:** {summary}"


class _LiveFrames:
    """A live session's output: frames into a fragmented mp4 (`LiveWriter`) and, newest first, to the page."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.error: Exception | None = None
        self.queue: queue.Queue[np.ndarray | None] = queue.Queue()

    def run(self, session: LiveSession, reader: PcmReader, stats: LiveStats) -> None:
        """The session's loop (on a worker thread); always ends the frame iterator, errors kept in `error`."""
        from edtalk import io
        from edtalk.pipeline.writer import LiveWriter

        writer = LiveWriter(self.path)

        def write(frames: torch.Tensor, audio: np.ndarray) -> None:
            writer.write(frames, audio)
            frame = io.to_uint8(frames[-1]).numpy()
            k = max(1, LIVE_VIEW // frame.shape[0])  # small models' frames shown at >= 256 px (nearest)
            self.queue.put(frame.repeat(k, axis=0).repeat(k, axis=1))

        try:
            session.run(reader.start(), write, stats)
        except Exception as err:  # handed to the page's thread, raised there
            self.error = err
        finally:
            writer.close()
            self.queue.put(None)

    def __iter__(self) -> Iterator[np.ndarray]:
        """The newest frame each time the page asks (frames rendered in between are skipped on screen)."""
        while (item := self.queue.get()) is not None:
            while not self.queue.empty():
                nxt = self.queue.get()
                if nxt is None:
                    yield item
                    return
                item = nxt
            yield item


def _demo_models() -> _Models:
    """A seeded random tiny full generator and Audio2Lip (works with every page control)."""
    import torch

    from edtalk.config import GeneratorConfig
    from edtalk.nn.audio2lip import Audio2Lip
    from edtalk.nn.generator import Generator

    gen_cfg = GeneratorConfig.tiny("full", size=64)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        gen = Generator(gen_cfg)
        lip = Audio2Lip(gen_cfg.mouth_dim, channels=(8, 16, 16, 32, 32))
    return _Models(gen.eval(), lip.eval(), None, None, demo=True)


def _demo_gfpgan() -> Any:
    import torch

    from edtalk.nn.gfpgan import GFPGAN, GFPGANConfig

    with torch.random.fork_rng():
        torch.manual_seed(0)
        return GFPGAN(GFPGANConfig.tiny()).eval()


# -- the page ------------------------------------------------------------------------------------
def build_app(studio: Studio) -> gr.Blocks:
    """The Gradio page over `studio` (not launched)."""
    import gradio as gr

    with gr.Blocks(title="EDTalk", analytics_enabled=False) as app:
        gr.Markdown("## EDTalk: emotional talking heads\nA photo and speech in, a talking video out.")
        with gr.Tabs():
            with gr.Tab("Generate", id="generate-tab"):
                _generate_tab(gr, studio)
            with gr.Tab("Live", id="live-tab", elem_id="live-tab"):
                _live_tab(gr, studio)
    return app


def _generate_tab(gr: Any, studio: Studio) -> None:
    with gr.Row():
        with gr.Column():
            w = _input_widgets(gr, studio)
        with gr.Column():
            run = gr.Button("Generate", variant="primary", elem_id="generate")
            video = gr.Video(label="Result", elem_id="result-video", interactive=False)
            file = gr.File(label="Download", elem_id="result-file", interactive=False)
            status = gr.Markdown(elem_id="status")
    w["source"].change(studio.preview, [w["source"], w["crop"]], [w["preview"], w["preview_note"]])
    w["crop"].change(studio.preview, [w["source"], w["crop"]], [w["preview"], w["preview_note"]])
    names = _REQUEST_FIELDS

    def on_generate(*values: Any, progress: gr.Progress = gr.Progress(track_tqdm=True)) -> tuple:  # noqa: B008
        req = Request(**dict(zip(names, values)))
        progress(0, desc="preparing")
        try:
            result, summary = studio.generate(req)
        except (ValueError, FileNotFoundError) as err:
            raise gr.Error(str(err)) from err
        path = str(result.path)
        return path, path, f"**Done:** {summary}"

    run.click(on_generate, [w[n] for n in names], [video, file, status])


def _live_tab(gr: Any, studio: Studio) -> None:
    """`edtalk stream` on the page: frames appear as they are rendered, the mp4 follows at the end."""
    choices = studio.cfg.model_choices()
    with gr.Row():
        with gr.Column():
            source = gr.Image(
                label="Source photo", type="filepath", sources=["upload"], elem_id="live-source"
            )
            audio = gr.Audio(
                label="Speech (upload or record; played in at real time)",
                type="filepath",
                sources=["upload", "microphone"],
                elem_id="live-audio",
            )
            emotion = gr.Dropdown(
                list(LIVE_EMOTIONS), value=NO_EMOTION, label="Emotion", elem_id="live-emotion"
            )
            model = gr.Dropdown(choices, value=choices[0], label="Checkpoint", elem_id="live-model")
            start = gr.Button("Start live", variant="primary", elem_id="live-start")
        with gr.Column():
            frame = gr.Image(label="Live", interactive=False, elem_id="live-frame")
            status = gr.Markdown(elem_id="live-status")
            video = gr.Video(label="The stream as an mp4", elem_id="live-video", interactive=False)

    def on_live(source: str | None, audio: str | None, emotion: str, model: str) -> Iterator[tuple]:
        try:
            yield from studio.live(source, audio, emotion, model)
        except (ValueError, FileNotFoundError) as err:
            raise gr.Error(str(err)) from err

    start.click(on_live, [source, audio, emotion, model], [frame, video, status])


_REQUEST_FIELDS = tuple(f.name for f in fields(Request))  # widget order = the dataclass' field order


def _input_widgets(gr: Any, studio: Studio) -> dict[str, Any]:
    """The input controls, keyed by `Request` field (in `_REQUEST_FIELDS` order), plus the preview."""
    choices = studio.cfg.model_choices()
    w: dict[str, Any] = {}
    with gr.Row():
        w["source"] = gr.Image(label="Source photo", type="filepath", sources=["upload"], elem_id="source")
        preview = gr.Image(label="Auto-crop preview", interactive=False, elem_id="preview")
    preview_note = gr.Markdown(elem_id="preview-note")
    w["audio"] = gr.Audio(
        label="Speech (upload or record)", type="filepath", sources=["upload", "microphone"], elem_id="audio"
    )
    with gr.Accordion("Optional driving videos", open=False):
        w["pose"] = gr.Video(label="Head pose video", sources=["upload"], elem_id="pose")
        w["exp"] = gr.Video(
            label="Expression video (replaces the emotion)", sources=["upload"], elem_id="exp"
        )
    with gr.Row():
        w["emotion"] = gr.Dropdown(
            list(EMOTION_CHOICES), value=NO_EMOTION, label="Emotion", elem_id="emotion"
        )
        w["intensity"] = gr.Slider(0.0, 2.0, value=1.0, step=0.05, label="Intensity", elem_id="intensity")
    with gr.Row():
        w["mix_with"] = gr.Dropdown(
            list(EMOTION_CHOICES[:1] + EMOTION_CHOICES[2:]), value=NO_EMOTION, label="Mix with"
        )
        w["mix"] = gr.Slider(0.0, 1.0, value=0.0, step=0.05, label="Share of the mixed emotion")
    with gr.Row():
        w["fix_pose"] = gr.Checkbox(label="Keep the source's head pose", value=False)
        w["crop"] = gr.Checkbox(label="Auto-crop the photo", value=True, elem_id="crop")
        w["face_sr"] = gr.Checkbox(
            label="Face super-resolution (GFPGAN v1.4, 512²)",
            value=False,
            elem_id="face-sr",
            info=f"weights: {studio.cfg.gfpgan}"
            if studio.cfg.gfpgan
            else "needs `edtalk ui --gfpgan GFPGANv1.4.pth` (the demo model uses random weights)",
        )
    w["model"] = gr.Dropdown(choices, value=choices[0], label="Checkpoint", elem_id="model")
    w["preview"], w["preview_note"] = preview, preview_note
    return w


def launch(studio: Studio, host: str = "127.0.0.1", port: int = 7860, block: bool = True) -> gr.Blocks:
    """Serve the page on http://host:port (blocks until interrupted unless `block=False`)."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # no telemetry, no version check
    app = build_app(studio)
    app.queue(default_concurrency_limit=1)
    app.launch(
        server_name=host,
        server_port=port,
        share=False,
        inbrowser=False,
        ssr_mode=False,
        mcp_server=False,
        prevent_thread_lock=not block,
        allowed_paths=[str(studio.out_dir)],
        footer_links=[],
        show_error=True,
    )
    return app
