"""The one door for weight files: key maps, file I/O, a registry of network kinds, strict loading, export.

| module        | holds                                                                                  |
|---------------|----------------------------------------------------------------------------------------|
| `files`       | the only `torch.load` (`load_file`), `atomic_save`, `strip_prefixes`, `sub_state_dict`  |
| `keymaps`     | one `KeyMap` per official release file, kind guessing, `export_official`                |
| `strict`      | the only strict loader, `load_strict` (every key and shape checked)                     |
| `registry`    | `Kind`, `register`, `read` / `load` / `resolve` / `inspect`: ours, Lightning or official|
| `kinds`       | the table of every kind the project reads (`BUILTIN`)                                   |
| `official`    | `load_official`, `save_official`, `*_from_official` builders                            |
| `ours`        | our format: `save_checkpoint`, `read_checkpoint`, `load_generator`                      |

Our format: `{"format": "edtalk", "version": 1, "kind", "config", "state_dict", "meta"}`.
"""

from __future__ import annotations

from edtalk.nn.layers import make_kernel
from edtalk.weights import kinds as kinds
from edtalk.weights.files import (
    FORMAT,
    VERSION,
    CheckpointError,
    StateDict,
    atomic_save,
    load_file,
    strip_prefixes,
    sub_state_dict,
)
from edtalk.weights.keymaps import (
    GENERATOR_KINDS,
    KEY_MAPS,
    WHERE_TO_GET,
    KeyMap,
    export_official,
    guess_kind,
    infer_generator_config,
    map_to_ours,
)
from edtalk.weights.official import (
    audio2lip_from_official,
    discriminator_from_official,
    generator_from_official,
    gfpgan_from_official,
    load_official,
    official_module,
    save_official,
    syncnet_from_official,
)
from edtalk.weights.ours import load_generator, read_checkpoint, save_checkpoint
from edtalk.weights.registry import (
    KINDS,
    Found,
    Kind,
    LightningRule,
    WrongKind,
    build_loaded,
    get_kind,
    inspect,
    load,
    read,
    register,
    resolve,
    resolve_loaded,
    source_of,
)
from edtalk.weights.strict import load_into, load_strict

__all__ = [
    "FORMAT",
    "GENERATOR_KINDS",
    "KEY_MAPS",
    "KINDS",
    "VERSION",
    "WHERE_TO_GET",
    "CheckpointError",
    "Found",
    "KeyMap",
    "Kind",
    "LightningRule",
    "StateDict",
    "WrongKind",
    "atomic_save",
    "audio2lip_from_official",
    "build_loaded",
    "discriminator_from_official",
    "export_official",
    "generator_from_official",
    "get_kind",
    "gfpgan_from_official",
    "guess_kind",
    "infer_generator_config",
    "inspect",
    "kinds",
    "load",
    "load_file",
    "load_generator",
    "load_into",
    "load_official",
    "load_strict",
    "make_kernel",
    "map_to_ours",
    "official_module",
    "read",
    "read_checkpoint",
    "register",
    "resolve",
    "resolve_loaded",
    "save_checkpoint",
    "save_official",
    "source_of",
    "strip_prefixes",
    "sub_state_dict",
    "syncnet_from_official",
]
