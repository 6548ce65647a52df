"""`--bf16` reaches the CPU render path: the drivers' encoder and the fine decoder levels compute in
bfloat16, while the bases, latents, source encoding, flows, EEM and coarse decoder levels stay float32
(where bf16 error grows, benchmarks/render.py --layers); the CLI names the path it took."""

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
    assert all(feat == torch.float32 for feat, _ in seen)  # and the features they sample
    assert all(a.dtype == torch.float32 for a in alpha.values())
    diff = (out.float() - ref).abs().mean(dim=(1, 2, 3))
    assert (diff > 0).all() and (diff < 5e-2).all()  # bf16 changed every frame (the issue: byte-identical)


def test_precision_note_names_the_path() -> None:
    assert precision_note(CPU, False) == "float32"
    assert precision_note(CPU, True).startswith("bfloat16 autocast (cpu")


def test_bf16_islands_float32_where_error_grows_and_bf16_elsewhere() -> None:
    torch.manual_seed(0)
    gen = Generator(GeneratorConfig.tiny("full", size=64)).eval()
    renderer = Renderer(gen, chunk_size=2)
    syn = gen.synthesis
    dtypes: dict[str, torch.dtype] = {}
    named = {"conv1": syn.conv1, **{f"convs.{i}": c for i, c in enumerate(syn.convs)}}
    named |= {f"to_flows.{i}": f for i, f in enumerate(syn.to_flows)}

    def keep(name: str, out: torch.Tensor | tuple[torch.Tensor, ...]) -> None:
        dtypes.setdefault(name, (out[1] if isinstance(out, tuple) else out).dtype)

    for name, mod in named.items():
        mod.register_forward_hook(lambda _m, _i, out, n=name: keep(n, out))
    motion = {"mouth": torch.randn(2, 20), "pose": None, "exp": torch.randn(2, 10)}
    with torch.inference_mode(), autocast(CPU, True):
        src = renderer.still(torch.rand(1, 3, 64, 64) * 2 - 1)
        frames = torch.cat([f for f, _ in renderer.stream(src, motion, 2)])
        drivers = renderer.coefficients(torch.rand(2, 3, 64, 64) * 2 - 1)
    assert src.enc.w_a.dtype == torch.float32 and src.enc.eem is not None  # the photo: encoded in float32
    assert all(f.dtype == torch.float32 for f in [*src.enc.feats, *src.enc.eem])
    assert all(v.dtype == torch.float32 for v in drivers.values())  # heads in float32 (encoder in bf16)
    # 64^2: levels up to 64 / FLOAT32_COARSE = 8^2 (conv1, convs 0-1) in float32, finer levels in bf16
    assert [dtypes[f"convs.{i}"] for i in range(len(syn.convs))] == [torch.float32] * 2 + [torch.bfloat16] * 6
    assert dtypes["conv1"] == torch.float32
    assert all(dtypes[f"to_flows.{i}"] == torch.float32 for i in range(len(syn.to_flows)))
    assert frames.dtype == torch.float32 and torch.isfinite(frames).all()
