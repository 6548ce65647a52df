"""Initialising a stage's generator (and discriminator) from an earlier checkpoint: `init_from:`.

Accepted files: our Lightning stage checkpoints (`generator.` / `discriminator.` / `generator_ema.`
prefixes and `checkpoint["edtalk"]["generator"]` = the GeneratorConfig), our `edtalk` format files,
and the official EDTalk.pt / EDTalk_lip_pose.pt / LIA vox.pt (through `edtalk.weights` key maps; LIA
leaves the navigation heads and banks at their initialisation).

Hand-off is strict: every tensor in the file must land in the new generator with its shape, and every
generator tensor must come from the file — except the expression parts (ELN, expression bank, EEM)
when a lip-pose generator initialises a full one (stage mouth_pose -> expression). Because QR is
column-ordered, the mouth/pose directions of the full model then equal those of the lip-pose model.

Stage 1 -> stage 2 (`fresh`): the original stage 2 builds fresh mouth/pose heads and a fresh 512 x 26
bank on top of stage 1's encoder, motion MLP and decoder (spec 5.2, its intended init). A stage passes
`fresh` patterns (see `MOUTH_POSE_HEADS`) and the source stages they apply to; matching tensors keep the
values the new generator was constructed with (so they equal a fresh init under the same seed), all
others are copied bit-exactly.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edtalk import weights
from edtalk.config import GeneratorConfig
from edtalk.nn.generator import Generator

EXPRESSION_KEYS = (
    r"^navigator\.exp_fc\.",
    r"^exp_encoder\.",
    r"^banks\.expression$",
    r"^synthesis\.fineadainresblock\.",
)
MOUTH_POSE_HEADS = (r"^navigator\.lip_fc\.", r"^navigator\.pose_fc\.", r"^banks\.mouth_pose$")


def stage_of(obj: Any) -> str | None:
    """The stage that wrote a Lightning checkpoint of ours (None for other files)."""
    if isinstance(obj, Mapping) and isinstance(obj.get("edtalk"), Mapping):
        stage = obj["edtalk"].get("stage")
        return None if stage is None else str(stage)
    return None


def read_generator(
    path: str | Path, use_ema: bool = False
) -> tuple[GeneratorConfig, dict[str, torch.Tensor], Any]:
    """(config, our-key state dict, raw file object) of the generator stored in any supported file.

    The file is one of ours, a Lightning stage checkpoint or an official one: `edtalk.weights` decides.
    """
    obj = weights.load_file(path)
    found = weights.resolve_loaded(obj, path, "generator", ema=use_ema)
    if found.allow_missing:  # LIA's vox.pt: the parts it lacks come from a fresh initialisation
        return found.config, weights.build_loaded(found, path).state_dict(), obj
    return found.config, found.state_dict, obj


def check_compatible(src: GeneratorConfig, dst: GeneratorConfig, path: str | Path) -> None:
    """Configs must agree except for a lip_pose -> full upgrade (which may set the expression sizes)."""
    if src.variant == "full" and dst.variant == "lip_pose":
        raise ValueError(
            f"{path} holds a full (expression) generator but this stage builds a lip_pose one; "
            "set generator.variant=full or init from a lip_pose checkpoint"
        )
    upgrade = {"variant", "exp_dim", "eem_hidden", "eem", "exp_encoder", "exp_encoder_width"}
    ignore = upgrade if src.variant != dst.variant else set()
    a, b = dataclasses.asdict(src), dataclasses.asdict(dst)
    diff = {k: (a[k], b[k]) for k in a if k not in ignore and a[k] != b[k]}
    if diff:
        fix = " ".join(f"generator.{k}={v[0]}" for k, v in diff.items())
        raise ValueError(
            f"generator config of {path} differs from this stage's: {diff} (file, stage); set {fix}"
        )


def load_strict(
    module: nn.Module, sd: Mapping[str, torch.Tensor], path: str | Path, allow_missing: tuple[str, ...] = ()
) -> None:
    """Load `sd` into `module`: no unexpected keys, no shape mismatch, missing only where allowed."""
    weights.load_strict(
        module, sd, what=f"the stage's {type(module).__name__}", source=path, allow_missing=allow_missing
    )


def init_generator(
    gen: Generator,
    path: str | Path,
    use_ema: bool = False,
    fresh: tuple[str, ...] = (),
    fresh_from: tuple[str, ...] = ("reconstruct",),
) -> Any:
    """Initialise `gen` in place from `path`. Returns the raw loaded file (for the discriminator).

    Args:
        fresh: regex patterns of tensors that keep `gen`'s own (fresh) values when the file was written
            by one of the stages `fresh_from` (e.g. `MOUTH_POSE_HEADS` from a `reconstruct` checkpoint).
    """
    cfg, sd, obj = read_generator(path, use_ema)
    check_compatible(cfg, gen.cfg, path)
    allow = EXPRESSION_KEYS if (cfg.variant, gen.cfg.variant) == ("lip_pose", "full") else ()
    keep = {}
    if fresh and stage_of(obj) in fresh_from:
        keep = {k: v.clone() for k, v in gen.state_dict().items() if any(re.search(p, k) for p in fresh)}
    load_strict(gen, sd, path, allow)
    if keep:
        gen.load_state_dict(keep, strict=False)
    return obj


def init_discriminator(disc: nn.Module, obj: Any, path: str | Path) -> bool:
    """Load D from a Lightning stage checkpoint (`discriminator.`) or an official trainer file (`dis`).

    Returns False when the file holds no discriminator (D keeps its initialisation).
    """
    if not isinstance(obj, Mapping):
        return False
    try:
        found = weights.resolve_loaded(obj, path, "discriminator")
    except weights.WrongKind:
        return False
    load_strict(disc, found.state_dict, path)
    return True


def generator_config_of(path: str | Path) -> GeneratorConfig:
    """The GeneratorConfig stored in (or inferred from) a generator file."""
    return read_generator(path)[0]
