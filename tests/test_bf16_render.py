"""`--bf16` reaches the CPU render path: encoder and synthesis compute in bfloat16, while the bases,
latents and flow sampling grids stay float32; the CLI names the path it took."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from edtalk.config import GeneratorConfig
from edtalk.nn import synthesis
from edtalk.nn.generator import Generator
from edtalk.pipeline.render import Renderer, autocast, precision_note

CPU = torch.device("cpu")


def test_bf16_changes_the_frames_within_bounds_and_keeps_grids_float32(monkeypatch) -> None:
    torch.manual_seed(0)
    gen = Generator(GeneratorConfig.tiny("full", size=64)).eval()
    gen.synthesis.scale_flow_init(0.1)  # a well-conditioned random decoder (see tests/test_stream.py)
    renderer = Renderer(gen, chunk_size=2)
    source = torch.rand(1, 3, 64, 64) * 2 - 1
    motion = {"mouth": torch.randn(4, 20), "pose": None, "exp": torch.randn(4, 10)}
    seen: list[tuple[torch.dtype, torch.dtype]] = []
    real = F.grid_sample

    def spy(feat: torch.Tensor, grid: torch.Tensor, **kw: object) -> torch.Tensor:
        seen.append((feat.dtype, grid.dtype))
        return real(feat, grid, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(synthesis.F, "grid_sample", spy, raising=True)
    with torch.inference_mode():
        ref, _ = renderer(source, motion)
        seen.clear()
        with autocast(CPU, True):
            out, alpha = renderer(source, motion)
    assert seen and all(grid == torch.float32 for _, grid in seen)  # sampling coordinates in float32
    assert all(a.dtype == torch.float32 for a in alpha.values())
    diff = (out.float() - ref).abs().mean(dim=(1, 2, 3))
    assert (diff > 0).all() and (diff < 5e-2).all()  # bf16 changed every frame (the issue: byte-identical)


def test_precision_note_names_the_path() -> None:
    assert precision_note(CPU, False) == "float32"
    assert precision_note(CPU, True).startswith("bfloat16 autocast (cpu")
