"""The shared GAN stage: Lightning manual optimisation with one generator step and one discriminator step.

Every visual stage (reconstruct, mouth_pose, expression, finetune) is a `GANStage` subclass that only
says how a batch becomes reconstructions and losses (`generator_step`); the base does the rest:

* G step: `toggle_optimizer(G)`, stage losses + non-saturating GAN loss on `fake`, `manual_backward`,
  optional grad clipping, Adam step (spec §5.0 defaults: lr 0.0016, betas (0, 0.99^(4/5))).
* D step: `toggle_optimizer(D)`, softplus(-D(real)) + softplus(D(fake)), optional lazy R1 every
  `r1_every` steps, Adam step (lr 0.002*16/17, betas (0, 0.99^(16/17))).
* optional EMA of the generator weights (used for validation and samples when enabled);
* `trainable:` globs: everything else is frozen (requires_grad False, not in the optimiser) and its
  exact bytes are fingerprinted at the start and verified unchanged at the end of training;
* logging: weighted losses, gradient norms, bank orthogonality diagnostics, sample grids
  (source | driver | output) written as PNG under the run dir and sent to image-capable loggers;
* the checkpoint carries `checkpoint["edtalk"]` = {generator config, stage, resolved run config,
  RNG states} so `edtalk.weights.load_generator` and the next stage read it with no flags.

The modules are injected: `build(cfg)` makes them from a composed run config; tests pass their own.
"""

from __future__ import annotations

import copy
import dataclasses
import random
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import numpy as np
import torch
from torch import nn

from edtalk.config import check_optim
from edtalk.io import images_to_float
from edtalk.losses import VGGPyramidLoss, bank_diagnostics, d_nonsaturating, g_nonsaturating, r1_penalty
from edtalk.nn.generator import Generator
from edtalk.stages.params import apply_trainable, fingerprint, world_lr_scale


# -- hyper-parameters ------------------------------------------------------------------------------
@dataclass
class PerceptualConfig:
    """VGG19 pyramid loss settings (see `edtalk.losses.perceptual`)."""

    path: str | None = None
    init: str = "pretrained"
    width: float = 1.0


@dataclass
class OptimConfig:
    """Adam settings; defaults are the upstream trainers' (spec §5.0)."""

    g_lr: float = 0.002 * 4 / 5
    g_betas: list[float] = field(default_factory=lambda: [0.0, 0.99 ** (4 / 5)])
    d_lr: float = 0.002 * 16 / 17
    d_betas: list[float] = field(default_factory=lambda: [0.0, 0.99 ** (16 / 17)])
    clip_grad_norm: float | None = None
    scale_lr_with_world_size: bool = False  # DDP policy (edtalk.stages.params.world_lr_scale)

    def __post_init__(self) -> None:
        check_optim(
            {"g_lr": self.g_lr, "d_lr": self.d_lr}, {"g_betas": self.g_betas, "d_betas": self.d_betas}
        )


@dataclass
class LossWeights:
    """Weight of each loss term (a term with weight 0 is skipped where the stage can skip it)."""

    vgg: float = 1.0
    l1: float = 1.0
    gan: float = 1.0


@dataclass
class AblationConfig:
    """The paper's ablation rows as switches (written into the generator config, so checkpoints and
    inference keep them): `no_orthogonality` uses the plain banks W instead of QR(W), `no_eem` feeds the
    expression latent to the decoder without the EEM modulation."""

    no_orthogonality: bool = False
    no_eem: bool = False


@dataclass
class GANStageConfig:
    """Hyper-parameters shared by the GAN stages (`model:` section of an experiment)."""

    trainable: list[str] = field(default_factory=lambda: ["*"])
    loss: LossWeights = field(default_factory=LossWeights)
    perceptual: PerceptualConfig = field(default_factory=PerceptualConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    r1_weight: float = 0.0
    r1_every: int = 16
    ema_decay: float = 0.0
    samples_every_n_steps: int = 500
    samples_num: int = 4
    diagnostics_every_n_steps: int = 100
    verify_frozen: bool = True
    channels_last: bool = False
    ablation: AblationConfig = field(default_factory=AblationConfig)
    # Gain on the fresh generator's flow/mask predictor weights (Synthesis.scale_flow_init), applied before
    # init_from is read: 1 = LIA's init (upstream); 0 = identity warp at init (the CPU demo profile).
    flow_init_gain: float = 1.0


@dataclass
class StepOutput:
    """What a stage's `generator_step` returns.

    Attributes:
        losses: unweighted loss terms, named like the `LossWeights` fields.
        fake: B' x 3 x H x W images the generator is judged on by D (GAN_G).
        real: real images for the D step.
        d_fake: fakes for the D step (default: `fake`).
        samples: columns of the sample grid (each N x 3 x H x W), e.g. [source, driver, output].
    """

    losses: dict[str, torch.Tensor]
    fake: torch.Tensor
    real: torch.Tensor
    d_fake: torch.Tensor | None = None
    samples: list[torch.Tensor] = field(default_factory=list)


def rng_state() -> dict[str, Any]:
    """Global RNG states (torch, CUDA, numpy, python), in types `torch.load(weights_only=True)` accepts."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    numpy_state = (
        kind,
        torch.from_numpy(np.array(keys, dtype=np.uint32)),
        int(pos),
        int(has_gauss),
        float(gauss),
    )
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": numpy_state,
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy(), pos, has_gauss, gauss))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


# -- the base ----------------------------------------------------------------------------------------
class GANStage(L.LightningModule):
    """Manual-optimisation GAN training of the injected `Generator` (and optional discriminator).

    Args:
        generator: the EDTalk generator (already initialised from `init_from` if any).
        discriminator: image discriminator returning B x 1 logits, or None (no adversarial term).
        perceptual: the VGG pyramid loss (None when `loss.vgg` is 0).
        cfg: stage hyper-parameters (a `Config` dataclass instance).
        run_config: the resolved run configuration, saved into every checkpoint.
    """

    Config: ClassVar[type[GANStageConfig]] = GANStageConfig
    stage_name: ClassVar[str] = "gan"

    @classmethod
    def build(cls, cfg: Any, resume: bool = False) -> GANStage:
        """Instantiate from a composed run config (see `build_gan_stage`)."""
        return build_gan_stage(cls, cfg, resume)

    def __init__(
        self,
        generator: Generator,
        discriminator: nn.Module | None,
        perceptual: VGGPyramidLoss | None,
        cfg: GANStageConfig,
        run_config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.generator = generator
        self.discriminator = discriminator
        self.cfg = cfg
        self.run_config = run_config or {}
        if perceptual is None and cfg.loss.vgg > 0:
            raise ValueError(
                "loss.vgg > 0 needs a perceptual loss module (pass VGGPyramidLoss or set loss.vgg=0)"
            )
        self.perceptual = perceptual
        if perceptual is not None:
            _make_nonpersistent(perceptual)  # the fixed VGG stays out of our checkpoints
        self.trainable_names, self.frozen_names = apply_trainable(self.generator, cfg.trainable)
        self.generator_ema: Generator | None = None
        if cfg.ema_decay > 0:
            self.generator_ema = copy.deepcopy(self.generator).requires_grad_(False).eval()
        self._frozen_prints: dict[str, str] = {}
        self.sample_dir: Path | None = None

    # -- stage interface ---------------------------------------------------------------------------
    @classmethod
    def fresh_at_handoff(cls, cfg: GANStageConfig) -> tuple[str, ...]:
        """Generator tensors that stay freshly initialised when `init_from` is a stage-1 checkpoint
        (`edtalk.weights.handoff.init_generator`); none by default."""
        return ()

    def generator_step(self, batch: dict[str, torch.Tensor]) -> StepOutput:
        """Batch -> reconstructions and unweighted losses (implemented by each stage)."""
        raise NotImplementedError

    def validation_pairs(
        self, generator: Generator, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(prediction, target) for the validation metrics (implemented by each stage)."""
        raise NotImplementedError

    # -- helpers for stages -------------------------------------------------------------------------
    def reconstruction_losses(
        self, pred: torch.Tensor, target: torch.Tensor, prefix: str = ""
    ) -> dict[str, torch.Tensor]:
        """{prefix+"vgg", prefix+"l1"} of pred vs target (VGG skipped at weight 0)."""
        out = {f"{prefix}l1": (pred - target).abs().mean()}
        if self.perceptual is not None and self.cfg.loss.vgg > 0:
            out[f"{prefix}vgg"] = self.perceptual(pred, target)
        return out

    def weight(self, name: str) -> float:
        """Weight of loss term `name`; `a/b` terms use the weight of `b` (e.g. `cross/l1` -> `l1`)."""
        key = name.rsplit("/", 1)[-1]
        if key not in {f.name for f in fields(self.cfg.loss)}:
            raise KeyError(f"loss term {name!r} has no weight in {type(self.cfg.loss).__name__}")
        return float(getattr(self.cfg.loss, key))

    # -- optimisation ------------------------------------------------------------------------------
    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        params = [p for p in self.generator.parameters() if p.requires_grad]
        if not params:
            raise ValueError(f"trainable globs {self.cfg.trainable} select no generator parameter")
        o = self.cfg.optim
        k = world_lr_scale(self, o.scale_lr_with_world_size)
        opts: list[torch.optim.Optimizer] = [torch.optim.Adam(params, lr=k * o.g_lr, betas=_betas(o.g_betas))]
        if self.discriminator is not None:
            d_params = self.discriminator.parameters()
            opts.append(torch.optim.Adam(d_params, lr=k * o.d_lr, betas=_betas(o.d_betas)))
        return opts

    def _opts(self) -> list[Any]:
        opts = self.optimizers()
        return list(opts) if isinstance(opts, list | tuple) else [opts]

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        opts = self._opts()
        out = self._generator_update(batch, opts[0])
        if self.discriminator is not None:
            self._discriminator_update(out, opts[1])
        if self.generator_ema is not None:
            self._update_ema()
        self._periodic(out)

    def _generator_update(self, batch: dict[str, torch.Tensor], opt: Any) -> StepOutput:
        self.toggle_optimizer(opt)
        out = self.generator_step(batch)
        terms = dict(out.losses)
        if self.discriminator is not None and self.cfg.loss.gan > 0:
            terms["gan"] = g_nonsaturating(self.discriminator(out.fake))
        total = sum((self.weight(k) * v for k, v in terms.items()), out.fake.new_zeros(()))
        opt.zero_grad(set_to_none=True)
        self.manual_backward(total)
        self._clip_and_log_norm(opt, self.generator, "generator")
        opt.step()
        self.untoggle_optimizer(opt)
        logs = {f"train/{k}": v.detach() for k, v in terms.items()}
        logs["train/g_total"] = total.detach()
        self.log_dict(logs, prog_bar=False, batch_size=out.real.shape[0])
        self.log("loss", total.detach(), prog_bar=True, logger=False, batch_size=out.real.shape[0])
        return out

    def _discriminator_update(self, out: StepOutput, opt: Any) -> None:
        assert self.discriminator is not None
        self.toggle_optimizer(opt)
        fake = (out.d_fake if out.d_fake is not None else out.fake).detach()
        real = out.real.detach()
        do_r1 = self.cfg.r1_weight > 0 and self.global_step % self.cfg.r1_every == 0
        if do_r1:
            real = real.requires_grad_(True)
        real_logits = self.discriminator(real)
        loss = d_nonsaturating(real_logits, self.discriminator(fake))
        logs = {"train/d_loss": loss.detach()}
        if do_r1:
            r1 = r1_penalty(real_logits, real)
            loss = loss + self.cfg.r1_weight / 2 * r1 * self.cfg.r1_every
            logs["train/r1"] = r1.detach()
        opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        self._clip_and_log_norm(opt, self.discriminator, "discriminator")
        _step_uncounted(opt)
        self.untoggle_optimizer(opt)
        self.log_dict(logs, batch_size=real.shape[0])

    def _clip_and_log_norm(self, opt: Any, module: nn.Module, name: str) -> None:
        clip = self.cfg.optim.clip_grad_norm
        if clip:
            self.clip_gradients(opt, gradient_clip_val=clip, gradient_clip_algorithm="norm")
        if self._log_now():
            grads = [p.grad.detach().norm() for p in module.parameters() if p.grad is not None]
            if grads:
                self.log(f"grad_norm/{name}", torch.stack(grads).norm())

    def _log_now(self) -> bool:
        every = getattr(self._trainer, "log_every_n_steps", 1) or 1
        return self.global_step % max(1, every) == 0

    @torch.no_grad()
    def _update_ema(self) -> None:
        assert self.generator_ema is not None
        d = self.cfg.ema_decay
        for p_ema, p in zip(self.generator_ema.parameters(), self.generator.parameters()):
            if p.requires_grad:
                p_ema.lerp_(p.detach(), 1 - d)

    # -- periodic logging --------------------------------------------------------------------------
    def _periodic(self, out: StepOutput) -> None:
        step = self.global_step
        every = self.cfg.diagnostics_every_n_steps
        if every > 0 and step % every == 0:
            self.log_dict(bank_diagnostics(self.generator.banks), rank_zero_only=True)
        every = self.cfg.samples_every_n_steps
        if every > 0 and step % every == 0 and out.samples and self.trainer.is_global_zero:
            self.log_samples(out.samples, "train")

    @torch.no_grad()
    def log_samples(self, columns: list[torch.Tensor], tag: str) -> Path | None:
        """Grid with one row per sample and one column per image kind; PNG in the run dir + image loggers."""
        from torchvision.utils import make_grid

        from edtalk.io import to_uint8

        n = min(self.cfg.samples_num, columns[0].shape[0])
        rows = torch.stack([c[:n].detach().float() for c in columns], 1).flatten(0, 1)  # -> (N*K) x 3 x H x W
        grid = to_uint8(make_grid(rows, nrow=len(columns), padding=2, pad_value=-1))  # -> H' x W' x 3 uint8
        path = None
        if self.sample_dir is not None:
            from PIL import Image

            path = self.sample_dir / f"{tag}_step{self.global_step:07d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(grid.numpy()).save(path)
        for logger in self.loggers:
            if hasattr(logger, "log_image"):
                logger.log_image(key=f"samples/{tag}", images=[grid.numpy()], step=self.global_step)
        return path

    # -- validation --------------------------------------------------------------------------------
    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        gen = self.generator_ema if self.generator_ema is not None else self.generator
        pred, target = self.validation_pairs(gen, batch)
        terms = self.reconstruction_losses(pred, target)
        mse = (pred.clamp(-1, 1) - target).pow(2).flatten(1).mean(1)
        psnr = (10 * torch.log10(4.0 / mse.clamp_min(1e-10))).mean()  # peak-to-peak range 2 -> peak^2 = 4
        loss = sum((self.weight(k) * v for k, v in terms.items()), pred.new_zeros(()))
        logs = {f"val/{k}": v for k, v in terms.items()} | {"val/loss": loss, "val/psnr": psnr}
        self.log_dict(logs, sync_dist=True, batch_size=pred.shape[0])
        if batch_idx == 0 and self.trainer.is_global_zero and not self.trainer.sanity_checking:
            self.log_samples([batch_source(batch), target, pred], "val")

    # -- lifecycle ---------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        if self.cfg.channels_last:
            to_channels_last(self)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if isinstance(batch, dict):
            batch = images_to_float(batch)  # uint8 from the DataModules -> float [-1, 1], on the device
        if self.cfg.channels_last and isinstance(batch, dict):
            return {
                k: v.contiguous(memory_format=torch.channels_last) if _is_image(v) else v
                for k, v in batch.items()
            }
        return batch

    def on_train_start(self) -> None:
        if self.cfg.verify_frozen:
            self._frozen_prints = fingerprint(self.generator, self.frozen_names)

    def on_train_end(self) -> None:
        self.verify_frozen()

    def verify_frozen(self) -> None:
        """Raise if any frozen parameter changed (bit-exact) since training started."""
        if not self._frozen_prints:
            return
        now = fingerprint(self.generator, self._frozen_prints)
        changed = [k for k, v in now.items() if v != self._frozen_prints[k]]
        if changed:
            raise RuntimeError(f"frozen parameters changed during training: {changed[:5]} ({len(changed)})")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["edtalk"] = {
            "version": 1,
            "stage": self.stage_name,
            "generator": self.generator.cfg.to_dict(),
            "ema": self.generator_ema is not None,
            "config": self.run_config,
            "rng": rng_state(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        rng = checkpoint.get("edtalk", {}).get("rng")
        if rng is not None:
            set_rng_state(rng)


def to_channels_last(module: nn.Module) -> nn.Module:
    """Every 4-D parameter and buffer of `module` (the conv weights) in the channels_last layout, in place.

    `Module.to(memory_format=torch.channels_last)` raises on tensors of another rank, and the generator
    holds 5-D weights (the modulated convs' 1 x Cout x Cin x k x k); those, and all others, stay as they are.
    """
    with torch.no_grad():
        for t in [*module.parameters(), *module.buffers()]:
            if t.dim() == 4:
                t.data = t.data.contiguous(memory_format=torch.channels_last)
    return module


def _step_uncounted(opt: Any) -> None:
    """Step a LightningOptimizer without advancing `global_step`: one training step = one G + one D update.

    Lightning counts every manual optimiser step; without this, `max_steps`, checkpoint and logging
    cadences would count each batch twice.
    """
    before, after = opt._on_before_step, opt._on_after_step
    opt._on_before_step = opt._on_after_step = _nothing
    try:
        opt.step()
    finally:
        opt._on_before_step, opt._on_after_step = before, after


def _nothing() -> None:
    return None


def _betas(b: list[float]) -> tuple[float, float]:
    if len(b) != 2:
        raise ValueError(f"Adam betas need two values, got {b}")
    return float(b[0]), float(b[1])


def _is_image(v: Any) -> bool:
    return isinstance(v, torch.Tensor) and v.dim() == 4 and v.shape[1] == 3


def batch_source(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The identity image of a batch ("source" or "source_a")."""
    return batch["source"] if "source" in batch else batch["source_a"]


def _make_nonpersistent(module: nn.Module) -> None:
    """Turn a frozen module's parameters into non-persistent buffers (not saved, not optimised, not synced)."""
    for m in module.modules():
        for name, p in list(m._parameters.items()):
            if p is None:
                continue
            del m._parameters[name]
            m.register_buffer(name, p.detach().requires_grad_(False), persistent=False)


# -- construction from a run config -------------------------------------------------------------------
def build_gan_stage(cls: type[GANStage], cfg: Any, resume: bool = False) -> GANStage:
    """Make the generator (+ init_from), discriminator and perceptual loss from a composed run config.

    Args:
        cls: the stage class.
        cfg: the composed omegaconf run config (sections generator, discriminator, init_from, init, model).
        resume: when True the weights come from the Lightning checkpoint, so `init_from` is not read.
    """
    from omegaconf import OmegaConf

    from edtalk.config import GeneratorConfig
    from edtalk.weights.handoff import init_discriminator, init_generator

    model_cfg = OmegaConf.to_object(cfg.model)
    assert isinstance(model_cfg, GANStageConfig)
    gcfg = GeneratorConfig.from_dict(OmegaConf.to_container(cfg.generator))  # type: ignore[arg-type]
    gen = Generator(ablated(gcfg, model_cfg.ablation))
    if model_cfg.flow_init_gain != 1.0:
        gen.synthesis.scale_flow_init(model_cfg.flow_init_gain)  # init_from / resume overwrite it
    disc = build_discriminator(cfg) if cfg.discriminator.enabled else None
    if cfg.init_from and not resume:
        obj = init_generator(gen, cfg.init_from, bool(cfg.init.ema), cls.fresh_at_handoff(model_cfg))
        if disc is not None and cfg.init.discriminator:
            init_discriminator(disc, obj, cfg.init_from)
    perceptual = None
    if model_cfg.loss.vgg > 0:
        p = model_cfg.perceptual
        perceptual = VGGPyramidLoss(path=p.path, init=p.init, width=p.width)  # type: ignore[arg-type]
    run_config = OmegaConf.to_container(cfg, resolve=True)
    return cls(gen, disc, perceptual, model_cfg, run_config=run_config)  # type: ignore[arg-type]


def ablated(gcfg: Any, ablation: AblationConfig) -> Any:
    """The generator config with the ablation switches applied (a switch only ever turns a part off)."""
    if ablation.no_orthogonality:
        gcfg = dataclasses.replace(gcfg, orthogonal_banks=False)
    if ablation.no_eem:
        gcfg = dataclasses.replace(gcfg, eem=False)
    return gcfg


def build_discriminator(cfg: Any) -> nn.Module:
    """The StyleGAN2 discriminator at the generator's image size."""
    from edtalk.nn.discriminator import Discriminator

    d = cfg.discriminator
    return Discriminator(int(cfg.generator.size), float(d.channel_multiplier), int(d.max_channels))
