"""Official release files: our modules from their state dicts, and files written in their layout.

`load_official(path, kind)` is `registry.load` for a kind that has a release file; the `*_from_official`
builders take an already-read upstream state dict (parity tests, conversions). `save_official` writes
`{container: state_dict}` in the upstream key names, so the original demos and trainers read it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edtalk.config import GeneratorConfig
from edtalk.weights.files import CheckpointError, atomic_save, strip_prefixes
from edtalk.weights.keymaps import GENERATOR_KINDS, KEY_MAPS, export_official, map_to_ours
from edtalk.weights.registry import get_kind, load
from edtalk.weights.strict import load_strict


def official_module(sd: Mapping[str, torch.Tensor], kind: str, cfg: Any = None) -> Any:
    """Our module of official `kind` from its upstream state dict (config: `cfg` or inferred), strict."""
    entry = get_kind(kind)
    if entry.official is None:
        raise CheckpointError(f"{kind} has no official release file; kinds that do: {sorted(KEY_MAPS)}")
    raw = strip_prefixes(sd)
    if cfg is None:
        cfg = entry.infer_config(raw) if entry.infer_config else entry.config({})
    module = entry.build(cfg)
    fix = f"Is it the right file? Expected {entry.where}"
    load_strict(
        module, map_to_ours(raw, entry.official), what=kind, allow_missing=entry.official.unmapped, fix=fix
    )
    return module


def generator_from_official(
    sd: Mapping[str, torch.Tensor], kind: str, cfg: GeneratorConfig | None = None
) -> Any:
    """Build our `Generator` from an official generator state dict (upstream key names)."""
    if kind not in GENERATOR_KINDS:
        raise CheckpointError(f"{kind} is not a generator checkpoint kind ({GENERATOR_KINDS})")
    return official_module(sd, kind, cfg)


def audio2lip_from_official(sd: Mapping[str, torch.Tensor]) -> Any:
    """`Audio2Lip` from the `audio2lip` entry of `Audio2Lip.pt`."""
    return official_module(sd, "audio2lip")


def syncnet_from_official(sd: Mapping[str, torch.Tensor]) -> Any:
    """`SyncNet` from the `state_dict` entry of Wav2Lip's expert (DDP prefixes stripped)."""
    return official_module(sd, "syncnet_expert")


def discriminator_from_official(sd: Mapping[str, torch.Tensor], size: int | None = None) -> Any:
    """`Discriminator` from a trainer file's `dis` entry (architecture from its shapes, or `size`)."""
    from edtalk.nn.discriminator import DiscriminatorConfig

    return official_module(sd, "discriminator", DiscriminatorConfig(size) if size else None)


def gfpgan_from_official(sd: Mapping[str, torch.Tensor], cfg: Any = None) -> Any:
    """`GFPGAN` from `params_ema`; architecture from `cfg` (a `GFPGANConfig`) or the file's shapes."""
    return official_module(sd, "gfpgan", cfg)


def load_official(path: str | Path, kind: str, **build: Any) -> Any:
    """Load an official checkpoint file of `kind` into our module (eval mode, CPU).

    `build` may hold `cfg=` (the architecture, e.g. a `GFPGANConfig`); by default it is inferred.
    """
    if get_kind(kind).official is None:
        raise CheckpointError(f"unknown checkpoint kind {kind!r}; known: {sorted(KEY_MAPS)}")
    return load(path, kind, config=build.get("cfg"))


def save_official(module: nn.Module, kind: str, path: str | Path) -> Path:
    """Write a file the original demos/trainers read (`{container: state_dict}`)."""
    container = KEY_MAPS[kind].container
    sd = export_official(module, kind)
    return atomic_save({container: sd} if container else sd, path)
