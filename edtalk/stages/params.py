"""Parameter selection for stages: `trainable:` globs, freezing, and bit-exact frozen fingerprints."""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Iterable, Sequence

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
