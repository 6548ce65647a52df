"""GPU tests: `needs_cuda` skips on machines without CUDA; float32 comparisons run without TF32.

The CUDA tests are marked `gpu` and run by `benchmarks/gpu/run.sh` on a GPU machine. Tests that take a
`device` parameter also run their CPU variant everywhere, so the comparison itself is checked in CI.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _exact_float32() -> Iterator[None]:
    """TF32 off (convolutions and matmuls in true float32), so CUDA matches the CPU to float32 rounding."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.fixture(autouse=True)
def _one_thread(one_thread: None) -> None:
    """Tiny models: one intra-op thread (`one_thread` in tests/conftest.py)."""
