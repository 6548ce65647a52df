"""The shared base of the non-GAN stages (syncnet, audio2mouth, audio2pose, audio2exp, emotion_classifier).

One trained network (`self.net`) under Lightning automatic optimisation (Adam); each stage only says
how a batch becomes weighted loss terms (`compute`). The base does the rest, in the same shapes as
`edtalk.stages.base.GANStage` so `edtalk fit` treats every stage alike:

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

from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import torch
from torch import nn

from edtalk import weights
from edtalk.config import check_optim
from edtalk.io import images_to_float
from edtalk.stages.base import PerceptualConfig, rng_state, set_rng_state
from edtalk.stages.params import world_lr_scale


# -- hyper-parameters -------------------------------------------------------------------------------
@dataclass
class AdamConfig:
    """Adam settings of the trained network."""

    lr: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.0
    clip_grad_norm: float | None = None
    scale_lr_with_world_size: bool = False  # DDP policy (edtalk.stages.params.world_lr_scale)

    def __post_init__(self) -> None:
        check_optim({"lr": self.lr}, {"betas": self.betas})


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


def scaled(channels: tuple[int, ...], width: float) -> tuple[int, ...]:
    """Channel counts times `width` (at least 1 each)."""
    if width <= 0:
        raise ValueError(f"model.width must be > 0, got {width}")
    return tuple(max(1, round(c * width)) for c in channels)


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
class SupervisedStage(L.LightningModule):
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
        super().__init__()
        self.net = net
        self.net_config = dict(net_config)
        self.cfg = cfg
        self.run_config = run_config or {}
        self.sample_dir: Path | None = None
        self.val_index = 0  # index of the validation batch being computed (seeds its random choices)

    # -- stage interface ---------------------------------------------------------------------------
    def compute(self, batch: dict[str, torch.Tensor], train: bool) -> dict[str, torch.Tensor]:
        """Batch -> {"loss": weighted total, <term>: value, ...} (scalars; implemented by each stage)."""
        raise NotImplementedError

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters the optimiser updates (default: every parameter of `net` that requires grad)."""
        return [p for p in self.net.parameters() if p.requires_grad]

    # -- loops -------------------------------------------------------------------------------------
    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        # uint8 images from the DataModules -> float [-1, 1], on the device
        return images_to_float(batch) if isinstance(batch, dict) else batch

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        out = self.compute(batch, train=True)
        n = _batch_size(batch)
        self.log_dict({f"train/{k}": v.detach() for k, v in out.items()}, batch_size=n)
        self.log("loss", out["loss"].detach(), prog_bar=True, logger=False, batch_size=n)
        return out["loss"]

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self.val_index = batch_idx
        out = self.compute(batch, train=False)
        self.log_dict({f"val/{k}": v for k, v in out.items()}, sync_dist=True, batch_size=_batch_size(batch))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        params = self.trainable_parameters()
        if not params:
            raise ValueError(f"stage {self.stage_name}: no trainable parameter (check the trainable globs)")
        o = self.cfg.optim
        if len(o.betas) != 2:
            raise ValueError(f"model.optim.betas needs two values, got {o.betas}")
        betas = (float(o.betas[0]), float(o.betas[1]))
        lr = o.lr * world_lr_scale(self, o.scale_lr_with_world_size)
        return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=o.weight_decay)

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

    # -- samples -----------------------------------------------------------------------------------
    def sample_due(self) -> bool:
        every = self.cfg.samples_every_n_steps
        return every > 0 and self.global_step % every == 0 and self.trainer.is_global_zero

    @torch.no_grad()
    def log_samples(self, columns: list[torch.Tensor], tag: str) -> Path | None:
        """Grid, one row per sample and one column per image kind: PNG in the run dir + image loggers."""
        from PIL import Image
        from torchvision.utils import make_grid

        from edtalk.io import to_uint8

        n = min(self.cfg.samples_num, columns[0].shape[0])
        rows = torch.stack([c[:n].detach().float().cpu() for c in columns], 1).flatten(0, 1)  # -> (N*K)x3xHxW
        grid = to_uint8(make_grid(rows, nrow=len(columns), padding=2, pad_value=-1)).numpy()  # -> H'xW'x3
        path = None
        if self.sample_dir is not None:
            path = self.sample_dir / f"{tag}_step{self.global_step:07d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(grid).save(path)
        for logger in self.loggers:
            if hasattr(logger, "log_image"):
                logger.log_image(key=f"samples/{tag}", images=[grid], step=self.global_step)
        return path

    # -- checkpoints -------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["edtalk"] = {
            "version": 1,
            "stage": self.stage_name,
            "kind": self.kind,
            "network": self.net_config,
            "config": self.run_config,
            "rng": rng_state(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        rng = checkpoint.get("edtalk", {}).get("rng")
        if rng is not None:
            set_rng_state(rng)

    def export_path(self) -> Path:
        """`<run>/checkpoints/<kind>.pt` (the trainer's root directory is the run directory)."""
        return Path(self.trainer.default_root_dir) / "checkpoints" / f"{self.kind}.pt"

    def export(self, path: str | Path) -> Path:
        """Write the network alone in our checkpoint format (what inference and metrics load)."""
        meta = {"stage": self.stage_name, "step": int(self.global_step)}
        return weights.save_checkpoint(self.net, self.kind, path, config=self.net_config, **meta)

    def on_train_end(self) -> None:
        if self.trainer.is_global_zero:
            self.export(self.export_path())


def keep_out_of_checkpoints(module: nn.Module) -> None:
    """Turn a fixed module's parameters and buffers into non-persistent buffers (not saved, not optimised).

    For judges rebuilt from their own files on every start (VGG, the SyncNet expert).
    """
    for m in module.modules():
        for name, p in list(m._parameters.items()):
            if p is not None:
                del m._parameters[name]
                m.register_buffer(name, p.detach().requires_grad_(False), persistent=False)
        m._non_persistent_buffers_set.update(m._buffers)


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

    The source shards (`data.root`, default the built-in dataset) are linked into
    `<run.root>/<experiment>/debug-data/` and the sidecars written there, so debug generators never
    write beside a shared dataset. Sets `cfg.data.root`; returns the directory.
    """
    from datamodules.synthetic import ensure_builtin
    from edtalk.coefficients import extract_coefficients
    from edtalk.nn.generator import Generator
    from edtalk.weights.handoff import read_generator

    if not cfg.init_from:
        raise ValueError(f"--debug {cfg.experiment}: init_from (the generator to extract with) is not set")
    src = Path(cfg.data.root) if cfg.data.root else ensure_builtin()
    dst = Path(cfg.run.root) / str(cfg.experiment) / "debug-data"
    dst.mkdir(parents=True, exist_ok=True)
    for item in src.iterdir():
        link = dst / item.name
        if item.is_file() and not item.name.endswith(".coeffs.npz") and not link.exists():
            link.symlink_to(item.resolve())
    gen_cfg, sd, _ = read_generator(cfg.init_from)
    gen = Generator(gen_cfg)
    gen.load_state_dict(sd, strict=True)
    extract_coefficients(gen, dst, overwrite=True)
    cfg.data.root = str(dst)
    return dst


# Set by the training entry point (`edtalk.train.debug_dependency`) while a stage's `prepare_debug` runs:
# (experiment, cfg) -> that experiment's `--debug` export. Stages never import `edtalk.train`.
DEBUG_EXPORT: ContextVar[Callable[[str, Any], Path] | None] = ContextVar("edtalk_debug_export", default=None)


def debug_network(experiment: str, cfg: Any) -> Path:
    """The export of another stage's `--debug` run under the same `run.root` (trained first if missing)."""
    export = DEBUG_EXPORT.get()
    if export is None:
        raise RuntimeError(
            f"--debug {experiment}: debug_network runs inside `prepare_debug`, called by "
            "edtalk.train.debug_dependency (use `edtalk fit ... --debug`)"
        )
    return export(experiment, cfg)
