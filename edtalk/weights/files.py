"""File I/O for weight files: the one `torch.load`, atomic saves, prefix stripping, sub-state-dicts.

Nothing else in `edtalk/`, `datamodules/` or `metrics/` calls `torch.load` (a test checks it): every
reader goes through `load_file`, which turns missing / truncated / foreign files into a
`CheckpointError` naming the file and the fix.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

FORMAT = "edtalk"
VERSION = 1
StateDict = dict[str, torch.Tensor]


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, truncated, or of the wrong kind."""


def load_file(path: str | Path) -> Any:
    """torch.load with a clear error for missing/truncated files; pickled argparse args allowed."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(
            f"cannot read checkpoint {path} ({type(err).__name__}: {(str(err).splitlines() or ['empty file'])[0][:200]}); "
            "the file is truncated or not a PyTorch checkpoint - download it again"
        ) from err


def atomic_save(obj: Any, path: str | Path) -> Path:
    """torch.save to a temporary file in the same folder, then rename: no half-written files."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    tmp.replace(path)
    return path


def strip_prefixes(
    sd: Mapping[str, torch.Tensor], prefixes: tuple[str, ...] = ("module.", "_orig_mod.")
) -> StateDict:
    """Remove DDP / torch.compile wrappers' prefixes (the one place that does this)."""
    out: StateDict = {}
    for k, v in sd.items():
        for p in prefixes:
            k = k.removeprefix(p)
        out[k] = v
    return out


def sub_state_dict(sd: Mapping[str, torch.Tensor], prefix: str) -> StateDict:
    """The entries under `prefix` (e.g. "generator." of a Lightning module), prefix and wrappers removed."""
    return strip_prefixes({k.removeprefix(prefix): v for k, v in sd.items() if k.startswith(prefix)})
