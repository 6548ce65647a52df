"""The main job on the built-in data (`edtalk quickstart`, README's first command): the demo plan.

`experiments/demo/plan.yaml` declares the job: build the built-in dataset (shards), train every stage
briefly at a small size in dependency order (reconstruct -> mouth_pose -> expression -> syncnet ->
audio2mouth, audio2pose, audio2exp, emotion_classifier), evaluate the expression generator on the built-in
test split, measure the learning table, render every generation mode and write `report.md` with the
numbers, plots and videos. `edtalk.apps.runner.PlanRun` executes it (a second process where there is a
second core, reuse of finished stages); the tasks are `edtalk.apps.tasks`, `.renders` and `.report`.

With `--weights DIR` holding official checkpoints (`EDTalk.pt`, `Audio2Lip.pt`), training is skipped
and the demo renders with them. Profiles: `demo` layers `experiments/demo/<stage>.yaml` (the CPU learning
configuration, experiments/demo/README.md) over `--debug` and scales the steps as the plan says; `debug`
keeps the smoke-test networks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edtalk import io
from edtalk.apps.plan import load_plan, main_plan
from edtalk.apps.runner import PlanRun
from edtalk.apps.runner import profile_overrides as _layer_overrides


def main_job(
    out: Path,
    steps: int = 200,
    audio_steps: int = 120,
    weights: Path | None = None,
    eval_clips: int = 4,
    profile: str = "demo",
    seed: int = 0,
    log: Callable[[str], None] = print,
    settings: Sequence[str] = (),
    threads: int = 1,
) -> PlanRun:
    """The main job's run of the demo plan (`edtalk quickstart --help` names the options; `settings`:
    `--set STAGE.KEY=VALUE`; `threads`: torch CPU threads of each process); `.run()` runs it."""
    official = official_checkpoints(weights) if weights is not None else None
    plan = load_plan(main_plan()).with_overrides(settings)
    budgets = {"visual": steps, "audio": audio_steps}
    return PlanRun(plan, out, profile, seed, budgets, eval_clips, log=log, official=official, threads=threads)


def official_checkpoints(folder: Path) -> dict[str, Path | None]:
    """The official generator and Audio2Lip in `folder` (the release's file names), checked to exist."""
    gen = folder / "EDTalk.pt"
    a2l = folder / "Audio2Lip.pt"
    for path in (gen, a2l):
        if not path.is_file():
            raise FileNotFoundError(
                f"--weights {folder}: {path.name} not found; put the official EDTalk.pt and Audio2Lip.pt "
                "there (EDTalk release, Hugging Face tanshuai0219/EDTalk)"
            )
    return {"generator": gen, "audio2mouth": a2l, "audio2pose": None, "audio2exp": None}


def profile_overrides(stage: str, profile: str) -> list[str]:
    """Dotlist of the main plan's config layer for `profile` (`experiments/demo/<stage>.yaml` for `demo`;
    [] for `debug` or no file)."""
    return _layer_overrides(stage, load_plan(main_plan()).layer(profile))


# -- the random-weights clip (kept for a fast smoke test) --------------------------------------------
def builtin_source(size: int) -> torch.Tensor:
    """The face of `skimage.data.astronaut()`, cropped square and resized: 1 x 3 x size x size in [-1, 1]."""
    from skimage import data

    face = data.astronaut()[20:220, 140:340]  # 200 x 200 around the face
    img = io.from_uint8(torch.from_numpy(np.ascontiguousarray(face)))[None]
    return F.interpolate(img, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


@torch.no_grad()
def render_random_clip(out_dir: Path, seconds: float = 2.0, size: int = 64, seed: int = 0) -> Path:
    """Render a clip whose mouth and pose weights follow smooth curves, with a random-init tiny generator."""
    from edtalk.config import GeneratorConfig
    from edtalk.nn.generator import Generator
    from edtalk.pipeline.render import Renderer

    torch.manual_seed(seed)
    gen = Generator(GeneratorConfig.tiny("full", size=size)).eval()
    frames = max(1, round(seconds * io.FPS))
    t = torch.arange(frames, dtype=torch.float32)[:, None] / io.FPS
    alpha = {
        "mouth": torch.sin(2 * math.pi * 3 * t + torch.arange(20)) * 0.5,
        "pose": torch.sin(2 * math.pi * 0.5 * t + torch.arange(6)) * 0.3,
        "exp": torch.zeros(frames, 10),
    }
    renderer = Renderer(gen, chunk_size=16, channels_last=False)
    source = renderer.still(builtin_source(size))
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "random_tiny_generator.mp4"
    sr = io.SAMPLE_RATE
    tone = 0.2 * np.sin(2 * np.pi * 220 * np.arange(int(seconds * sr)) / sr).astype(np.float32)
    with io.VideoWriter(path, audio=tone) as writer:
        for chunk, _ in renderer.stream(source, alpha, frames):
            writer.write(io.to_uint8(chunk))
    return path
