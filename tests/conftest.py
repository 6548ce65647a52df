"""Shared fixtures: tiny generators and the path of the shared upstream facts."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from edtalk.config import GeneratorConfig
from edtalk.nn.generator import Generator
from tests.learn import seed_torch, thread_count

MANIFESTS = Path(__file__).parent / "data" / "manifests"


def shared_dir() -> Path:
    """`../shared` beside the checkout (CI lays it there); EDTALK_SHARED overrides."""
    env = os.environ.get("EDTALK_SHARED")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared"


def manifest(kind: str) -> dict:
    return json.loads((MANIFESTS / f"{kind}.json").read_text())


@pytest.fixture(autouse=True)
def _seed() -> Iterator[None]:
    """Every test starts from torch seed EDTALK_TEST_SEED (default 0), with EDTALK_TEST_THREADS threads if set."""
    seed_torch()
    before, threads = torch.get_num_threads(), thread_count(None)
    if threads:
        torch.set_num_threads(threads)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One intra-op thread (fastest for tiny models on shared cores); EDTALK_TEST_THREADS overrides it."""
    before = torch.get_num_threads()
    torch.set_num_threads(thread_count(1) or 1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(params=["full", "lip_pose"])
def tiny_generator(request: pytest.FixtureRequest) -> Generator:
    return Generator(GeneratorConfig.tiny(request.param)).eval()
