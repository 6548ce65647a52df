"""Stage 3, expression decouple by self-reconstruction complementary learning (paper Sec. 3.3; spec §5.3).

Upstream never released this trainer; this is the objective we implement, from the paper's
description ("the expression latent must explain what mouth and pose cannot", learned by
self-reconstruction on emotional clips) and the author's advice in issue #11 (train ELN, the
expression bank and EEM first, without the FRNet/DECA losses; optionally fine-tune the decoder after).

Batch (EmotionDataModule): a source frame s and a target frame t of the same person (t from an
emotional clip). With alpha_c = head_c(fc(E(t).w_a)) and Q the joint QR basis [Q_m | Q_p | Q_e]:

    mouth+pose only:  x_mp = G(E(s); w_a(s) + alpha_m Q_m^T + alpha_p Q_p^T)                 (no EEM)
    full:             x    = G(EEM(E(s), e); w_a(s) + alpha_m Q_m^T + alpha_p Q_p^T + e),   e = alpha_e Q_e^T

    L = w_vgg VGG(x, t) + w_l1 |x - t|_1 + w_gan GAN_G(x)                       (the paper's objective)
        [+ w_complementary mean(|x - t| * r / mean(r)),   r = stopgrad(mean_rgb |x_mp - t|)]
        [+ w_decorrelation ||corr(alpha_e, [alpha_m, alpha_p])||_F^2 / 10]
        [+ w_invariance coefficient_invariance(alpha_e(t2), alpha_e(t)),   t2 another frame of t's clip]

* Pairs (EmotionDataModule, `datamodules.samplers.EmotionSampler`): s from a *neutral* clip of the
  speaker, t from an *emotional* clip of the same speaker (the only MEAD pairing upstream released),
  so the expression branch must explain the emotion that mouth and pose of t cannot; HDTF clips
  (no label) as two frames of one clip.
* Complementarity is structural: the mouth/pose navigators, fc, the mouth/pose bank and (by default)
  the decoder and encoder are frozen from stage 2, so gradients reach only ELN (`navigator.exp_fc`),
  the expression bank and EEM; because QR is column-ordered, Q_e is orthogonal to Q_m and Q_p and
  the stage-2 mouth/pose directions are untouched.
* Two terms of our own, off by default (the paper has neither): `model.loss.complementary` weights
  each pixel by the residual r that mouth+pose cannot reconstruct (the stage-2 error map), and
  `model.loss.decorrelation` (upstream's unused `discor`, batch-level) keeps alpha_e from re-encoding
  the mouth/pose weights. Either costs an extra term; the complementary one an extra render.
* `model.loss.invariance` (ours, off by default; needs `data.second_target=true`): the expression
  weights of two frames of one emotional clip (same emotion, other mouth opening and head pose) must
  agree, as a fraction of their spread over the batch (`edtalk.losses.coefficient_invariance`, the
  mouth_pose stage's term applied to the expression head). The fresh expression head is an affine read
  of the motion code that already encodes mouth and pose, so without it the expression weights read
  both (measured in experiments/demo/README.md, section "Expression invariance"). Costs one encoder pass.
* `model.loss.emotion` (ours, off by default; `GANStage.emotion_term`): cross-entropy of a linear read of
  the target's expression weights (10 -> the 8 MEAD labels, trained with the generator's optimiser) against
  the target clip's emotion label (unlabelled clips ignored). Self-reconstruction alone leaves the emotion
  out of alpha_e on the built-in data within a CPU budget (probe at the floor, renders unchanged by the
  emotion vectors; experiments/demo/README.md, "Emotion in the expression group"); the label makes the
  expression weights separate the emotions, and the reconstruction then teaches the bank and EEM what each
  one looks like. With `data.neutral_targets=true` neutral clips are targets too (the neutral vector).
* D sees t vs x. Phase 2 (optional, the author's advice in issue #11): `model.trainable=
  '[navigator.exp_fc.*,banks.expression,synthesis.*]'` with init_from the phase-1 checkpoint
  fine-tunes the decoder too.

Emotion labels are not used by the paper's loss (they drive sampling and the evaluation of emotion
accuracy); our `model.loss.emotion` uses them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch

from edtalk.losses import coefficient_invariance, decorrelation
from edtalk.nn.generator import Generator
from edtalk.stages.base import GANStage, GANStageConfig, LossWeights, StepOutput

PHASE1_TRAINABLE = ["navigator.exp_fc.*", "banks.expression", "synthesis.fineadainresblock.*"]


@dataclass
class ExpressionLoss(LossWeights):
    """Loss weights; `complementary`, `decorrelation` and `invariance` are our options (off: the paper's
    objective)."""

    complementary: float = 0.0
    decorrelation: float = 0.0
    invariance: float = 0.0


@dataclass
class ExpressionConfig(GANStageConfig):
    trainable: list[str] = field(default_factory=lambda: list(PHASE1_TRAINABLE))
    loss: ExpressionLoss = field(default_factory=ExpressionLoss)


def expression_reconstruct(
    gen: Generator, source: torch.Tensor, target: torch.Tensor, with_base: bool
) -> dict[str, torch.Tensor]:
    """{"out": full render, "base": mouth+pose-only render (no grad, if asked), "alpha_*": weights}."""
    if not gen.cfg.has_expression:
        raise ValueError("the expression stage needs generator.variant=full")
    enc = gen.encode(source)
    alpha = gen.coefficients(target)
    q = gen.basis()
    w, e = gen.latent(enc.w_a, alpha, q)
    out = {"out": gen.render(enc, w, e)} | {f"alpha_{k}": v for k, v in alpha.items()}
    if with_base:
        with torch.no_grad():
            w_mp, _ = gen.latent(enc.w_a, {"mouth": alpha["mouth"], "pose": alpha["pose"]}, q)
            out["base"] = gen.render(enc, w_mp)
    return out


class ExpressionStage(GANStage):
    """Self-reconstruction complementary learning of the expression branch (EmotionDataModule batches)."""

    Config: ClassVar[type[GANStageConfig]] = ExpressionConfig
    stage_name: ClassVar[str] = "expression"

    def emotion_code_dim(self) -> int:
        """`model.loss.emotion` reads the expression weights alpha_e here."""
        return self.generator.cfg.exp_dim

    def generator_step(self, batch: dict[str, torch.Tensor]) -> StepOutput:
        src, tgt = batch["source"], batch["target"]
        loss_w = self.cfg.loss
        assert isinstance(loss_w, ExpressionLoss)
        r = expression_reconstruct(self.generator, src, tgt, with_base=loss_w.complementary > 0)
        fake, base = r["out"], r.get("base")
        losses = self.reconstruction_losses(fake, tgt, boxes=self.target_boxes(batch))
        if base is not None:
            resid = (base - tgt).abs().mean(1, keepdim=True)  # -> B x 1 x H x W stage-2 error map
            focus = resid / resid.mean((2, 3), keepdim=True).clamp_min(1e-6)
            losses["complementary"] = ((fake - tgt).abs() * focus).mean()
        if loss_w.decorrelation > 0:
            losses["decorrelation"] = decorrelation(
                r["alpha_exp"], torch.cat([r["alpha_mouth"], r["alpha_pose"]], 1)
            )
        if loss_w.invariance > 0:
            if "target2" not in batch:
                raise ValueError(
                    "model.loss.invariance needs a second frame of each target clip: set data.second_target=true"
                )
            alpha2 = self.generator.coefficients(batch["target2"])["exp"]
            losses["invariance"] = coefficient_invariance(alpha2, r["alpha_exp"])
        losses |= self.emotion_term(r["alpha_exp"], batch)
        if base is None:
            return StepOutput(losses, fake=fake, real=tgt, samples=[src, tgt, fake])
        with torch.no_grad():
            self.log("train/base_l1", (base - tgt).abs().mean(), batch_size=src.shape[0])
        return StepOutput(losses, fake=fake, real=tgt, samples=[src, tgt, base, fake])

    def validation_pairs(
        self, generator: Generator, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return expression_reconstruct(generator, batch["source"], batch["target"], False)["out"], batch[
            "target"
        ]
