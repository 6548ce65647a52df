"""Inference pipeline: equality with the generator's per-frame forward, streaming structure, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edtalk.config import GeneratorConfig
from edtalk.emotions import EMOTIONS, emotion_weights, predefined
from edtalk.io import MediaError, from_uint8, legacy_to_uint8, read_video, write_video, write_wav
from edtalk.mel import mel_windows, smooth_coefficients
from edtalk.nn.audio2lip import Audio2Lip
from edtalk.nn.generator import Generator
from edtalk.pipeline import (
    Inputs,
    ModeError,
    Pipeline,
    Renderer,
    _legacy_frames,
    extend_indices,
    load_audio_model,
)
from edtalk.weights import CheckpointError, save_checkpoint, save_official

SIZE = 64


def tame(gen: Generator) -> Generator:
    """A well-conditioned random model: small motion directions, gentle flows, RGB within about [-1, 1].

    Random flow heads make the warp chaotic (a 1e-6 change of w moves pixels by ~1e-2), so float
    rounding differences between batch sizes would swamp any tolerance; trained models are smooth.
    """
    with torch.no_grad():
        gen.banks.mouth_pose.mul_(0.1)
        if gen.banks.expression is not None:
            gen.banks.expression.mul_(0.1)
        for to_flow, to_rgb in zip(gen.synthesis.to_flows, gen.synthesis.to_rgbs):
            to_flow.conv.weight.mul_(0.05)
            to_rgb.conv[0].weight.mul_(0.25)
    return gen.eval()


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("media")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)).save(d / "source.png")
    t = np.arange(7000) / 16000  # 10 frames + a partial one
    write_wav(d / "speech.wav", 0.3 * np.sin(2 * np.pi * 200 * t) * np.sin(2 * np.pi * 3 * t))
    write_wav(d / "blip.wav", np.zeros(600))
    frames = rng.integers(0, 256, (6, SIZE, SIZE, 3), dtype=np.uint8)
    write_video(d / "driver.mp4", frames)
    (d / "broken.png").write_bytes(b"not an image at all")
    return {p.stem: p for p in d.iterdir()}


@pytest.fixture(scope="module")
def full() -> Generator:
    torch.manual_seed(1)
    return tame(Generator(GeneratorConfig.tiny("full", size=SIZE)))


def per_frame(gen: Generator, source: torch.Tensor, alpha: dict[str, torch.Tensor]) -> torch.Tensor:
    """The reference: the generator's own path at batch 1, one frame at a time, source re-encoded."""
    out = []
    for t in range(len(alpha["mouth"])):
        enc = gen.encode(source)
        w, e = gen.latent(enc.w_a, {k: v[t : t + 1] for k, v in alpha.items()})
        out.append(gen.render(enc, w, e))
    return torch.cat(out)


def test_extend_indices() -> None:
    assert extend_indices(3, 8, "pingpong").tolist() == [0, 1, 2, 2, 1, 0, 0, 1]
    assert extend_indices(3, 5, "hold").tolist() == [0, 1, 2, 2, 2]
    assert extend_indices(5, 3, "pingpong").tolist() == [0, 1, 2]
    assert extend_indices(1, 3, "pingpong").tolist() == [0, 0, 0]


@torch.no_grad()
def test_video_driven_equals_forward(full: Generator, media: dict[str, Path]) -> None:
    pipe = Pipeline(full, device="cpu", chunk_size=4, crop=False, progress=False)
    inputs = Inputs(media["source"], lip=media["driver"], pose=media["driver"], exp=media["driver"])
    batched = torch.cat(list(pipe.stream(inputs)))
    frames = from_uint8(read_video(media["driver"]))
    source = from_uint8(np.array(Image.open(media["source"])))[None]
    expected = torch.cat(
        [full(source, frames[t : t + 1], frames[t : t + 1], frames[t : t + 1]) for t in range(6)]
    )
    assert batched.shape == (6, 3, SIZE, SIZE)
    assert 0.2 < expected.abs().max() < 2  # tame: outputs are O(1), so 1e-5 is a meaningful tolerance
    assert (batched - expected).abs().max() < 1e-5


@torch.no_grad()
def test_audio_emotion_equals_per_frame(full: Generator, media: dict[str, Path]) -> None:
    torch.manual_seed(2)
    a2l = Audio2Lip(channels=(4, 8, 8, 16, 16)).eval()
    pipe = Pipeline(full, a2l, device="cpu", chunk_size=3, crop=False, progress=False)
    batched = torch.cat(list(pipe.stream(Inputs(media["source"], audio=media["speech"], emotion="sad:0.5"))))
    from edtalk.io import read_audio

    mel = torch.from_numpy(mel_windows(read_audio(media["speech"])))
    mouth = smooth_coefficients(torch.cat([a2l(mel[t : t + 1]) for t in range(len(mel))]))
    source = from_uint8(np.array(Image.open(media["source"])))[None]
    own = full.coefficients(source)
    t = len(mouth)
    alpha = {"mouth": mouth, "pose": own["pose"].expand(t, -1), "exp": 0.5 * predefined("sad").expand(t, -1)}
    assert t == 10 == len(batched)  # floor(7000 / 640)
    assert (batched - per_frame(full, source, alpha)).abs().max() < 1e-5


@torch.no_grad()
def test_emotion_strength_scales_the_emotion_weights(full: Generator, media: dict[str, Path]) -> None:
    """`emotion_strength=K` renders what the weights K x the emotion's render, and differs from K = 1."""
    pipe = Pipeline(full, device="cpu", chunk_size=4, crop=False, progress=False)
    clip = media["source"], media["driver"]

    def render(**kw: object) -> torch.Tensor:
        return torch.cat(list(pipe.stream(Inputs(clip[0], pose=clip[1], **kw))))  # type: ignore[arg-type]

    scaled = render(emotion="sad:0.5", emotion_strength=2.0)
    assert (scaled - render(emotion=predefined("sad"))).abs().max() < 1e-5  # 2 x 0.5 sad = sad
    assert (scaled - render(emotion="sad:0.5")).abs().max() > 1e-3


def test_source_encoded_once(full: Generator, media: dict[str, Path]) -> None:
    calls: list[int] = []
    hook = full.encoder.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    try:
        pipe = Pipeline(full, device="cpu", chunk_size=4, crop=False, progress=False)
        frames = list(pipe.stream(Inputs(media["source"], pose=media["driver"], emotion="happy")))
    finally:
        hook.remove()
    assert sum(len(f) for f in frames) == 6
    assert calls == [1, 4, 2]  # the source exactly once, then driver frames in chunks


@torch.no_grad()
@pytest.mark.parametrize("channels_last", [True, False])
def test_renderer_tensors_in_out(full: Generator, channels_last: bool) -> None:
    """Video-driven and mixed (mouth given, the rest from driver frames) renders equal the per-frame path."""
    g = torch.Generator().manual_seed(3)
    source, frames = (
        torch.rand(1, 3, SIZE, SIZE, generator=g) * 2 - 1,
        torch.rand(5, 3, SIZE, SIZE, generator=g) * 2 - 1,
    )
    renderer = Renderer(full, chunk_size=2, channels_last=channels_last)
    rendered, coeffs = renderer(source, drivers=frames)
    expected = full.coefficients(frames)
    assert coeffs.keys() == expected.keys() == {"mouth", "pose", "exp"}
    for k in coeffs:
        assert (coeffs[k] - expected[k]).abs().max() < 1e-5
    assert (rendered - per_frame(full, source, expected)).abs().max() < 1e-5
    mouth = torch.randn(5, 20, generator=g) * 0.5
    mixed, used = renderer(source, dict.fromkeys(renderer.components) | {"mouth": mouth}, drivers=frames)
    assert torch.equal(used["mouth"], mouth) and torch.equal(used["pose"], coeffs["pose"])
    assert (mixed - per_frame(full, source, expected | {"mouth": mouth})).abs().max() < 1e-5
    assert (mixed - rendered).abs().max() > 1e-3  # the given mouth changed the frames


@torch.no_grad()
def test_renderer_still_source_and_no_expression(full: Generator) -> None:
    """Without drivers: `None` components come from the photo; a motion without "exp" renders no expression."""
    g = torch.Generator().manual_seed(4)
    source = torch.rand(1, 3, SIZE, SIZE, generator=g) * 2 - 1
    mouth = torch.randn(3, 20, generator=g) * 0.5
    renderer = Renderer(full, chunk_size=2)
    rendered, used = renderer(source, {"mouth": mouth, "pose": None})
    own = full.coefficients(source)
    assert used.keys() == {"mouth", "pose"} and torch.equal(used["mouth"], mouth)
    assert (used["pose"] - own["pose"].expand(3, -1)).abs().max() < 1e-5
    expected = per_frame(full, source, {"mouth": mouth, "pose": own["pose"].expand(3, -1)})
    assert (rendered - expected).abs().max() < 1e-5
    with pytest.raises(ValueError, match="needs motion of one length T"):
        renderer(source, {"mouth": None, "pose": None})
    with pytest.raises(ValueError, match="chunk_size must be >= 1, got 0"):
        Renderer(full, chunk_size=0)


def test_legacy_normalize_streams_like_whole_clip(tmp_path: Path) -> None:
    clip = torch.randn(10, 3, 8, 8) * 0.7
    chunks = _legacy_frames(iter(clip.split(3)), len(clip), tmp_path)
    assert torch.equal(torch.cat(list(chunks)), legacy_to_uint8(clip))


def test_emotion_weights() -> None:
    assert emotion_weights("happy").shape == (1, 10)
    torch.testing.assert_close(
        emotion_weights("Happy:0.7, sad:0.3"), 0.7 * predefined("happy") + 0.3 * predefined("sad")
    )
    torch.testing.assert_close(emotion_weights("angry:1.5"), 1.5 * predefined("angry"))
    assert abs(float(predefined("angry")[0, 1]) - 3.791) < 1e-3  # SPEC 4.5 table
    with pytest.raises(ValueError, match="unknown emotion 'joy'.*" + ", ".join(EMOTIONS)):
        emotion_weights("joy")
    with pytest.raises(ValueError, match="bad weight"):
        emotion_weights("happy:lots")


def _pipe(gen: Generator, **kw: object) -> Pipeline:
    return Pipeline(
        gen, Audio2Lip(channels=(4, 8, 8, 16, 16)), device="cpu", crop=False, progress=False, **kw
    )  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ({"audio": "blip"}, r"blip.wav lasts 0.03\d s, shorter than one video frame"),
        ({"source": "broken", "audio": "speech"}, r"cannot read image .*broken.png"),
        ({"emotion": "joy"}, r"unknown emotion 'joy'"),
        ({"emotion": "happy", "no_expression": True}, r"--no-expression contradicts"),
        ({"pose": "driver", "fix_pose": True}, r"--fix-pose contradicts --pose"),
        ({"emotion": "auto"}, r"--emotion auto needs --audio and an --audio2exp"),
        ({"audio": "speech", "emotion_strength": 2.0}, r"--emotion-strength scales --emotion's weights"),
        ({"audio": "speech", "emotion": "sad", "emotion_strength": -1.0}, r"--emotion-strength must be >= 0"),
        ({}, r"nothing sets the video length"),
    ],
)
def test_bad_inputs(full: Generator, media: dict[str, Path], case: dict[str, object], message: str) -> None:
    kw = {k: media[v] if k in ("audio", "source", "pose") else v for k, v in case.items()}
    kw.setdefault("source", media["source"])
    with pytest.raises(ValueError, match=message):
        list(_pipe(full).stream(Inputs(**kw)))  # type: ignore[arg-type]


def test_missing_file_and_no_face(full: Generator, media: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(MediaError, match=r"--audio file not found: .*nope.wav"):
        Inputs(media["source"], audio=tmp_path / "nope.wav")
    pipe = Pipeline(full, Audio2Lip(), device="cpu", crop=True, progress=False)
    with pytest.raises(MediaError, match=r"source.png: no face found.*--no-crop"):
        list(pipe.stream(Inputs(media["source"], audio=media["speech"])))


def test_wrong_checkpoint_kinds(tmp_path: Path, media: dict[str, Path]) -> None:
    lip_pose = Generator(GeneratorConfig.tiny("lip_pose", size=SIZE))
    save_official(lip_pose, "edtalk_lip_pose", tmp_path / "lip_pose.pt")
    save_official(Audio2Lip(), "audio2lip", tmp_path / "a2l.pt")
    with pytest.raises(CheckpointError, match=r"a2l.pt holds no generator \(found audio2lip\)"):
        Pipeline.from_checkpoints(tmp_path / "a2l.pt")
    with pytest.raises(
        CheckpointError, match=r"lip_pose.pt is a 'edtalk_lip_pose' checkpoint, expected audio2lip"
    ):
        load_audio_model(tmp_path / "lip_pose.pt", "audio2lip")
    save_checkpoint(Audio2Lip(), "audio2lip", tmp_path / "ours.pt")
    with pytest.raises(CheckpointError, match=r"ours.pt is a 'audio2lip' checkpoint, expected audio2pose"):
        load_audio_model(tmp_path / "ours.pt", "audio2pose")
    pipe = Pipeline.from_checkpoints(
        tmp_path / "lip_pose.pt", tmp_path / "a2l.pt", crop=False, progress=False
    )
    with pytest.raises(ModeError, match=r"lip_pose.pt is a lip-pose generator.*EDTalk.pt"):
        list(pipe.stream(Inputs(media["source"], audio=media["speech"], emotion="happy")))
