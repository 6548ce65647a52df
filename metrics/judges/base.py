"""What every judge shares: the missing-file error, the frozen base class, state-dict reading."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from metrics.judges.files import JudgeWeightsMissing, require_file

# re-exported: the missing-file error and its check live beside the table of files (metrics.judges.files)
__all__ = ["FrozenJudge", "JudgeWeightsMissing", "load_state", "plain_config", "require_file"]


class FrozenJudge(nn.Module):
    """Base of the judge networks: eval mode forever, no gradients.

    A Lightning loop or a careless `.train()` never updates their batch-norm statistics.
    """

    def freeze(self) -> FrozenJudge:
        self.requires_grad_(False)
        return super().train(False)

    def train(self, mode: bool = True) -> FrozenJudge:
        return super().train(False)


def load_state(path: Path) -> dict[str, torch.Tensor]:
    """A plain state dict from `path` (a `state_dict` entry unwrapped, `module.` prefixes stripped)."""
    from edtalk.weights import load_file

    state = load_file(path)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict (got {type(state).__name__})")
    return {k.removeprefix("module."): v for k, v in state.items()}


def plain_config(**default: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A weight kind's config reader for a judge whose config is a dict of constructor arguments."""
    return lambda stored: {**default, **stored}
