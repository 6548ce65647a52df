"""The registry of network kinds: one place that decides what a weight file is and loads it.

A weight file the project reads is one of three things (its *source*):

* **ours** - `{"format": "edtalk", "version", "kind", "config", "state_dict", "meta"}` written by
  `save_checkpoint` (`edtalk fit` exports, `edtalk train` generators);
* **lightning** - a Lightning stage checkpoint (`last.ckpt`): `checkpoint["edtalk"]` holds the stage
  name and the network config, `checkpoint["state_dict"]` the module's tensors under a prefix
  (`generator.`, `discriminator.`, `net.`);
* **official** - a release file of another project (EDTalk.pt, Wav2Lip's expert, GFPGANv1.4.pth, ...),
  read through the kind's `KeyMap` (container key, renames, dead entries).

API (all re-exported by `edtalk.weights`):

* `read(path, kind=None) -> (config, state_dict)` - the config object and our-key state dict;
* `load(path, kind=None) -> nn.Module` - built from the config, loaded with `load_strict`, eval mode;
* `resolve(path, kind=None) -> Found` - what `read` returns plus the source, stage and kind found;
* `inspect(path, kind=None) -> dict` - what `edtalk weights inspect` prints (never raises on a bad file).

`kind=None` guesses the kind from the file. Errors are `CheckpointError`s naming the file, what it
looks like, and where to get the right one.

Registering a kind
------------------
Add one `Kind(...)` to `BUILTIN` in `edtalk/weights/kinds.py` (or call `register(Kind(...))` from a
module that `kinds.py` imports). The fields, only `name`, `network`, `build` and `config` required::

    Kind(
        name="emotion_fan",                     # the --kind name, also `kind` in our own files
        network="emotion_fan",                  # kinds holding the same network share this
        build=lambda cfg: EmotionFAN(cfg),      # config object -> module (random init)
        config=EmotionFANConfig.from_dict,      # stored dict -> config object ({} -> default)
        official=KeyMap("state_dict", (("module.", ""),), dead=()),  # release-file layout, or None
        infer_config=None,                      # config from an official state dict's shapes
        looks_like=lambda obj: "fan" in obj,    # recognises its official file (for kind=None)
        lightning=None,                         # LightningRule(prefix, config) if a stage trains it
        where="enet_b0_8_best_afew.pt from github.com/... (nothing is downloaded at run time)",
    )

Builders import their network lazily (inside the function) so `import edtalk.weights` stays light.
Then add a writer for the kind to `WRITERS` in `tests/test_weights_inspect.py` (a random-init file in
the real layout): a test fails while a registered kind has none, and `edtalk weights inspect FILE
--kind NAME` is proven on it. A kind whose network a stage trains gets `lightning=supervised(Config.from_dict)`
(network under `net.`, its config under `checkpoint["edtalk"]["network"]`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from torch import nn

from edtalk.weights.files import (
    FORMAT,
    VERSION,
    CheckpointError,
    StateDict,
    load_file,
    strip_prefixes,
    sub_state_dict,
)
from edtalk.weights.keymaps import KeyMap, guess_kind, map_to_ours
from edtalk.weights.strict import load_strict

Source = str  # "ours" | "lightning" | "official"


@dataclasses.dataclass(frozen=True)
class LightningRule:
    """Where a Lightning stage checkpoint keeps a network.

    Attributes:
        prefix: state-dict prefix of the network in the LightningModule ("generator.", "net.").
        config: (checkpoint["edtalk"], the network's state dict) -> config object.
        ema_prefix: prefix of an EMA copy, read instead when asked (`ema=True`) and present.
    """

    prefix: str
    config: Callable[[Mapping[str, Any], StateDict], Any]
    ema_prefix: str | None = None


@dataclasses.dataclass(frozen=True)
class Kind:
    """One kind of weight file the project reads: how to build its network and every layout holding it.

    Attributes:
        name: registry key, the `--kind` name and the `kind` stored in our own files.
        network: the network family; kinds sharing it hold the same module (`generator` for
            edtalk_full / edtalk_lip_pose / lia_stage1 / generator), so their files are interchangeable.
        build: config object -> freshly initialised module.
        config: dict stored in a file -> config object (`config({})` is the default architecture).
        official: layout of the official release file (None: the kind has none).
        infer_config: official state dict (upstream keys, wrappers stripped) -> config; None: default.
        looks_like: recognises this kind's official file from its top-level object (kind guessing).
        lightning: how our Lightning stage checkpoints hold this network (None: no stage trains it).
        where: where to get the file (said by every error about it).
    """

    name: str
    network: str
    build: Callable[[Any], nn.Module]
    config: Callable[[dict[str, Any]], Any]
    official: KeyMap | None = None
    infer_config: Callable[[StateDict], Any] | None = None
    looks_like: Callable[[Mapping[str, Any]], bool] | None = None
    lightning: LightningRule | None = None
    where: str = ""


class WrongKind(CheckpointError):
    """The file holds another kind than the one asked for (`found`: what it looks like, or None)."""

    def __init__(self, message: str, found: str | None) -> None:
        super().__init__(message)
        self.found = found


KINDS: dict[str, Kind] = {}


def register(kind: Kind) -> Kind:
    """Add `kind` to the registry (a second kind with the same name is an error)."""
    if kind.name in KINDS and KINDS[kind.name] != kind:
        raise ValueError(f"weight kind {kind.name!r} is registered twice")
    KINDS[kind.name] = kind
    return kind


def get_kind(name: str) -> Kind:
    """The registered kind `name`, or a `CheckpointError` listing the known ones."""
    if name not in KINDS:
        raise CheckpointError(
            f"unknown weight kind {name!r}; known: {', '.join(sorted(KINDS))} "
            "(the evaluation judges' kinds are registered by `import metrics.judges`)"
        )
    return KINDS[name]


def same_network(a: str | None, b: str) -> bool:
    """Whether kind names `a` and `b` hold the same network (unregistered names: only equal names)."""
    if a is None:
        return False
    return a == b or (a in KINDS and b in KINDS and KINDS[a].network == KINDS[b].network)


@dataclasses.dataclass
class Found:
    """What a weight file holds, as `resolve` found it.

    Attributes:
        kind: the kind read (the file's own kind when it names a registered one).
        source: "ours", "lightning" or "official".
        config: the network's config object.
        state_dict: tensors in our module's key names.
        allow_missing: regexes of our keys the file need not provide (official files that leave a part
            at its initialisation, e.g. LIA's navigation heads).
        stage: the stage that wrote a Lightning checkpoint (None otherwise).
        meta: our files' `meta` (None otherwise).
    """

    kind: str
    source: Source
    config: Any
    state_dict: StateDict
    allow_missing: tuple[str, ...] = ()
    stage: str | None = None
    meta: dict[str, Any] | None = None


# -- deciding what a file is ---------------------------------------------------------------------
def source_of(obj: Any) -> Source:
    """ "ours", "lightning" or "official" from a loaded file's top-level layout."""
    if isinstance(obj, Mapping) and obj.get("format") == FORMAT:
        return "ours"
    if isinstance(obj, Mapping) and "edtalk" in obj and "state_dict" in obj:
        return "lightning"
    return "official"


def guess(obj: Any) -> str | None:
    """The registered kind a loaded file most likely holds (None when its layout is unknown)."""
    if not isinstance(obj, Mapping):
        return None
    source = source_of(obj)
    if source == "ours":
        return str(obj.get("kind"))
    if source == "lightning":
        return _lightning_kind(obj["edtalk"])
    found = guess_kind(obj)
    if found is not None:
        return found
    return next((k.name for k in KINDS.values() if k.looks_like is not None and k.looks_like(obj)), None)


def _lightning_kind(meta: Mapping[str, Any]) -> str:
    """Supervised stages store their network kind; GAN stages train the generator."""
    return str(meta.get("kind") or "generator")


def resolve(path: str | Path, kind: str | None = None, *, ema: bool = False, config: Any = None) -> Found:
    """Decide what `path` holds and return its config and our-key state dict.

    Args:
        path: the weight file.
        kind: the kind expected (None: guessed from the file).
        ema: read a Lightning checkpoint's EMA generator when it has one.
        config: architecture of an official file (default: inferred from its shapes / the kind default).

    Raises:
        CheckpointError: missing / unreadable file, unknown layout, or a file of another kind.
    """
    entry = get_kind(kind) if kind is not None else None
    if entry is not None and not Path(path).is_file():
        raise CheckpointError(
            f"checkpoint not found: {path}. Get {entry.where or 'it'} (nothing is downloaded at run time)"
        )
    return resolve_loaded(load_file(path), path, kind, ema=ema, config=config)


def resolve_loaded(
    obj: Any, path: str | Path, kind: str | None = None, *, ema: bool = False, config: Any = None
) -> Found:
    """`resolve` for a file already read with `load_file` (callers that also need the raw object)."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a checkpoint dict")
    entry = get_kind(kind) if kind is not None else _guessed_kind(obj, path)
    source = source_of(obj)
    if source == "ours":
        return _read_ours(obj, entry, path)
    if source == "lightning":
        return _read_lightning(obj, entry, path, ema)
    return _read_official(obj, entry, path, config)


def _guessed_kind(obj: Mapping[str, Any], path: str | Path) -> Kind:
    found = guess(obj)
    if found is None or found not in KINDS:
        what = f"kind {found!r}" if found else f"layout (top-level keys {sorted(map(str, obj))[:6]})"
        raise CheckpointError(
            f"{path}: unknown weight file {what}; pass the kind (--kind), one of {', '.join(sorted(KINDS))}"
        )
    return KINDS[found]


def _wrong_kind(path: str | Path, found: str | None, entry: Kind, detail: str = "") -> WrongKind:
    fix = f"Get the right file: {entry.where}" if entry.where else f"Pass a {entry.name} file."
    what = f"a {found!r}" if found else "not a"
    return WrongKind(f"{path} is {what} checkpoint, expected {entry.name}{detail}. {fix}", found)


def _read_ours(obj: Mapping[str, Any], entry: Kind, path: str | Path) -> Found:
    if int(obj.get("version", 0)) > VERSION:
        raise CheckpointError(
            f"{path} has format version {obj['version']}, newer than this edtalk ({VERSION})"
        )
    stored = str(obj.get("kind"))
    if not same_network(stored, entry.name):
        raise _wrong_kind(path, stored, entry)
    kind = stored if stored in KINDS else entry.name
    config = KINDS[kind].config(dict(obj.get("config") or {}))
    sd = dict(obj["state_dict"])
    return Found(kind, "ours", config, sd, meta=dict(obj.get("meta") or {}))


def _read_lightning(obj: Mapping[str, Any], entry: Kind, path: str | Path, ema: bool) -> Found:
    meta = obj["edtalk"]
    stage, held = meta.get("stage"), meta.get("kind")  # supervised stages name their one network
    rule = entry.lightning
    if rule is None or (held is not None and not same_network(str(held), entry.name)):
        raise WrongKind(
            f"{path} is a checkpoint of stage {stage!r} (network {held or 'generator'!r}), expected one "
            f"holding a {entry.name} network (edtalk fit {entry.name})",
            str(held or "generator"),
        )
    states = obj["state_dict"]
    prefix = rule.prefix
    if ema and rule.ema_prefix and any(k.startswith(rule.ema_prefix) for k in states):
        prefix = rule.ema_prefix
    sd = sub_state_dict(states, prefix)
    if not sd:
        raise WrongKind(
            f"{path} is a checkpoint of stage {stage!r} with no {prefix!r} weights: it holds no "
            f"{entry.name} network",
            str(held or "generator"),
        )
    kind = str(held) if held in KINDS else entry.name
    return Found(kind, "lightning", rule.config(meta, sd), sd, stage=str(stage))


def _official_entry(obj: Mapping[str, Any], entry: Kind, path: str | Path) -> Kind:
    """The kind whose official layout to read: `entry`'s own, or a same-network kind the file is."""
    found = guess(obj)
    if entry.official is None:
        if found in KINDS and same_network(found, entry.name) and KINDS[found].official is not None:
            return KINDS[found]
        raise _wrong_kind(path, found, entry)
    container = entry.official.container
    other = found is not None and found != entry.name
    # another kind's file may still hold this one under its own key (EDTalk.pt holds `dis`)
    if other and (container is None or same_network(found, entry.name)):
        raise _wrong_kind(path, found, entry)
    if container is not None and not isinstance(obj.get(container), Mapping):
        keys = sorted(map(str, obj))[:8]
        detail = (
            f": no {entry.name} checkpoint with top-level key {container!r} in {path} (found keys {keys})"
        )
        raise _wrong_kind(path, found, entry, detail)
    return entry


def _read_official(obj: Mapping[str, Any], entry: Kind, path: str | Path, config: Any) -> Found:
    entry = _official_entry(obj, entry, path)
    assert entry.official is not None
    container = entry.official.container
    raw = strip_prefixes(obj[container] if container is not None else obj)
    try:
        if config is None:
            config = entry.infer_config(raw) if entry.infer_config else entry.config({})
        sd = map_to_ours(raw, entry.official)
    except KeyError as err:
        raise CheckpointError(
            f"{path} lacks entry {err} expected in a {entry.name} checkpoint: get {entry.where}"
        ) from err
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from err
    return Found(entry.name, "official", config, sd, allow_missing=entry.official.unmapped)


# -- the public doors ----------------------------------------------------------------------------
def read(path: str | Path, kind: str | None = None, *, ema: bool = False) -> tuple[Any, StateDict]:
    """(config, our-key state dict) of the network in `path` (ours, Lightning or official)."""
    found = resolve(path, kind, ema=ema)
    return found.config, found.state_dict


def build_loaded(found: Found, path: str | Path) -> nn.Module:
    """The network `found` describes, built from its config and loaded strictly (eval mode)."""
    entry = KINDS[found.kind]
    module = entry.build(found.config)
    fix = f"Is it the right file? Expected {entry.where}" if entry.where else ""
    load_strict(
        module, found.state_dict, what=found.kind, source=path, allow_missing=found.allow_missing, fix=fix
    )
    return module.eval()


def load(path: str | Path, kind: str | None = None, *, ema: bool = False, config: Any = None) -> nn.Module:
    """The network in `path`, built from its config and loaded with `load_strict` (CPU, eval mode).

    Args:
        path: ours, a Lightning stage checkpoint, or an official release file.
        kind: the kind expected (None: guessed from the file).
        ema: read a Lightning checkpoint's EMA generator when it has one.
        config: architecture of an official file (default: inferred / the kind's default).
    """
    found = resolve(path, kind, ema=ema, config=config)
    try:
        return build_loaded(found, path)
    except CheckpointError as err:
        if str(path) in str(err):
            raise
        raise CheckpointError(f"{path}: {err}") from err


def config_dict(config: Any) -> Any:
    """A JSON-friendly view of a config object (dataclass -> dict; dicts and None pass through)."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return dataclasses.asdict(config)
    return config


def inspect(path: str | Path, kind: str | None = None) -> dict[str, Any]:
    """What `path` is and whether it loads strictly; never raises for a bad file (`reason` says why).

    Returns:
        {path, kind, source, stage, loads, config, n_tensors, reason} (kind / source / config None when
        the file could not be read that far).
    """
    report: dict[str, Any] = {"path": str(path), "kind": kind, "source": None, "stage": None}
    report.update(loads=False, config=None, n_tensors=0, reason=None)
    try:
        found = resolve(path, kind)
        report.update(kind=found.kind, source=found.source, stage=found.stage)
        report.update(config=config_dict(found.config), n_tensors=len(found.state_dict))
        build_loaded(found, path)
        report["loads"] = True
    except (CheckpointError, ValueError, TypeError, KeyError) as err:
        report["reason"] = " ".join(str(err).split())
    return report
