"""Marks shared by the GPU tests."""

from __future__ import annotations

import pytest
import torch

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA device (run benchmarks/gpu/run.sh on a GPU)")
on_gpu = [pytest.mark.gpu, needs_cuda]
# a `device` parameter: the CPU variant runs everywhere (it checks the comparison), CUDA on a GPU only
DEVICES = ["cpu", pytest.param("cuda", marks=on_gpu)]
