"""Every kind of weight file the project reads, registered in one table (`BUILTIN`).

To add a kind, append one `Kind(...)` to `BUILTIN` (see `edtalk.weights.registry` for the fields).
Builders import their network inside the function so importing `edtalk.weights` stays cheap.

The kinds of the frozen evaluation judges (`syncnet_v2`, `alexnet`, `arcface`, `emotion_fan`,
`inception_v3_imagenet`) are not here: `metrics.judges` owns those networks and their table of files,
and registers their kinds when imported (`edtalk weights inspect` imports it). This package never
imports `metrics`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from edtalk.config import BASE_CHANNELS, GeneratorConfig
from edtalk.nn.vgg import VGG19_URL
from edtalk.weights.files import StateDict
from edtalk.weights.keymaps import KEY_MAPS, WHERE_TO_GET, KeyMap, infer_generator_config
from edtalk.weights.registry import Kind, LightningRule, register


# -- builders and configs (lazy imports) ------------------------------------------------------------
def _generator(cfg: GeneratorConfig) -> nn.Module:
    from edtalk.nn.generator import Generator

    return Generator(cfg)


def _discriminator(cfg: Any) -> nn.Module:
    from edtalk.nn.discriminator import Discriminator

    return Discriminator(cfg.size, cfg.channel_multiplier, cfg.max_channels)


def _discriminator_config(d: dict[str, Any]) -> Any:
    from edtalk.nn.discriminator import DiscriminatorConfig

    return DiscriminatorConfig.from_dict(d)


def infer_discriminator_config(sd: Mapping[str, Any]) -> Any:
    """`DiscriminatorConfig` from a discriminator state dict's shapes (upstream `dis` keys = ours)."""
    from edtalk.nn.discriminator import DiscriminatorConfig

    n_blocks = len({k.split(".")[1] for k in sd if k.startswith("convs.")}) - 1
    size = 2 ** (n_blocks + 2)
    first, c4 = sd["convs.0.0.weight"].shape[0], sd["final_conv.0.weight"].shape[0]
    max_channels = c4 if c4 < BASE_CHANNELS[4] else BASE_CHANNELS[4]
    multiplier = first / BASE_CHANNELS[size] if size > 32 and first < max_channels else 1.0
    return DiscriminatorConfig(size, multiplier, max_channels)


def _audio2lip(cfg: Any) -> nn.Module:
    from edtalk.nn.audio2lip import Audio2Lip

    return Audio2Lip(cfg.mouth_dim, cfg.channels)


def _audio2lip_config(d: dict[str, Any]) -> Any:
    from edtalk.nn.audio2lip import Audio2LipConfig

    return Audio2LipConfig.from_dict(d)


def _syncnet(cfg: Any) -> nn.Module:
    from edtalk.nn.syncnet import SyncNet

    return SyncNet(cfg.channels)


def _syncnet_config(d: dict[str, Any]) -> Any:
    from edtalk.nn.syncnet import SyncNetConfig

    return SyncNetConfig.from_dict(d)


def _gfpgan(cfg: Any) -> nn.Module:
    from edtalk.nn.gfpgan import GFPGAN

    return GFPGAN(cfg)


def _gfpgan_config(d: dict[str, Any]) -> Any:
    from edtalk.nn.gfpgan import GFPGANConfig

    return GFPGANConfig.from_dict(d)


def _infer_gfpgan(sd: StateDict) -> Any:
    from edtalk.nn.gfpgan import infer_gfpgan_config

    return infer_gfpgan_config(sd)


def _audio2pose(cfg: Any) -> nn.Module:
    from edtalk.nn.audio2pose import Audio2Pose

    return Audio2Pose(cfg)


def _audio2pose_config(d: dict[str, Any]) -> Any:
    from edtalk.nn.audio2pose import Audio2PoseConfig

    return Audio2PoseConfig.from_dict(d)


def _audio2exp(cfg: Any) -> nn.Module:
    from edtalk.nn.audio2exp import Audio2Exp

    return Audio2Exp(cfg)


def _audio2exp_config(d: dict[str, Any]) -> Any:
    from edtalk.nn.audio2exp import Audio2ExpConfig

    return Audio2ExpConfig.from_dict(d)


def _emotion_classifier(cfg: Any) -> nn.Module:
    from edtalk.nn.emotion import EmotionClassifier

    return EmotionClassifier(cfg)


def _emotion_classifier_config(d: dict[str, Any]) -> Any:
    from edtalk.nn.emotion import EmotionClassifierConfig

    return EmotionClassifierConfig.from_dict(d)


# -- the perceptual VGG (a release file of another project, a plain state dict) --------------------
def _vgg19(cfg: dict[str, Any]) -> nn.Module:
    from edtalk.nn.vgg import vgg19_features

    return vgg19_features(float(cfg["width"]))


def conv1_kernel(obj: Mapping[str, Any]) -> int:
    """Kernel side of `features.0` (11: AlexNet, 3: VGG), 0 when absent."""
    weight = obj.get("features.0.weight")
    return int(weight.shape[-1]) if isinstance(weight, torch.Tensor) else 0


def _defaults(**default: Any) -> Any:
    """A config reader for networks whose config is a plain dict of constructor arguments."""
    return lambda d: {**default, **d}


# -- Lightning stage checkpoints --------------------------------------------------------------------
GAN_GENERATOR = LightningRule(
    "generator.", lambda meta, sd: GeneratorConfig.from_dict(dict(meta["generator"])), "generator_ema."
)
GAN_DISCRIMINATOR = LightningRule("discriminator.", lambda meta, sd: infer_discriminator_config(sd))


def supervised(config: Any) -> LightningRule:
    """The one network (`net.`) of a supervised stage, its config under `checkpoint["edtalk"]["network"]`."""
    return LightningRule("net.", lambda meta, sd: config(dict(meta["network"])))


def _official_generator(name: str) -> Kind:
    return Kind(
        name,
        "generator",
        _generator,
        GeneratorConfig.from_dict,
        official=KEY_MAPS[name],
        infer_config=lambda sd: infer_generator_config(sd, name),
        lightning=GAN_GENERATOR,
        where=WHERE_TO_GET[name],
    )


# -- Wav2Lip's generator checkpoint (audio2mouth's audio encoder init) --------------------------------
WAV2LIP_BLOCKS = (0, 3, 6, 9, 11)  # the block entering each of the five widths (Audio2Lip's layout)


def _infer_wav2lip(sd: StateDict) -> Any:
    """Audio2LipConfig whose encoder widths are the file's `audio_encoder.*` widths."""
    from edtalk.nn.audio2lip import Audio2LipConfig

    widths = tuple(int(sd[f"audio_encoder.{i}.conv_block.0.weight"].shape[0]) for i in WAV2LIP_BLOCKS)
    return Audio2LipConfig(channels=widths)


def _looks_like_wav2lip(obj: Mapping[str, Any]) -> bool:
    """Wav2Lip's generator file: a `state_dict` with the audio encoder and the face encoder blocks."""
    sd = obj.get("state_dict")
    if not isinstance(sd, Mapping):
        return False
    keys = [str(k).removeprefix("module.") for k in sd]
    return any(k.startswith("audio_encoder.") for k in keys) and any(
        k.startswith("face_encoder_blocks.") for k in keys
    )


WAV2LIP_KEYS = KeyMap(
    "state_dict",  # `module.` prefixes are stripped by the registry
    dead=(r"^(face_encoder_blocks|face_decoder_blocks|output_block)\.",),  # the face half: unused
    unmapped=(r"^mapping\.",),  # Audio2Lip's head is not in the file
)
KEY_MAPS.setdefault("wav2lip", WAV2LIP_KEYS)  # `map_to_ours` looks key maps up by kind name
WAV2LIP = Kind(
    "wav2lip",
    "wav2lip_audio",
    _audio2lip,
    _audio2lip_config,
    official=WAV2LIP_KEYS,
    infer_config=_infer_wav2lip,
    looks_like=_looks_like_wav2lip,
    where="wav2lip.pth, the generator checkpoint of the Wav2Lip release (github.com/Rudrabha/Wav2Lip)",
)


_OURS = "written by `edtalk fit {}` (<run>/checkpoints/{}.pt or last.ckpt)"

BUILTIN: tuple[Kind, ...] = (
    Kind(
        "generator",
        "generator",
        _generator,
        GeneratorConfig.from_dict,
        lightning=GAN_GENERATOR,
        where="a generator checkpoint of `edtalk fit` / `edtalk train`, or " + WHERE_TO_GET["edtalk_full"],
    ),
    _official_generator("edtalk_full"),
    _official_generator("edtalk_lip_pose"),
    _official_generator("lia_stage1"),
    Kind(
        "discriminator",
        "discriminator",
        _discriminator,
        _discriminator_config,
        official=KEY_MAPS["discriminator"],
        infer_config=infer_discriminator_config,
        looks_like=lambda obj: isinstance(obj.get("dis"), Mapping),  # a trainer file with D only
        lightning=GAN_DISCRIMINATOR,
        where=WHERE_TO_GET["discriminator"],
    ),
    Kind(
        "audio2lip",
        "audio2lip",
        _audio2lip,
        _audio2lip_config,
        official=KEY_MAPS["audio2lip"],
        lightning=supervised(_audio2lip_config),
        where=WHERE_TO_GET["audio2lip"],
    ),
    Kind(
        "audio2mouth",
        "audio2lip",
        _audio2lip,
        _audio2lip_config,
        lightning=supervised(_audio2lip_config),
        where=_OURS.format("audio2mouth", "audio2mouth") + ", or " + WHERE_TO_GET["audio2lip"],
    ),
    Kind(
        "syncnet_expert",
        "syncnet",
        _syncnet,
        _syncnet_config,
        official=KEY_MAPS["syncnet_expert"],
        lightning=supervised(_syncnet_config),
        where=WHERE_TO_GET["syncnet_expert"],
    ),
    Kind(
        "syncnet",
        "syncnet",
        _syncnet,
        _syncnet_config,
        lightning=supervised(_syncnet_config),
        where=_OURS.format("syncnet", "syncnet") + ", or " + WHERE_TO_GET["syncnet_expert"],
    ),
    Kind(
        "gfpgan",
        "gfpgan",
        _gfpgan,
        _gfpgan_config,
        official=KEY_MAPS["gfpgan"],
        infer_config=_infer_gfpgan,
        looks_like=lambda obj: isinstance(obj.get("params_ema"), Mapping),
        where=WHERE_TO_GET["gfpgan"],
    ),
    Kind(
        "audio2pose",
        "audio2pose",
        _audio2pose,
        _audio2pose_config,
        lightning=supervised(_audio2pose_config),
        where=_OURS.format("audio2pose", "audio2pose"),
    ),
    Kind(
        "audio2exp",
        "audio2exp",
        _audio2exp,
        _audio2exp_config,
        lightning=supervised(_audio2exp_config),
        where=_OURS.format("audio2exp", "audio2exp"),
    ),
    Kind(
        "emotion_classifier",
        "emotion_classifier",
        _emotion_classifier,
        _emotion_classifier_config,
        lightning=supervised(_emotion_classifier_config),
        where=_OURS.format("emotion_classifier", "emotion_classifier"),
    ),
)

FOREIGN: tuple[Kind, ...] = (
    Kind(
        "vgg19",
        "vgg19",
        _vgg19,
        _defaults(width=1.0),
        official=KeyMap(None, (("features.", ""),), dead=(r"^features\.3\d\.", r"^classifier\.")),
        looks_like=lambda obj: conv1_kernel(obj) == 3 and "features.34.weight" in obj,
        where=f"{VGG19_URL} (torchvision VGG19, for the perceptual loss)",
    ),
)

for _kind in (*BUILTIN, *FOREIGN, WAV2LIP):
    register(_kind)

__all__ = ["BUILTIN", "FOREIGN", "KeyMap", "conv1_kernel", "infer_discriminator_config", "supervised"]
