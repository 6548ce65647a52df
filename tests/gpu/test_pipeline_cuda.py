"""The inference pipeline (audio + emotion mode) on CUDA against the CPU, and under bfloat16 autocast."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edtalk.config import GeneratorConfig
from edtalk.io import read_video, write_wav
from edtalk.nn.audio2lip import Audio2Lip
from edtalk.nn.generator import Generator
from edtalk.pipeline import Inputs, Pipeline
from tests.gpu.common import DEVICES, needs_cuda
from tests.test_pipeline import tame

SIZE = 64


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("media")
    g = torch.Generator().manual_seed(0)
    low = torch.rand(1, 3, 8, 8, generator=g)
    img = torch.nn.functional.interpolate(low, size=SIZE, mode="bicubic", align_corners=False).clamp(0, 1)
    Image.fromarray((img[0].permute(1, 2, 0) * 255).round().byte().numpy()).save(d / "source.png")
    t = np.arange(7000) / 16000  # 10 frames + a partial one
    write_wav(d / "speech.wav", 0.3 * np.sin(2 * np.pi * 200 * t) * np.sin(2 * np.pi * 3 * t))
    return {p.stem: p for p in d.iterdir()}


def _pipeline(device: str, bf16: bool = False, chunk: int = 3) -> Pipeline:
    """The same tamed tiny generator and Audio2Lip on every call; chunks 3+3+3+1 (batch 1 takes other kernels)."""
    torch.manual_seed(1)
    gen = tame(Generator(GeneratorConfig.tiny("full", size=SIZE)))
    a2l = Audio2Lip(channels=(4, 8, 8, 16, 16)).eval()
    return Pipeline(
        copy.deepcopy(gen), a2l, device=device, chunk_size=chunk, bf16=bf16, crop=False, progress=False
    )


def _frames(pipe: Pipeline, media: dict[str, Path]) -> torch.Tensor:
    inputs = Inputs(media["source"], audio=media["speech"], emotion="happy")
    return torch.cat(list(pipe.stream(inputs)))  # -> T x 3 x S x S float32 on the CPU


@pytest.mark.gpu
@needs_cuda
def test_cuda_frames_match_cpu(media: dict[str, Path]) -> None:
    cpu = _frames(_pipeline("cpu"), media)
    cuda = _frames(_pipeline("cuda", chunk=8), media)
    assert cuda.shape == cpu.shape == (10, 3, SIZE, SIZE)
    assert (cuda - cpu).abs().max() < 1e-4


@pytest.mark.parametrize("device", DEVICES)
def test_bf16_close_to_float32(media: dict[str, Path], device: str) -> None:
    """bfloat16 autocast renders (the mixed dtypes inside the warp included) within bf16 rounding of fp32."""
    ref = _frames(_pipeline(device), media)
    low = _frames(_pipeline(device, bf16=True), media)
    assert low.shape == ref.shape and low.dtype == torch.float32
    assert torch.isfinite(low).all()
    diff = (low - ref).abs()
    assert float(diff.mean()) < 0.02 and float(diff.max()) < 0.25, (float(diff.mean()), float(diff.max()))
    assert float(diff.mean()) < 0.1 * float(ref.std())  # far below the image's own variation


@pytest.mark.gpu
@needs_cuda
def test_generate_writes_video_on_cuda(media: dict[str, Path], tmp_path: Path) -> None:
    result = _pipeline("cuda", bf16=True)(
        media["source"], tmp_path / "out.mp4", audio=media["speech"], emotion="sad"
    )
    video = read_video(result.path)
    assert result.num_frames == len(video) == 10
    assert video.shape[1:] == (SIZE, SIZE, 3) and video.std() > 1
