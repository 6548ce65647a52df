"""The one strict loader: every key and every shape checked before `load_state_dict(strict=True)`.

Errors name the missing / unexpected / mismatched keys (first few, and how many), the file, and the fix.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import nn

from edtalk.weights.files import CheckpointError
from edtalk.weights.keymaps import KEY_MAPS, WHERE_TO_GET


def load_strict(
    module: nn.Module,
    sd: Mapping[str, torch.Tensor],
    *,
    what: str = "",
    source: str | object = "",
    allow_missing: tuple[str, ...] = (),
    fix: str = "",
) -> None:
    """Load `sd` into `module`: no unexpected key, no shape mismatch, no missing key but `allow_missing`.

    Args:
        module: the freshly built network.
        sd: state dict in our key names.
        what: what is being loaded (a kind name) for the message.
        source: the file (for the message).
        allow_missing: regexes of our keys the file need not provide (they keep their current values).
        fix: what the user should do, appended to the key-mismatch message.
    """
    own = module.state_dict()
    unexpected = sorted(set(sd) - set(own))
    missing = sorted(k for k in own if k not in sd and not any(re.search(p, k) for p in allow_missing))
    name = what or type(module).__name__
    where = f"{source}: " if str(source) else ""
    if missing or unexpected:
        raise CheckpointError(
            f"{where}{name} state dict does not match the model: {len(missing)} missing {missing[:3]}, "
            f"{len(unexpected)} unexpected {unexpected[:3]}. {fix or 'Is it the right file?'}"
        )
    bad = [(k, tuple(v.shape), tuple(own[k].shape)) for k, v in sd.items() if v.shape != own[k].shape]
    if bad:
        raise CheckpointError(
            f"{where}{name} shape mismatch: {bad[:3]} (file, model); wrong model size/config?"
        )
    module.load_state_dict({**own, **sd}, strict=True)


def load_into(module: nn.Module, sd: Mapping[str, torch.Tensor], kind: str, source: str = "") -> None:
    """`load_strict` for an official `kind`: its `KeyMap.unmapped` keys keep their initial values."""
    load_strict(
        module,
        sd,
        what=kind,
        source=source,
        allow_missing=KEY_MAPS[kind].unmapped,
        fix=f"Is it the right file? Expected {WHERE_TO_GET[kind]}",
    )
