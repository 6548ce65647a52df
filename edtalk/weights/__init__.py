"""Official-checkpoint key maps, strict loading, and our own checkpoint format.

Official files (the original EDTalk repository and the projects it builds on) load unchanged:

| kind              | file                         | state dict under | our module                          |
|-------------------|------------------------------|------------------|-------------------------------------|
| `edtalk_full`     | `EDTalk.pt`                  | `gen`            | `Generator(variant="full")`         |
| `edtalk_lip_pose` | `EDTalk_lip_pose.pt`         | `gen`            | `Generator(variant="lip_pose")`     |
| `lia_stage1`      | LIA `vox.pt`                 | `gen`            | `Generator(variant="lip_pose")` init|
| `audio2lip`       | `Audio2Lip.pt`               | `audio2lip`      | `Audio2Lip`                         |
| `syncnet_expert`  | Wav2Lip `checkpoint.pth`     | `state_dict`     | `SyncNet`                           |
| `discriminator`   | any trainer-format file      | `dis`            | `Discriminator`                     |
| `gfpgan`          | `GFPGANv1.4.pth`             | `params_ema`     | `GFPGAN` (face super-resolution)    |

Each kind has one `KeyMap`: prefix renames, plus an explicit list of dead upstream entries that are
dropped (FIR kernels are checked against their fixed values first). The mapped state dict must match
the module's own keys and shapes exactly and is loaded with `strict=True`. `export_official` inverts
the map (dead entries written back with their fixed values, zeros where the original never reads them).

Our format: `{"format": "edtalk", "version": 1, "kind", "config", "state_dict", "meta"}`.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from edtalk.config import BASE_CHANNELS, GeneratorConfig
from edtalk.nn.layers import make_kernel

FORMAT = "edtalk"
VERSION = 1
StateDict = dict[str, torch.Tensor]

WHERE_TO_GET = {
    "edtalk_full": "EDTalk.pt from the EDTalk release (README 'Download checkpoints'; Hugging Face tanshuai0219/EDTalk)",
    "edtalk_lip_pose": "EDTalk_lip_pose.pt from the EDTalk release (Hugging Face tanshuai0219/EDTalk)",
    "audio2lip": "Audio2Lip.pt from the EDTalk release (Hugging Face tanshuai0219/EDTalk)",
    "lia_stage1": "vox.pt from the LIA release (github.com/wyhsirius/LIA, 'Pretrained models')",
    "syncnet_expert": "lipsync_expert.pth / checkpoint.pth from the Wav2Lip release (github.com/Rudrabha/Wav2Lip)",
    "discriminator": "any EDTalk/LIA trainer checkpoint holding 'dis' (e.g. EDTalk_lip_pose.pt)",
    "gfpgan": "GFPGANv1.4.pth from the GFPGAN release v1.3.4 "
    "(https://github.com/TencentARC/GFPGAN/releases/download/v1.3.4/GFPGANv1.4.pth)",
}


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, truncated, or of the wrong kind."""


@dataclasses.dataclass(frozen=True)
class KeyMap:
    """How one official checkpoint kind maps onto our module's state dict.

    Attributes:
        container: top-level key holding the state dict (None: the file is the state dict).
        renames: (upstream prefix, our prefix) pairs, first match wins.
        dead: regexes of upstream entries with no counterpart (never read by the original forward,
            or fixed FIR kernels).
        unmapped: regexes of *our* keys the file does not provide (kept at their initialisation).
    """

    container: str | None
    renames: tuple[tuple[str, str], ...] = ()
    dead: tuple[str, ...] = (r"\.kernel$",)
    unmapped: tuple[str, ...] = ()

    def to_ours(self, key: str) -> str | None:
        if any(re.search(p, key) for p in self.dead):
            return None
        for up, ours in self.renames:
            if key.startswith(up):
                return ours + key.removeprefix(up)
        return key

    def to_upstream(self, key: str) -> str:
        for up, ours in self.renames:
            if key.startswith(ours):
                return up + key.removeprefix(ours)
        return key


_GEN_RENAMES = (
    ("enc.net_app.", "encoder."),
    ("dec.", "synthesis."),
    ("fc.", "navigator.fc."),
    ("lip_fc.", "navigator.lip_fc."),
    ("pose_fc.", "navigator.pose_fc."),
    ("exp_fc.", "navigator.exp_fc."),
    ("direction_lipnonlip.weight", "banks.mouth_pose"),
    ("direction_exp.weight", "banks.expression"),
)
_GEN_DEAD = (
    r"\.kernel$",  # fixed [1,3,3,1] FIR kernels (checked, then dropped)
    r"^dec\.(conv1|convs\.\d+)\.noise\.weight$",  # noise injection: identity at inference
    r"^dec\.to_rgb1\.",  # built but never called
    r"^dec\.fineadainresblock\.\d+\.(conv1|norm1)\.",  # EEM branch computed then overwritten
)

KEY_MAPS: dict[str, KeyMap] = {
    "edtalk_full": KeyMap("gen", _GEN_RENAMES, _GEN_DEAD),
    "edtalk_lip_pose": KeyMap("gen", _GEN_RENAMES, _GEN_DEAD),
    "lia_stage1": KeyMap(
        "gen",
        (("enc.net_app.", "encoder."), ("enc.fc.", "navigator.fc."), ("dec.", "synthesis.")),
        (*_GEN_DEAD, r"^enc\.fc\.4\.", r"^dec\.direction\.weight$"),
        unmapped=(r"^navigator\.(lip_fc|pose_fc)\.", r"^banks\."),
    ),
    "audio2lip": KeyMap("audio2lip"),
    "syncnet_expert": KeyMap("state_dict", (("module.", ""),)),
    "discriminator": KeyMap("dis"),
    "gfpgan": KeyMap("params_ema", dead=()),
}
GENERATOR_KINDS = ("edtalk_full", "edtalk_lip_pose", "lia_stage1")


# -- reading files -----------------------------------------------------------------------------
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
            f"cannot read checkpoint {path} ({type(err).__name__}: {str(err).splitlines()[0][:200]}); "
            "the file is truncated or not a PyTorch checkpoint - download it again"
        ) from err


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


def _container(obj: Any, kind: str, path: str | Path | None) -> StateDict:
    keymap = KEY_MAPS[kind]
    where = f" in {path}" if path else ""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"expected a dict checkpoint of kind {kind}{where}, got {type(obj).__name__}")
    if keymap.container is None:
        return dict(obj)
    if keymap.container not in obj:
        found = guess_kind(obj)
        hint = f" (it looks like a {found} checkpoint)" if found else ""
        raise CheckpointError(
            f"expected a {kind} checkpoint with top-level key {keymap.container!r}{where}, "
            f"found keys {sorted(obj)[:8]}{hint}. Get the right file: {WHERE_TO_GET[kind]}"
        )
    return dict(obj[keymap.container])


def guess_kind(obj: Mapping[str, Any]) -> str | None:
    """Best guess of a loaded checkpoint's kind from its layout (None if unknown)."""
    if obj.get("format") == FORMAT:
        return str(obj.get("kind"))
    if "audio2lip" in obj:
        return "audio2lip"
    if "state_dict" in obj and any("face_encoder" in k for k in obj["state_dict"]):
        return "syncnet_expert"
    gen = obj.get("gen")
    if isinstance(gen, Mapping):
        if "exp_fc.0.weight" in gen:
            return "edtalk_full"
        if "lip_fc.0.weight" in gen:
            return "edtalk_lip_pose"
        if "enc.fc.0.weight" in gen:
            return "lia_stage1"
    return None


# -- mapping -----------------------------------------------------------------------------------
def _check_kernel(key: str, value: torch.Tensor) -> None:
    base = make_kernel()
    if not any(torch.allclose(value.float(), base * f, atol=1e-7) for f in (1, 4)):
        raise CheckpointError(f"{key}: FIR kernel differs from the [1,3,3,1] kernel; not an EDTalk/LIA file")


def map_to_ours(sd: Mapping[str, torch.Tensor], kind: str) -> StateDict:
    """Apply the kind's key map: rename, check and drop dead entries."""
    keymap = KEY_MAPS[kind]
    out: StateDict = {}
    for key, value in sd.items():
        if key.endswith(".kernel"):
            _check_kernel(key, value)
        ours = keymap.to_ours(key)
        if ours is not None:
            out[ours] = value
    return out


def load_into(module: nn.Module, sd: Mapping[str, torch.Tensor], kind: str, source: str = "") -> None:
    """Assert every key and shape, then `load_state_dict(strict=True)`.

    Keys in `KeyMap.unmapped` (our parameters the file does not provide) keep their values.
    """
    keymap = KEY_MAPS[kind]
    own = module.state_dict()
    expected = {k for k in own if not any(re.search(p, k) for p in keymap.unmapped)}
    missing, unexpected = sorted(expected - set(sd)), sorted(set(sd) - set(own))
    where = f" from {source}" if source else ""
    if missing or unexpected:
        raise CheckpointError(
            f"{kind} state dict{where} does not match the model: {len(missing)} missing "
            f"(e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]}). "
            f"Is it the right file? Expected {WHERE_TO_GET[kind]}"
        )
    bad = [(k, tuple(v.shape), tuple(own[k].shape)) for k, v in sd.items() if v.shape != own[k].shape]
    if bad:
        raise CheckpointError(
            f"{kind} shape mismatch{where}: {bad[:3]} (file, model); wrong model size/config?"
        )
    full = {**{k: own[k] for k in own if k not in sd}, **sd}
    module.load_state_dict(full, strict=True)


def infer_generator_config(sd: Mapping[str, torch.Tensor], kind: str) -> GeneratorConfig:
    """GeneratorConfig from the shapes of an official generator state dict (upstream key names)."""
    prefix = "enc.net_app.convs."
    n_blocks = len({k.split(".")[3] for k in sd if k.startswith(prefix)}) - 2
    size = 2 ** (n_blocks + 2)
    first = sd[f"{prefix}0.0.weight"].shape[0]
    style = sd[f"{prefix}{n_blocks + 1}.weight"].shape[0]
    max_ch = max(sd[f"{prefix}{i}.conv2.1.weight"].shape[0] for i in range(1, n_blocks + 1))
    cm = first / BASE_CHANNELS[size] if first < max_ch else 1.0  # ambiguous when capped; any equivalent cfg
    if kind == "lia_stage1":
        return GeneratorConfig(
            size=size, style_dim=style, channel_multiplier=cm, max_channels=max_ch, variant="lip_pose"
        )
    full = kind == "edtalk_full"
    return GeneratorConfig(
        size=size,
        style_dim=style,
        mouth_dim=sd["lip_fc.2.weight"].shape[0],
        pose_dim=sd["pose_fc.2.weight"].shape[0],
        exp_dim=sd["exp_fc.2.weight"].shape[0] if full else 10,
        channel_multiplier=cm,
        max_channels=max_ch,
        variant="full" if full else "lip_pose",
        eem_hidden=sd["dec.fineadainresblock.0.norm2.mlp_shared.0.weight"].shape[0] if full else 128,
    )


# -- public loaders ----------------------------------------------------------------------------
def generator_from_official(
    sd: Mapping[str, torch.Tensor], kind: str, cfg: GeneratorConfig | None = None
) -> Any:
    """Build our `Generator` from an official generator state dict (upstream key names)."""
    from edtalk.nn.generator import Generator

    if kind not in GENERATOR_KINDS:
        raise CheckpointError(f"{kind} is not a generator checkpoint kind ({GENERATOR_KINDS})")
    cfg = cfg or infer_generator_config(sd, kind)
    gen = Generator(cfg)
    load_into(gen, map_to_ours(sd, kind), kind)
    return gen


def audio2lip_from_official(sd: Mapping[str, torch.Tensor]) -> Any:
    from edtalk.nn.audio2lip import Audio2Lip

    model = Audio2Lip()
    load_into(model, map_to_ours(sd, "audio2lip"), "audio2lip")
    return model


def syncnet_from_official(sd: Mapping[str, torch.Tensor]) -> Any:
    from edtalk.nn.syncnet import SyncNet

    model = SyncNet()
    load_into(model, map_to_ours(strip_prefixes(sd), "syncnet_expert"), "syncnet_expert")
    return model


def discriminator_from_official(sd: Mapping[str, torch.Tensor], size: int = 256) -> Any:
    from edtalk.nn.discriminator import Discriminator

    model = Discriminator(size)
    load_into(model, map_to_ours(sd, "discriminator"), "discriminator")
    return model


def gfpgan_from_official(sd: Mapping[str, torch.Tensor], cfg: Any = None) -> Any:
    """`GFPGAN` from `params_ema`; architecture from `cfg` (a `GFPGANConfig`) or the file's shapes."""
    from edtalk.nn.gfpgan import GFPGAN, infer_gfpgan_config

    sd = strip_prefixes(sd)
    model = GFPGAN(cfg or infer_gfpgan_config(sd))
    load_into(model, map_to_ours(sd, "gfpgan"), "gfpgan")
    return model


_BUILDERS: dict[str, Callable[..., Any]] = {
    "audio2lip": audio2lip_from_official,
    "syncnet_expert": syncnet_from_official,
    "discriminator": discriminator_from_official,
    "gfpgan": gfpgan_from_official,
}


def load_official(path: str | Path, kind: str, **build: Any) -> Any:
    """Load an official checkpoint file of `kind` into our module (eval mode, CPU).

    `build` goes to the kind's builder (e.g. `cfg=` for "gfpgan"; generators infer theirs).
    """
    if kind not in KEY_MAPS:
        raise CheckpointError(f"unknown checkpoint kind {kind!r}; known: {sorted(KEY_MAPS)}")
    if not Path(path).is_file():
        raise CheckpointError(
            f"checkpoint not found: {path}. Get {WHERE_TO_GET[kind]} (nothing is downloaded at run time)"
        )
    obj = load_file(path)
    found = guess_kind(obj) if isinstance(obj, Mapping) else None
    if kind in GENERATOR_KINDS and found in GENERATOR_KINDS and found != kind:
        raise CheckpointError(f"{path} is a {found} checkpoint, expected {kind}: get {WHERE_TO_GET[kind]}")
    sd = _container(obj, kind, path)
    try:
        model = generator_from_official(sd, kind) if kind in GENERATOR_KINDS else _BUILDERS[kind](sd, **build)
    except KeyError as err:
        raise CheckpointError(
            f"{path} lacks entry {err} expected in a {kind} checkpoint: get {WHERE_TO_GET[kind]}"
        ) from err
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from err
    return model.eval()


# -- export to the official layout -------------------------------------------------------------
def _dead_entries(kind: str, module: nn.Module) -> StateDict:
    """Values for the dead upstream entries, so an exported file loads strictly in the original code."""
    out: StateDict = {}
    for name, buf in module.named_buffers():
        if name.endswith(".kernel"):
            out[KEY_MAPS[kind].to_upstream(name)] = buf.detach().clone()
    if kind not in GENERATOR_KINDS:
        return out
    from edtalk.nn.synthesis import Synthesis

    syn = cast(Synthesis, module.get_submodule("synthesis"))
    c4 = syn.input.input.shape[1]
    out["dec.conv1.noise.weight"] = torch.zeros(1)
    for i in range(len(syn.convs)):
        out[f"dec.convs.{i}.noise.weight"] = torch.zeros(1)
    out["dec.to_rgb1.bias"] = torch.zeros(1, 3, 1, 1)
    out["dec.to_rgb1.conv.0.weight"] = torch.zeros(3, c4, 1, 1)
    out["dec.to_rgb1.conv.1.bias"] = torch.zeros(1, 3, 1, 1)
    for j, blk in enumerate(syn.eem_blocks):
        for name, value in blk.state_dict().items():
            twin = name.replace("conv2", "conv1").replace("norm2", "norm1")
            out[f"dec.fineadainresblock.{j}.{twin}"] = torch.zeros_like(value)
    return out


def export_official(module: nn.Module, kind: str) -> StateDict:
    """Our module's weights in the official key layout (the inverse of the import map)."""
    keymap = KEY_MAPS[kind]
    out = {keymap.to_upstream(k): v.detach().clone() for k, v in module.state_dict().items()}
    out.update(_dead_entries(kind, module))
    return out


def save_official(module: nn.Module, kind: str, path: str | Path) -> Path:
    """Write a file the original demos/trainers read (`{container: state_dict}`)."""
    container = KEY_MAPS[kind].container
    sd = export_official(module, kind)
    return atomic_save({container: sd} if container else sd, path)


# -- our own format ----------------------------------------------------------------------------
def atomic_save(obj: Any, path: str | Path) -> Path:
    """torch.save to a temporary file in the same folder, then rename: no half-written files."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    tmp.replace(path)
    return path


def save_checkpoint(
    module: nn.Module, kind: str, path: str | Path, config: Mapping[str, Any] | None = None, **meta: Any
) -> Path:
    """Save state dict + resolved config + kind + version (bit-exact round trip with `load_checkpoint`)."""
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
    """Read one of our checkpoints (optionally asserting its kind)."""
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
    from edtalk.nn.generator import Generator

    obj = load_file(path)
    if isinstance(obj, Mapping) and obj.get("format") == FORMAT:
        gen = Generator(GeneratorConfig.from_dict(obj["config"]))
        gen.load_state_dict(obj["state_dict"], strict=True)
        return gen.eval()
    if (
        isinstance(obj, Mapping) and "edtalk" in obj and "state_dict" in obj
    ):  # Lightning checkpoint of a stage
        cfg = GeneratorConfig.from_dict(obj["edtalk"]["generator"])
        sd = {
            k.removeprefix("generator."): v
            for k, v in obj["state_dict"].items()
            if k.startswith("generator.")
        }
        gen = Generator(cfg)
        gen.load_state_dict(strip_prefixes(sd), strict=True)
        return gen.eval()
    found = guess_kind(obj) if isinstance(obj, Mapping) else None
    if found in GENERATOR_KINDS:
        return load_official(path, found)
    raise CheckpointError(
        f"{path} holds no generator (found {found or 'an unknown layout'}); expected an edtalk generator "
        f"checkpoint or {WHERE_TO_GET['edtalk_full']}"
    )
