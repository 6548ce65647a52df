"""Our own checkpoint format: `{"format": "edtalk", "version", "kind", "config", "state_dict", "meta"}`.

The config travels with the weights, so `registry.load` rebuilds any network with no flags.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from edtalk.weights.files import FORMAT, VERSION, CheckpointError, atomic_save, load_file
from edtalk.weights.keymaps import WHERE_TO_GET, guess_kind
from edtalk.weights.registry import WrongKind, load


def save_checkpoint(
    module: nn.Module, kind: str, path: str | Path, config: Mapping[str, Any] | None = None, **meta: Any
) -> Path:
    """Save state dict + resolved config + kind + version (bit-exact round trip with `load`)."""
    cfg = config if config is not None else getattr(getattr(module, "cfg", None), "to_dict", dict)()
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "kind": kind,
        "config": dict(cfg),
        "state_dict": {k: v.detach().cpu().clone() for k, v in module.state_dict().items()},
        "meta": meta,
    }
    return atomic_save(payload, path)


def read_checkpoint(path: str | Path, kind: str | None = None) -> dict[str, Any]:
    """Read one of our checkpoints as a dict (optionally asserting its kind)."""
    obj = load_file(path)
    if not isinstance(obj, Mapping) or obj.get("format") != FORMAT:
        found = guess_kind(obj) if isinstance(obj, Mapping) else None
        hint = (
            f"; it looks like an official {found} file: use load_official(path, {found!r})" if found else ""
        )
        raise CheckpointError(f"{path} is not an edtalk checkpoint{hint}")
    if int(obj.get("version", 0)) > VERSION:
        raise CheckpointError(
            f"{path} has format version {obj['version']}, newer than this edtalk ({VERSION})"
        )
    if kind is not None and obj.get("kind") != kind:
        raise CheckpointError(f"{path} holds a {obj.get('kind')!r} checkpoint, expected {kind!r}")
    return dict(obj)


def load_generator(path: str | Path) -> Any:
    """A `Generator` from any generator file: ours, a Lightning stage checkpoint, or an official one."""
    try:
        return load(path, "generator")
    except WrongKind as err:
        raise CheckpointError(
            f"{path} holds no generator (found {err.found or 'an unknown layout'}); expected an edtalk "
            f"generator checkpoint or {WHERE_TO_GET['edtalk_full']}"
        ) from err
