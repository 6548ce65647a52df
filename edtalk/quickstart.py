"""The main job on the built-in data (`edtalk quickstart`)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edtalk import io
from edtalk.config import GeneratorConfig
from edtalk.nn.generator import Generator


def builtin_source(size: int) -> torch.Tensor:
    """The face of `skimage.data.astronaut()`, cropped square and resized: 1 x 3 x size x size in [-1, 1]."""
    from skimage import data

    face = data.astronaut()[20:220, 140:340]  # 200 x 200 around the face
    img = io.from_uint8(torch.from_numpy(np.ascontiguousarray(face)))[None]
    return F.interpolate(img, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


@torch.no_grad()
def render_random_clip(out_dir: Path, seconds: float = 2.0, size: int = 64, seed: int = 0) -> Path:
    """Render a clip whose mouth and pose weights follow smooth curves, with a random-init tiny generator."""
    torch.manual_seed(seed)
    gen = Generator(GeneratorConfig.tiny("full", size=size)).eval()
    frames = max(1, round(seconds * io.FPS))
    t = torch.arange(frames, dtype=torch.float32)[:, None] / io.FPS
    alpha = {
        "mouth": torch.sin(2 * math.pi * 3 * t + torch.arange(20)) * 0.5,
        "pose": torch.sin(2 * math.pi * 0.5 * t + torch.arange(6)) * 0.3,
        "exp": torch.zeros(frames, 10),
    }
    src = gen.encode(builtin_source(size))
    q = gen.basis()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "random_tiny_generator.mp4"
    sr = io.SAMPLE_RATE
    tone = 0.2 * np.sin(2 * np.pi * 220 * np.arange(int(seconds * sr)) / sr).astype(np.float32)
    with io.VideoWriter(path, audio=tone) as writer:
        for i in range(0, frames, 16):
            chunk = {k: v[i : i + 16] for k, v in alpha.items()}
            w, e = gen.latent(src.w_a, chunk, q)
            writer.write(io.to_uint8(gen.render(src, w, e)))
    return path
