"""Key maps of the official release files, and their conversion to and from our modules' keys.

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
dropped (FIR kernels are checked against their fixed values first). `export_official` inverts the map
(dead entries written back with their fixed values, zeros where the original never reads them).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any, cast

import torch
from torch import nn

from edtalk.config import BASE_CHANNELS, GeneratorConfig
from edtalk.nn.layers import make_kernel
from edtalk.weights.files import FORMAT, CheckpointError, StateDict

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


def guess_kind(obj: Mapping[str, Any]) -> str | None:
    """Best guess of a loaded checkpoint's kind from its layout (None if unknown)."""
    if obj.get("format") == FORMAT:
        return str(obj.get("kind"))
    if "audio2lip" in obj:
        return "audio2lip"
    if "state_dict" in obj and any(
        k.removeprefix("module.").startswith("face_encoder.") for k in obj["state_dict"]
    ):
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
def check_kernel(key: str, value: torch.Tensor) -> None:
    base = make_kernel()
    if not any(torch.allclose(value.float(), base * f, atol=1e-7) for f in (1, 4)):
        raise CheckpointError(f"{key}: FIR kernel differs from the [1,3,3,1] kernel; not an EDTalk/LIA file")


def map_to_ours(sd: Mapping[str, torch.Tensor], kind: str | KeyMap) -> StateDict:
    """Apply the kind's key map (a `KEY_MAPS` name or the map itself): rename, check and drop dead entries."""
    keymap = KEY_MAPS[kind] if isinstance(kind, str) else kind
    out: StateDict = {}
    for key, value in sd.items():
        if key.endswith(".kernel"):
            check_kernel(key, value)
        ours = keymap.to_ours(key)
        if ours is not None:
            out[ours] = value
    return out


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
