"""Shared fixtures: tiny generators and the path of the shared upstream facts."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from edtalk.config import GeneratorConfig
from edtalk.nn.generator import Generator

MANIFESTS = Path(__file__).parent / "data" / "manifests"


def shared_dir() -> Path:
    """`../shared` beside the checkout (CI lays it there); EDTALK_SHARED overrides."""
    env = os.environ.get("EDTALK_SHARED")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared"


def manifest(kind: str) -> dict:
    return json.loads((MANIFESTS / f"{kind}.json").read_text())


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(params=["full", "lip_pose"])
def tiny_generator(request: pytest.FixtureRequest) -> Generator:
    return Generator(GeneratorConfig.tiny(request.param)).eval()
