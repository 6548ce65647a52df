"""Parameter selection for stages: `trainable:` globs, freezing, and bit-exact frozen fingerprints."""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn


def select(names: Iterable[str], globs: Sequence[str]) -> list[str]:
    """Names matching any fnmatch glob; every glob must match something (typos fail loudly)."""
    names = list(names)
    chosen: set[str] = set()
    for glob in globs:
        hits = [n for n in names if fnmatch.fnmatchcase(n, glob)]
        if not hits:
            prefixes = sorted({".".join(n.split(".")[:2]) for n in names})
            raise ValueError(
                f"trainable glob {glob!r} matches no parameter; parameter groups are {prefixes} "
                "(use e.g. 'synthesis.*' or 'navigator.exp_fc.*')"
            )
        chosen.update(hits)
    return [n for n in names if n in chosen]


def apply_trainable(module: nn.Module, globs: Sequence[str]) -> tuple[list[str], list[str]]:
    """Set requires_grad from the globs. Returns (trainable names, frozen names)."""
    params = dict(module.named_parameters())
    trainable = set(select(params, globs))
    for name, p in params.items():
        p.requires_grad_(name in trainable)
    frozen = [n for n in params if n not in trainable]
    return [n for n in params if n in trainable], frozen


def fingerprint(module: nn.Module, names: Iterable[str]) -> dict[str, str]:
    """SHA-1 of the exact bytes of each named parameter (detects any change, however small)."""
    params = dict(module.named_parameters())
    out = {}
    for name in names:
        raw = params[name].detach().cpu().contiguous().flatten().view(torch.uint8)  # any dtype -> bytes
        out[name] = hashlib.sha1(raw.numpy().tobytes()).hexdigest()
    return out


def world_lr_scale(module: Any, enabled: bool) -> float:
    """Learning-rate factor of the DDP policy `optim.scale_lr_with_world_size` (docs/recipes.md).

    The original trainers run one process per GPU whose gradients are never all-reduced (each rank trains
    its own copy at the per-GPU batch), so their learning rates belong to the per-GPU batch. Our DDP
    averages gradients over `world_size` x batch samples: with the flag off (default) the learning rate
    stays the original's (a larger, less noisy batch at the same step size); on, it is multiplied by the
    world size (linear scaling for the effective batch).
    """
    if not enabled:
        return 1.0
    trainer = getattr(module, "_trainer", None)
    return float(trainer.world_size) if trainer is not None else 1.0
