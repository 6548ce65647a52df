"""The GAN stage base: Lightning manual optimisation with one generator step and one discriminator step.

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

What is not GAN-specific (uint8 -> float transfer, sample grids, checkpoint payload and RNG, the
frozen-parameter guard, PSNR) is `edtalk.stages.stage.EDTalkStage`, shared with `SupervisedStage`.
The modules are injected: `build(cfg)` makes them (`edtalk.stages.builders`) from a composed run
config; tests pass their own.

One global step per G + D update (a documented shim, `step_without_counting`): Lightning counts every
manual optimiser step, so the D step is taken without its step hooks and `trainer.global_step`
(`max_steps`, checkpoint / logging / sample cadences) counts batches, as the original trainers do.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import torch
from torch import nn

from edtalk.config import check_optim
from edtalk.losses import (
    EmotionRead,
    VGGPyramidLoss,
    bank_diagnostics,
    d_nonsaturating,
    emotion_cross_entropy,
    g_nonsaturating,
    r1_penalty,
    region_l1,
)
from edtalk.nn.emotion import EMOTIONS
from edtalk.nn.generator import Generator
from edtalk.stages.builders import (
    AblationConfig,
    PerceptualConfig,
    ablated,
    build_discriminator,
    build_generator,
    build_perceptual,
)
from edtalk.stages.params import world_lr_scale
from edtalk.stages.stage import (
    EDTalkStage,
    adam_betas,
    check_schedule,
    keep_out_of_checkpoints,
    psnr,
    rng_state,
    set_rng_state,
    step_schedule,
)

__all__ = [  # re-exported: the GAN stages' config parts and the builders have been importable from here
    "AblationConfig",
    "PerceptualConfig",
    "ablated",
    "build_discriminator",
    "rng_state",
    "set_rng_state",
]


# -- hyper-parameters ------------------------------------------------------------------------------
@dataclass
class OptimConfig:
    """Adam settings; defaults are the upstream trainers' (spec §5.0)."""

    g_lr: float = 0.002 * 4 / 5
    g_betas: list[float] = field(default_factory=lambda: [0.0, 0.99 ** (4 / 5)])
    d_lr: float = 0.002 * 16 / 17
    d_betas: list[float] = field(default_factory=lambda: [0.0, 0.99 ** (16 / 17)])
    clip_grad_norm: float | None = None
    scale_lr_with_world_size: bool = False  # DDP policy (edtalk.stages.params.world_lr_scale)
    schedule: str = "constant"  # or "cosine": G's and D's rates x (1 + cos(pi t / trainer.max_steps)) / 2

    def __post_init__(self) -> None:
        check_optim(
            {"g_lr": self.g_lr, "d_lr": self.d_lr}, {"g_betas": self.g_betas, "d_betas": self.d_betas}
        )
        check_schedule(self.schedule)


@dataclass
class LossWeights:
    """Weight of each loss term (a term with weight 0 is skipped where the stage can skip it)."""

    vgg: float = 1.0
    l1: float = 1.0
    gan: float = 1.0
    # L1 inside the target's mouth box (`edtalk.losses.region`); not in the original recipe (0): the CPU demo
    # profile uses it where no pretrained VGG gives the mouth its weight
    mouth: float = 0.0
    # ours, not in the paper (0): cross-entropy of a linear read (`edtalk.losses.EmotionRead`) of the driver's
    # code against its clip's emotion label; the code is the encoder latent in stage 1, the expression
    # weights in the expression stage (`GANStage.emotion_code_dim`); needs labelled clips
    emotion: float = 0.0


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


# -- the base ----------------------------------------------------------------------------------------
class GANStage(EDTalkStage):
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
    reads_emotion: ClassVar[bool] = False  # whether generator_step feeds `emotion_term` (model.loss.emotion)

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
        super().__init__(run_config)
        self.automatic_optimization = False
        self.generator = generator
        self.discriminator = discriminator
        self.cfg = cfg
        if perceptual is None and cfg.loss.vgg > 0:
            raise ValueError(
                "loss.vgg > 0 needs a perceptual loss module (pass VGGPyramidLoss or set loss.vgg=0)"
            )
        self.perceptual = perceptual
        if perceptual is not None:
            keep_out_of_checkpoints(perceptual)  # the fixed VGG stays out of our checkpoints
        self.trainable_names = self.freeze_except(self.generator, cfg.trainable, cfg.verify_frozen)
        self.emotion_read: EmotionRead | None = None
        if cfg.loss.emotion > 0:  # ours: trained with the generator's optimiser, not part of the generator
            if not self.reads_emotion:
                raise ValueError(
                    f"model.loss.emotion={cfg.loss.emotion}: the {self.stage_name} stage has no emotion read "
                    "(reconstruct and expression have); set model.loss.emotion=0"
                )
            self.emotion_read = EmotionRead(self.emotion_code_dim(), len(EMOTIONS))
        self.generator_ema: Generator | None = None
        if cfg.ema_decay > 0:
            self.generator_ema = copy.deepcopy(self.generator).requires_grad_(False).eval()

    # -- stage interface ---------------------------------------------------------------------------
    @classmethod
    def fresh_at_handoff(cls, cfg: GANStageConfig) -> tuple[str, ...]:
        """Generator tensors that stay freshly initialised when `init_from` is a stage-1 checkpoint
        (`edtalk.weights.handoff.init_generator`); none by default."""
        return ()

    def emotion_code_dim(self) -> int:
        """Width of the code `model.loss.emotion` reads (stage 1: the encoder latent)."""
        return self.generator.cfg.style_dim

    def emotion_term(self, code: torch.Tensor, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """{"emotion": cross-entropy of the read of `code`} when `model.loss.emotion` > 0, else {}."""
        if self.emotion_read is None:
            return {}
        return {"emotion": emotion_cross_entropy(self.emotion_read(code), batch.get("emotion"))}

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
        self, pred: torch.Tensor, target: torch.Tensor, prefix: str = "", boxes: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """{prefix+"vgg", prefix+"l1"[, prefix+"mouth"]} of pred vs target (VGG skipped at weight 0; the
        mouth-region L1 computed at `loss.mouth` > 0 from `boxes`, the targets' B x 4 mouth boxes)."""
        out = {f"{prefix}l1": (pred - target).abs().mean()}
        if self.perceptual is not None and self.cfg.loss.vgg > 0:
            out[f"{prefix}vgg"] = self.perceptual(pred, target)
        if self.cfg.loss.mouth > 0:
            if boxes is None:
                raise ValueError(
                    f"model.loss.mouth={self.cfg.loss.mouth} needs the targets' mouth boxes, which this "
                    f"{self.stage_name} batch does not carry (the shard DataModules add them); set model.loss.mouth=0"
                )
            out[f"{prefix}mouth"] = region_l1(pred, target, boxes)
        return out

    def weight(self, name: str) -> float:
        """Weight of loss term `name`; `a/b` terms use the weight of `b` (e.g. `cross/l1` -> `l1`)."""
        key = name.rsplit("/", 1)[-1]
        if key not in {f.name for f in fields(self.cfg.loss)}:
            raise KeyError(f"loss term {name!r} has no weight in {type(self.cfg.loss).__name__}")
        return float(getattr(self.cfg.loss, key))

    # -- optimisation ------------------------------------------------------------------------------
    def generator_parameters(self) -> list[nn.Parameter]:
        """What the G optimiser updates: the trainable generator parameters and the emotion read."""
        read = list(self.emotion_read.parameters()) if self.emotion_read is not None else []
        return [p for p in self.generator.parameters() if p.requires_grad] + read

    def extra_param_groups(self, lr_scale: float) -> list[dict[str, Any]]:
        """Optimiser parameter groups beside the generator's, stepped by the G optimiser (none here)."""
        return []

    def configure_optimizers(self) -> Any:
        """Adam for G (+ its extra groups) and for D; with `model.optim.schedule=cosine` a rate schedule for each
        (`step_schedule`, stepped once per batch in `training_step`)."""
        params = self.generator_parameters()
        if not any(p.requires_grad for p in self.generator.parameters()):
            raise ValueError(f"trainable globs {self.cfg.trainable} select no generator parameter")
        o = self.cfg.optim
        k = world_lr_scale(self, o.scale_lr_with_world_size)
        g_betas = adam_betas(o.g_betas, "model.optim.g_betas")
        groups = [{"params": params}, *self.extra_param_groups(k)]
        opts: list[torch.optim.Optimizer] = [torch.optim.Adam(groups, lr=k * o.g_lr, betas=g_betas)]
        if self.discriminator is not None:
            d_params = self.discriminator.parameters()
            d_betas = adam_betas(o.d_betas, "model.optim.d_betas")
            opts.append(torch.optim.Adam(d_params, lr=k * o.d_lr, betas=d_betas))
        schedules = [step_schedule(opt, o.schedule, self) for opt in opts]
        if schedules[0] is None:
            return opts
        return opts, schedules

    def _opts(self) -> list[Any]:
        return _listed(self.optimizers())

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        opts = self._opts()
        out = self._generator_update(batch, opts[0])
        if self.discriminator is not None:
            self._discriminator_update(out, opts[1])
        if self.generator_ema is not None:
            self._update_ema()
        for schedule in _listed(self.lr_schedulers()):  # none at the default constant rate
            schedule.step()
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
        step_without_counting(opt)  # one global step per G + D update
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

    def target_boxes(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """Mouth boxes (B' x 4) of the batch's targets in `validation_pairs`' order, for the `loss.mouth` term;
        None when the batch carries none."""
        return batch.get("target_box")

    # -- validation --------------------------------------------------------------------------------
    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        gen = self.generator_ema if self.generator_ema is not None else self.generator
        pred, target = self.validation_pairs(gen, batch)
        terms = self.reconstruction_losses(pred, target, boxes=self.target_boxes(batch))
        loss = sum((self.weight(k) * v for k, v in terms.items()), pred.new_zeros(()))
        logs = {f"val/{k}": v for k, v in terms.items()} | {"val/loss": loss, "val/psnr": psnr(pred, target)}
        self.log_dict(logs, sync_dist=True, batch_size=pred.shape[0])
        if batch_idx == 0 and self.trainer.is_global_zero and not self.trainer.sanity_checking:
            self.log_samples([batch_source(batch), target, pred], "val")

    # -- lifecycle ---------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        if self.cfg.channels_last:
            to_channels_last(self)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        batch = super().on_after_batch_transfer(batch, dataloader_idx)  # uint8 -> float [-1, 1]
        if self.cfg.channels_last and isinstance(batch, dict):
            return {
                k: v.contiguous(memory_format=torch.channels_last) if _is_image(v) else v
                for k, v in batch.items()
            }
        return batch

    def checkpoint_payload(self) -> dict[str, Any]:
        """The generator config (the next stage and `edtalk.weights` rebuild it) and whether EMA is on."""
        return {"generator": self.generator.cfg.to_dict(), "ema": self.generator_ema is not None}


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


def step_without_counting(opt: Any) -> None:
    """Step a LightningOptimizer without advancing `global_step`: the one-global-step-per-G+D-update shim.

    Contract: one training step = one G update + one D update, so `trainer.max_steps`, checkpoint,
    logging and sample cadences count batches (as the original trainers' iteration counters do).
    Lightning's manual optimisation counts every `LightningOptimizer.step` through the private hooks
    `_on_before_step` / `_on_after_step`; this steps the D optimiser with both hooks disabled. It relies
    on those private names, hence the upper bound on `lightning` in constraints.txt; a release without
    them fails here, naming the fix, and tests/stages/test_stages.py checks the step count.
    """
    if not (hasattr(opt, "_on_before_step") and hasattr(opt, "_on_after_step")):
        raise RuntimeError(
            f"{type(opt).__name__} has no _on_before_step/_on_after_step hooks: this lightning release "
            "changed manual optimisation; update edtalk.stages.base.step_without_counting and the "
            "lightning bound in constraints.txt"
        )
    before, after = opt._on_before_step, opt._on_after_step
    opt._on_before_step = opt._on_after_step = _nothing
    try:
        opt.step()
    finally:
        opt._on_before_step, opt._on_after_step = before, after


def _nothing() -> None:
    return None


def _is_image(v: Any) -> bool:
    return isinstance(v, torch.Tensor) and v.dim() == 4 and v.shape[1] == 3


def batch_source(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The identity image of a batch ("source" or "source_a")."""
    return batch["source"] if "source" in batch else batch["source_a"]


# -- construction from a run config -------------------------------------------------------------------
def build_gan_stage(cls: type[GANStage], cfg: Any, resume: bool = False) -> GANStage:
    """Make the generator (+ init_from), discriminator and perceptual loss from a composed run config.

    Args:
        cls: the stage class.
        cfg: the composed omegaconf run config (sections generator, discriminator, init_from, init, model).
        resume: when True the weights come from the Lightning checkpoint, so `init_from` is not read.
    """
    from omegaconf import OmegaConf

    from edtalk.weights.handoff import init_discriminator, init_generator

    model_cfg = OmegaConf.to_object(cfg.model)
    assert isinstance(model_cfg, GANStageConfig)
    gen = build_generator(cfg, model_cfg.ablation, model_cfg.flow_init_gain)
    disc = build_discriminator(cfg) if cfg.discriminator.enabled else None
    if cfg.init_from and not resume:
        obj = init_generator(gen, cfg.init_from, bool(cfg.init.ema), cls.fresh_at_handoff(model_cfg))
        if disc is not None and cfg.init.discriminator:
            init_discriminator(disc, obj, cfg.init_from)
    perceptual = build_perceptual(model_cfg.perceptual, model_cfg.loss.vgg)
    run_config = OmegaConf.to_container(cfg, resolve=True)
    return cls(gen, disc, perceptual, model_cfg, run_config=run_config)  # type: ignore[arg-type]


def _listed(items: Any) -> list[Any]:
    """Lightning's optimizers() / lr_schedulers(): None, one object or a list -> a list."""
    if items is None:
        return []
    return list(items) if isinstance(items, list | tuple) else [items]
