"""The shared base of the non-GAN stages (syncnet, audio2mouth, audio2pose, audio2exp, emotion_classifier).

One trained network (`self.net`) under Lightning automatic optimisation (Adam); each stage only says
how a batch becomes weighted loss terms (`compute`). What every stage shares (uint8 -> float transfer,
sample grids, checkpoint payload and RNG, the frozen-parameter guard) is
`edtalk.stages.stage.EDTalkStage`, also the base of `edtalk.stages.base.GANStage`, so `edtalk fit`
treats every stage alike. This base adds:

* `Config` (the `model:` section) and `build(cfg, resume)` (instantiate from a composed run config);
* logging `train/<term>` and `val/<term>` (`val/loss` is the weighted total, the default monitor);
* `checkpoint["edtalk"]` = {stage, kind, network config, resolved run config, RNG states};
* when training ends, the network alone is exported in our checkpoint format
  (`edtalk.weights.save_checkpoint`) to `<run>/checkpoints/<kind>.pt` - the file inference
  (`edtalk generate --audio2pose ...`), evaluation (the emotion judge) and later stages load.

`width` scales every network's channel counts (experiments set it to `${generator.channel_multiplier}`,
so `--debug` runs train tiny networks).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import torch
from torch import nn

from edtalk import runs, weights
from edtalk.config import check_optim
from edtalk.stages.builders import PerceptualConfig
from edtalk.stages.params import world_lr_scale
from edtalk.stages.stage import (
    EDTalkStage,
    adam_betas,
    check_schedule,
    keep_out_of_checkpoints,
    step_schedule,
)

__all__ = ["keep_out_of_checkpoints"]  # re-exported: stages have imported it from here
if TYPE_CHECKING:
    from _typeshed import DataclassInstance

C = TypeVar("C", bound="DataclassInstance")


# -- hyper-parameters -------------------------------------------------------------------------------
@dataclass
class AdamConfig:
    """Adam settings of the trained network."""

    lr: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.0
    clip_grad_norm: float | None = None
    scale_lr_with_world_size: bool = False  # DDP policy (edtalk.stages.params.world_lr_scale)
    schedule: str = "constant"  # or "cosine": lr x (1 + cos(pi t / trainer.max_steps)) / 2, per step

    def __post_init__(self) -> None:
        check_optim({"lr": self.lr}, {"betas": self.betas})
        check_schedule(self.schedule)


@dataclass
class StageConfig:
    """Fields every supervised stage has (`model:` section).

    Attributes:
        width: multiplier of the network's channel counts (1.0 = the paper-size network).
        optim: Adam settings.
        perceptual: VGG settings (used by stages with an image loss: audio2mouth).
        samples_every_n_steps: image-sample cadence of stages that render (0 = never).
        diagnostics_every_n_steps: gradient-norm logging cadence (0 = never).
    """

    width: float = 1.0
    optim: AdamConfig = field(default_factory=AdamConfig)
    perceptual: PerceptualConfig = field(default_factory=PerceptualConfig)
    samples_every_n_steps: int = 500
    samples_num: int = 4
    diagnostics_every_n_steps: int = 100


def scaled(channels: Sequence[int], width: float) -> tuple[int, ...]:
    """Channel counts times `width` (at least 1 each)."""
    if width <= 0:
        raise ValueError(f"model.width must be > 0, got {width}")
    return tuple(max(1, round(c * width)) for c in channels)


def tie_to_generator(net_cfg: C, name: str, value: int) -> C:
    """`net_cfg` with its field `name` (e.g. `pose_dim`) set to the generator's `value`.

    The network predicts the generator's coefficients, so the size follows `generator.<name>`; a
    `model.network.<name>` set to another value is a contradiction, refused naming both.
    """
    own, default = getattr(net_cfg, name), getattr(type(net_cfg)(), name)
    if own not in (default, value):
        raise ValueError(
            f"model.network.{name}={own} but generator.{name}={value}: the network predicts the "
            f"generator's weights; drop model.network.{name} (it follows generator.{name})"
        )
    return dataclasses.replace(net_cfg, **{name: value})


# -- the networks this family trains, and their files ---------------------------------------------
def _syncnet(config: Mapping[str, Any]) -> nn.Module:
    from edtalk.nn.syncnet import SyncNet

    return SyncNet(tuple(config["channels"]))


def _audio2mouth(config: Mapping[str, Any]) -> nn.Module:
    from edtalk.nn.audio2lip import Audio2Lip

    return Audio2Lip(int(config["mouth_dim"]), tuple(config["channels"]))


def _audio2pose(config: Mapping[str, Any]) -> nn.Module:
    from edtalk.nn.audio2pose import Audio2Pose, Audio2PoseConfig

    return Audio2Pose(Audio2PoseConfig.from_dict(dict(config)))


def _audio2exp(config: Mapping[str, Any]) -> nn.Module:
    from edtalk.nn.audio2exp import Audio2Exp, Audio2ExpConfig

    return Audio2Exp(Audio2ExpConfig.from_dict(dict(config)))


def _emotion_classifier(config: Mapping[str, Any]) -> nn.Module:
    from edtalk.nn.emotion import EmotionClassifier, EmotionClassifierConfig

    return EmotionClassifier(EmotionClassifierConfig.from_dict(dict(config)))


NETWORKS: dict[str, Callable[[Mapping[str, Any]], nn.Module]] = {
    "syncnet": _syncnet,
    "audio2mouth": _audio2mouth,
    "audio2pose": _audio2pose,
    "audio2exp": _audio2exp,
    "emotion_classifier": _emotion_classifier,
}
OFFICIAL = {"syncnet": "syncnet_expert", "audio2mouth": "audio2lip"}


def build_network(kind: str, config: Mapping[str, Any]) -> nn.Module:
    """The network of `kind` from its config dict (as stored in checkpoints)."""
    if kind not in NETWORKS:
        raise ValueError(f"unknown network kind {kind!r}; known: {sorted(NETWORKS)}")
    return NETWORKS[kind](config)


def load_network(path: str | Path, kind: str) -> nn.Module:
    """A trained network from any file that holds one (eval mode, CPU).

    Accepted: our export (`<run>/checkpoints/<kind>.pt`), the Lightning checkpoint of the stage that
    trained it (`last.ckpt` / `best.ckpt`), and for syncnet / audio2mouth the official Wav2Lip expert /
    `Audio2Lip.pt`.
    """
    return weights.load(path, kind)  # edtalk.weights decides ours / Lightning / official


# -- the base ----------------------------------------------------------------------------------------
class SupervisedStage(EDTalkStage):
    """Automatic-optimisation training of one injected network.

    Args:
        net: the network to train.
        net_config: its config dict (rebuilds it: `build_network(kind, net_config)`).
        cfg: stage hyper-parameters (a `Config` instance).
        run_config: the resolved run configuration, saved into every checkpoint.
    """

    Config: ClassVar[type[StageConfig]] = StageConfig
    stage_name: ClassVar[str] = "supervised"
    kind: ClassVar[str] = ""

    def __init__(
        self,
        net: nn.Module,
        net_config: Mapping[str, Any],
        cfg: StageConfig,
        run_config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(run_config)
        self.net = net
        self.net_config = dict(net_config)
        self.cfg = cfg
        self.val_index = 0  # index of the validation batch being computed (seeds its random choices)

    # -- stage interface ---------------------------------------------------------------------------
    def compute(self, batch: dict[str, torch.Tensor], train: bool) -> dict[str, torch.Tensor]:
        """Batch -> {"loss": weighted total, <term>: value, ...} (scalars; implemented by each stage)."""
        raise NotImplementedError

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters the optimiser updates (default: every parameter of `net` that requires grad)."""
        return [p for p in self.net.parameters() if p.requires_grad]

    # -- loops -------------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        out = self.compute(batch, train=True)
        n = _batch_size(batch)
        self.log_dict({f"train/{k}": v.detach() for k, v in out.items()}, batch_size=n)
        self.log("loss", out["loss"].detach(), prog_bar=True, logger=False, batch_size=n)
        return out["loss"]

    def val_draws(self) -> int:
        """Seeded random choices per validation batch, averaged (1; the syncnet: `model.val_windows`)."""
        return 1

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        k = self.val_draws()
        outs = []
        for j in range(k):
            self.val_index = batch_idx * k + j  # seeds this draw's choices (k = 1: the batch index)
            outs.append(self.compute(batch, train=False))
        out = {name: torch.stack([o[name] for o in outs]).mean() for name in outs[0]}
        self.log_dict(
            {f"val/{name}": v for name, v in out.items()}, sync_dist=True, batch_size=_batch_size(batch)
        )

    def configure_optimizers(self) -> Any:
        """Adam; with `model.optim.schedule=cosine` its rate falls to 0 over `trainer.max_steps` (`step_schedule`)."""
        params = self.trainable_parameters()
        if not params:
            raise ValueError(f"stage {self.stage_name}: no trainable parameter (check the trainable globs)")
        o = self.cfg.optim
        betas = adam_betas(o.betas, "model.optim.betas")
        lr = o.lr * world_lr_scale(self, o.scale_lr_with_world_size)
        optimizer = torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=o.weight_decay)
        decay = step_schedule(optimizer, o.schedule, self)
        if decay is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": decay, "interval": "step"}}

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: int | float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        clip = self.cfg.optim.clip_grad_norm or gradient_clip_val
        if clip:
            self.clip_gradients(optimizer, gradient_clip_val=clip, gradient_clip_algorithm="norm")

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        every = self.cfg.diagnostics_every_n_steps
        if every > 0 and self.global_step % every == 0:
            grads = [p.grad.detach().norm() for p in self.trainable_parameters() if p.grad is not None]
            if grads:
                self.log(f"grad_norm/{self.kind}", torch.stack(grads).norm())

    # -- checkpoints -------------------------------------------------------------------------------
    def checkpoint_payload(self) -> dict[str, Any]:
        """The network's kind and config (`edtalk.weights` rebuilds it from a Lightning checkpoint)."""
        return {"kind": self.kind, "network": self.net_config}

    def export_path(self) -> Path:
        """`<run>/checkpoints/<kind>.pt` (the trainer's root directory is the run directory)."""
        return runs.export_file(Path(self.trainer.default_root_dir), self.kind)

    def export(self, path: str | Path) -> Path:
        """Write the network alone in our checkpoint format (what inference and metrics load)."""
        meta = {"stage": self.stage_name, "step": int(self.global_step)}
        return weights.save_checkpoint(self.net, self.kind, path, config=self.net_config, **meta)

    def on_train_end(self) -> None:
        super().on_train_end()  # the frozen-parameter guard first: no export of a corrupted network
        if self.trainer.is_global_zero:
            self.export(self.export_path())


def _batch_size(batch: dict[str, torch.Tensor]) -> int:
    return int(next(iter(batch.values())).shape[0])


def seeded_generator(seed: int) -> torch.Generator:
    """A CPU generator for deterministic validation choices (window starts, shifts)."""
    return torch.Generator().manual_seed(seed)


def resolved(cfg: Any) -> tuple[Any, dict[str, Any]]:
    """(typed `model:` section, resolved run config as a plain dict) of a composed run config."""
    from omegaconf import OmegaConf

    run_config = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(run_config, dict)
    return OmegaConf.to_object(cfg.model), {str(k): v for k, v in run_config.items()}


# -- `edtalk fit STAGE --debug`: the earlier artefacts an audio stage needs ---------------------------
def debug_coefficient_data(cfg: Any) -> Path:
    """Shards with coefficients extracted by `cfg.init_from` (the debug generator) for a `--debug` run.

    For the audio stages' `prepare_debug` (run by the training entry point once `init_from` is the
    `requires` stage's debug checkpoint).

    The source shards (`data.root`, default the built-in dataset) are linked into
    `<run.root>/<experiment>/debug-data/` and the sidecars written there, so debug generators never
    write beside a shared dataset. Sets `cfg.data.root`; returns the directory.
    """
    from datamodules.synthetic import ensure_builtin
    from edtalk.coefficients import extract_coefficients, link_shards
    from edtalk.nn.generator import Generator
    from edtalk.weights.handoff import read_generator

    if not cfg.init_from:
        raise ValueError(f"--debug {cfg.experiment}: init_from (the generator to extract with) is not set")
    src = Path(cfg.data.root) if cfg.data.root else ensure_builtin()
    dst = link_shards(src, runs.debug_data(cfg.run.root, str(cfg.experiment)))
    gen_cfg, sd, _ = read_generator(cfg.init_from)
    gen = Generator(gen_cfg)
    gen.load_state_dict(sd, strict=True)
    extract_coefficients(gen, dst, overwrite=True)
    cfg.data.root = str(dst)
    return dst
