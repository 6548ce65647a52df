"""The main job's demo renders: every generation mode of the original demos from the built-in test speaker.

`render` (a plan task) renders each mode of `demo_modes` with the run's checkpoints into
`OUT/videos/<mode>.mp4` and a frame strip per video into `OUT/strips/<mode>.png`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from edtalk import io


def render(job: Any) -> dict[str, Any]:
    """Every mode of `demo_modes` with `job.checkpoints()`; returns {"videos": ..., "strips": ...}."""
    from edtalk.pipeline import Pipeline

    ckpts = job.checkpoints()
    pipe = Pipeline.from_checkpoints(
        ckpts["generator"],
        audio2lip=ckpts["audio2mouth"],
        audio2pose=ckpts["audio2pose"],
        audio2exp=ckpts["audio2exp"],
        device="cpu",
        progress=False,
    )
    inputs = demo_inputs(job.shards.parent / "raw", job.out / "inputs")
    videos, strips = {}, {}
    for name, kwargs in demo_modes(inputs, ckpts, job.results.get("emotion_vectors")).items():
        job.step("render", name)
        result = pipe(out=job.out / "videos" / f"{name}.mp4", seed=job.seed, **kwargs)
        videos[name] = result.path
        strips[name] = frame_strip(result.path, job.out / "strips" / f"{name}.png")
    return {"videos": videos, "strips": strips}


def demo_inputs(raw: Path, folder: Path) -> dict[str, Path]:
    """A source photo, speech and driver videos from the built-in test speaker's raw clips (into `folder`)."""
    from PIL import Image

    from datamodules.synthetic import TEST_SPEAKERS

    clips = sorted(raw.glob(f"{TEST_SPEAKERS[0]}/video/front/*/*/*.mp4"))
    if len(clips) < 3:
        raise FileNotFoundError(f"the built-in raw clips are missing under {raw}; delete it to rebuild")
    folder.mkdir(parents=True, exist_ok=True)
    photo = folder / "source.png"
    Image.fromarray(io.read_video(clips[0], max_frames=1)[0]).save(photo)
    speech = io.write_wav(folder / "speech.wav", io.read_audio(clips[1]))
    return {"photo": photo, "speech": speech, "video_a": clips[1], "video_b": clips[2]}


def demo_modes(
    inp: dict[str, Path], ckpts: dict[str, Path | None], vectors: Path | None = None
) -> dict[str, dict[str, Any]]:
    """Every generation mode of the original demos, plus our extras where their models exist.

    `vectors`: a folder of <emotion>.npy computed from the generator that renders (`edtalk
    emotion-vectors`); without it the emotion modes use the release's vectors (right only for the
    official generator).
    """
    photo, speech, a, b = inp["photo"], inp["speech"], inp["video_a"], inp["video_b"]
    happy: str | torch.Tensor = "happy"
    mix: str | torch.Tensor = "happy:0.7,sad:0.3"
    if vectors is not None and (vectors / "happy.npy").is_file() and (vectors / "sad.npy").is_file():
        h, s = (torch.from_numpy(np.load(vectors / f"{e}.npy")) for e in ("happy", "sad"))
        happy, mix = h, 0.7 * h + 0.3 * s
    modes: dict[str, dict[str, Any]] = {
        "audio_emotion_happy": {"source": photo, "audio": speech, "emotion": happy, "pose": b},
        "audio_emotion_mix": {
            "source": photo,
            "audio": speech,
            "emotion": mix,
            "fix_pose": True,
        },
        "audio_exp_video": {"source": photo, "audio": speech, "exp": b, "pose": b},
        "audio_no_expression_fixed_pose": {
            "source": photo,
            "audio": speech,
            "no_expression": True,
            "fix_pose": True,
        },
        "lip_from_video": {"source": photo, "lip": a, "pose": b, "no_expression": True},
        "change_video_lip": {"source": a, "audio": speech},
        "video_driven": {"source": photo, "lip": a, "pose": b, "exp": b},
    }
    if ckpts.get("audio2pose") is not None:
        modes["audio_pose_sampled"] = {
            "source": photo,
            "audio": speech,
            "emotion": "neutral",
            "pose_temperature": 0.7,
        }
    if ckpts.get("audio2exp") is not None:
        modes["audio_emotion_auto"] = {"source": photo, "audio": speech, "emotion": "auto", "fix_pose": True}
    return modes


def frame_strip(video: Path, path: Path, frames: int = 8) -> Path:
    """`frames` evenly spaced frames of `video` side by side in one PNG."""
    from PIL import Image

    clip = io.read_video(video)
    idx = np.linspace(0, len(clip) - 1, min(frames, len(clip))).round().astype(int)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(list(clip[idx]), axis=1)).save(path)  # -> H x (n*W) x 3
    return path
