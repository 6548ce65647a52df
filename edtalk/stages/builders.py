"""Builders of the networks stages receive by injection, from a composed run config.

Every stage that renders (the GAN stages and `audio2mouth`) makes its generator, VGG perceptual loss
and discriminator here, so a setting means the same in every stage:

* `build_generator(cfg, ...)`: the `generator:` section (+ the GAN stages' ablation switches and flow
  init gain); weights come later from `init_from` (`edtalk.weights.handoff.init_generator`);
* `build_perceptual(model.perceptual, model.loss.vgg)`: the VGG pyramid loss, None at weight 0;
* `build_discriminator(cfg)`: the StyleGAN2 discriminator at the generator's image size.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from torch import nn

from edtalk.config import GeneratorConfig
from edtalk.losses import VGGPyramidLoss
from edtalk.nn.generator import Generator


@dataclass
class PerceptualConfig:
    """VGG19 pyramid loss settings (see `edtalk.losses.perceptual`)."""

    path: str | None = None
    init: str = "pretrained"
    width: float = 1.0


@dataclass
class AblationConfig:
    """The paper's ablation rows as switches (written into the generator config, so checkpoints and
    inference keep them): `no_orthogonality` uses the plain banks W instead of QR(W), `no_eem` feeds the
    expression latent to the decoder without the EEM modulation."""

    no_orthogonality: bool = False
    no_eem: bool = False


def ablated(gcfg: GeneratorConfig, ablation: AblationConfig) -> GeneratorConfig:
    """The generator config with the ablation switches applied (a switch only ever turns a part off)."""
    if ablation.no_orthogonality:
        gcfg = dataclasses.replace(gcfg, orthogonal_banks=False)
    if ablation.no_eem:
        gcfg = dataclasses.replace(gcfg, eem=False)
    return gcfg


def generator_config(cfg: Any) -> GeneratorConfig:
    """The `GeneratorConfig` of a composed run config's `generator:` section."""
    from omegaconf import OmegaConf

    return GeneratorConfig.from_dict(OmegaConf.to_container(cfg.generator, resolve=True))  # type: ignore[arg-type]


def build_generator(
    cfg: Any, ablation: AblationConfig | None = None, flow_init_gain: float = 1.0
) -> Generator:
    """A freshly initialised generator of the run config's `generator:` section.

    Args:
        ablation: the GAN stages' `model.ablation` switches (None: none).
        flow_init_gain: gain on the flow/mask predictor's initial weights (1 = LIA's init); `init_from`
            and resume overwrite it.
    """
    gcfg = generator_config(cfg)
    gen = Generator(ablated(gcfg, ablation) if ablation is not None else gcfg)
    if flow_init_gain != 1.0:
        gen.synthesis.scale_flow_init(flow_init_gain)
    return gen


def build_perceptual(p: PerceptualConfig, weight: float) -> VGGPyramidLoss | None:
    """The VGG pyramid loss of `model.perceptual`, or None when its loss weight is 0."""
    if weight <= 0:
        return None
    return VGGPyramidLoss(path=p.path, init=p.init, width=p.width)  # type: ignore[arg-type]


def build_discriminator(cfg: Any) -> nn.Module:
    """The StyleGAN2 discriminator at the generator's image size (`discriminator:` section)."""
    from edtalk.nn.discriminator import Discriminator

    d = cfg.discriminator
    return Discriminator(int(cfg.generator.size), float(d.channel_multiplier), int(d.max_channels))
