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

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from edtalk.losses import PixelEmotionCritic, coefficient_invariance, decorrelation, pixel_emotion_terms
from edtalk.nn.emotion import EMOTIONS, emotion_anchor_table
from edtalk.nn.generator import Generator
from edtalk.nn.layers import EqualLinear
from edtalk.stages.base import GANStage, GANStageConfig, LossWeights, StepOutput

PHASE1_TRAINABLE = ["navigator.exp_fc.*", "banks.expression", "synthesis.fineadainresblock.*"]


@dataclass
class ExpressionLoss(LossWeights):
    """Loss weights; `complementary`, `decorrelation` and `invariance` are our options (off: the paper's
    objective)."""

    complementary: float = 0.0
    decorrelation: float = 0.0
    invariance: float = 0.0
    anchor: float = 1.0
    emotion_pixels: float = 0.0


@dataclass
class ExpressionConfig(GANStageConfig):
    """`model:` of the expression stage.

    Attributes:
        exp_init: "random" (the paper: ELN starts at its initialisation) or "discriminant" (ours): before the
            first step, ELN is set to the emotion-discriminant directions of the motion code fc(E(t)) of
            `exp_init_batches` labelled training batches (`discriminant_directions`); "anchors" (ours, with
            `exp_anchor`): ELN starts at the least-squares read of the anchors from that code
            (`anchor_read`).
        exp_init_batches: training batches the discriminant directions are estimated on.
        exp_anchor: > 0 (ours): each labelled target's expression weights are pulled (`loss.anchor`, squared
            error) to a fixed anchor of its emotion, `exp_anchor` x the unit vector of its MEAD label id
            (neutral: zero), so the emotions' weights lie apart by construction.
        exp_teacher: with `exp_anchor`, render labelled targets from their anchors (teacher forcing): the
            bank and EEM learn what each anchor looks like while ELN learns to find it.
        critic_lr: Adam learning rate of the pixel emotion critic of `loss.emotion_pixels` (ours): a small
            CNN (`edtalk.losses.PixelEmotionCritic`) that learns the labels from the real targets during
            the stage and scores the renders' emotion, in place of the paper's pretrained FRNet.
    """

    trainable: list[str] = field(default_factory=lambda: list(PHASE1_TRAINABLE))
    loss: ExpressionLoss = field(default_factory=ExpressionLoss)
    exp_init: str = "random"
    exp_init_batches: int = 128
    exp_anchor: float = 0.0
    exp_teacher: bool = False
    critic_lr: float = 1e-3

    def __post_init__(self) -> None:
        if self.exp_init not in ("random", "discriminant", "anchors"):
            raise ValueError(
                f"model.exp_init={self.exp_init!r}: use 'random' (the paper), 'discriminant' or 'anchors'"
            )
        if self.exp_init == "anchors" and self.exp_anchor <= 0:
            raise ValueError("model.exp_init=anchors needs model.exp_anchor > 0 (the anchors it reads)")


def emotion_anchors(labels: torch.Tensor | None, dim: int, scale: float) -> torch.Tensor | None:
    """B x dim anchors of the labels (`model.exp_anchor`): scale x one-hot of the MEAD id, zero for neutral
    and for unlabelled (-1) clips; None when `scale` is 0."""
    if scale <= 0:
        return None
    if labels is None:
        raise ValueError("model.exp_anchor needs the targets' emotion labels (EmotionDataModule adds them)")
    if dim < len(EMOTIONS):
        raise ValueError(f"model.exp_anchor needs generator.exp_dim >= {len(EMOTIONS)}; it is {dim}")
    table = emotion_anchor_table(dim, scale).to(labels.device)  # -> 8 x dim
    return table[labels.clamp_min(0)] * (labels >= 0)[:, None]  # unlabelled (-1): zero


def discriminant_directions(
    codes: torch.Tensor, labels: torch.Tensor, shrink: float = 0.01
) -> tuple[torch.Tensor, torch.Tensor]:
    """(k x D directions, D mean) separating the labelled classes of `codes` (N x D): Fisher's linear
    discriminants, k = classes - 1, on the within-class covariance shrunk towards its mean variance, each
    direction scaled to unit within-class standard deviation, strongest first. The shrinkage stays small:
    the emotion lies in low-variance directions of the motion code, which a larger one drowns (on the
    built-in data, held-out speakers read through the three directions at 0.72 / 0.63 / 0.50 with
    shrinkage 0.01 / 0.1 / 0.3; experiments/demo/README.md)."""
    x, y = codes.double(), labels
    classes = [c for c in y.unique().tolist() if c >= 0]
    if len(classes) < 2:
        raise ValueError(
            f"model.exp_init=discriminant needs labelled targets of at least two emotions; got {classes}"
        )
    x, y = x[y >= 0], y[y >= 0]
    mean = x.mean(0)
    within = torch.zeros(x.shape[1], x.shape[1], dtype=x.dtype)
    between = torch.zeros_like(within)
    for c in classes:
        xc = x[y == c]
        d = xc - xc.mean(0)
        within += d.t() @ d
        m = (xc.mean(0) - mean)[:, None]
        between += len(xc) * (m @ m.t())
    within, between = within / len(x), between / len(x)
    eye = torch.eye(x.shape[1], dtype=x.dtype)
    within = (1 - shrink) * within + shrink * within.diagonal().mean() * eye
    vals, vecs = torch.linalg.eigh(within)
    white = vecs @ torch.diag(vals.clamp_min(1e-12).rsqrt()) @ vecs.t()
    _, v = torch.linalg.eigh(white @ between @ white)
    dirs = (white @ v[:, -(len(classes) - 1) :].flip(1)).t()  # -> k x D, unit within-class std
    return dirs.float(), mean.float()


def expression_reconstruct(
    gen: Generator,
    source: torch.Tensor,
    target: torch.Tensor,
    with_base: bool,
    exp: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """{"out": full render, "base": mouth+pose-only render (no grad, if asked), "alpha_*": weights};
    `exp` maps the target's expression weights to the ones rendered (`model.exp_anchor`'s teacher forcing)."""
    if not gen.cfg.has_expression:
        raise ValueError("the expression stage needs generator.variant=full")
    enc = gen.encode(source)
    alpha = gen.coefficients(target)
    q = gen.basis()
    rendered = alpha if exp is None else alpha | {"exp": exp(alpha["exp"])}
    w, e = gen.latent(enc.w_a, rendered, q)
    out = {"out": gen.render(enc, w, e)} | {f"alpha_{k}": v for k, v in alpha.items()}
    if with_base:
        with torch.no_grad():
            w_mp, _ = gen.latent(enc.w_a, {"mouth": alpha["mouth"], "pose": alpha["pose"]}, q)
            out["base"] = gen.render(enc, w_mp)
    return out


def anchor_read(
    codes: torch.Tensor, anchors: torch.Tensor, shrink: float = 0.01
) -> tuple[torch.Tensor, torch.Tensor]:
    """(K x D weights, K bias): the ridge least-squares read of `anchors` (N x K) from `codes` (N x D), the
    ridge `shrink` x the codes' mean variance (`model.exp_init=anchors`)."""
    x, t = codes.double(), anchors.double()
    mx, mt = x.mean(0), t.mean(0)
    xc = x - mx
    gram = xc.t() @ xc / len(x)
    gram += shrink * gram.diagonal().mean() * torch.eye(x.shape[1], dtype=x.dtype)
    w = torch.linalg.solve(gram, xc.t() @ (t - mt) / len(x)).t()  # -> K x D
    return w.float(), (mt - w @ mx).float()


def set_affine(layer: EqualLinear, weight: torch.Tensor, bias: torch.Tensor) -> None:
    """Make an equalised-lr linear layer compute x @ weight.T + bias."""
    with torch.no_grad():
        layer.weight.copy_(weight / layer.scale)
        if layer.bias is not None:
            layer.bias.copy_(bias / layer.lr_mul)


def gathered(module: GANStage, t: torch.Tensor) -> torch.Tensor:
    """`t` of every rank, concatenated along the first axis (`t` itself on one process), on the CPU."""
    out = module.all_gather(t)
    assert isinstance(out, torch.Tensor)
    return out.reshape(-1, *t.shape[1:]).cpu()


class ExpressionStage(GANStage):
    """Self-reconstruction complementary learning of the expression branch (EmotionDataModule batches)."""

    Config: ClassVar[type[GANStageConfig]] = ExpressionConfig
    stage_name: ClassVar[str] = "expression"
    reads_emotion: ClassVar[bool] = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        assert isinstance(self.cfg, ExpressionConfig)
        if self.cfg.exp_init != "random" and self.generator.exp_encoder is not None:
            raise ValueError(
                f"model.exp_init={self.cfg.exp_init} initialises ELN (navigator.exp_fc), which a generator "
                "with generator.exp_encoder=cnn does not have: set model.exp_init=random"
            )
        self.emotion_critic: PixelEmotionCritic | None = None
        if self.cfg.loss.emotion_pixels > 0:
            self.emotion_critic = PixelEmotionCritic(len(EMOTIONS))

    def extra_param_groups(self, lr_scale: float) -> list[dict[str, Any]]:
        """The pixel emotion critic (`loss.emotion_pixels`) at its own rate, `model.critic_lr`."""
        if self.emotion_critic is None:
            return []
        assert isinstance(self.cfg, ExpressionConfig)
        return [{"params": list(self.emotion_critic.parameters()), "lr": lr_scale * self.cfg.critic_lr}]

    def on_train_start(self) -> None:
        super().on_train_start()
        assert isinstance(self.cfg, ExpressionConfig)
        if self.cfg.exp_init != "random" and self.global_step == 0:  # not on a resumed run
            self.init_expression_head()

    @torch.no_grad()
    def init_expression_head(self) -> None:
        """`model.exp_init=discriminant`: ELN (the affine `navigator.exp_fc`) reads the motion code's
        emotion-discriminant directions, at the mouth weights' spread; the other expression weights start
        at zero. Statistics come from `exp_init_batches` training batches (the same on every rank)."""
        assert isinstance(self.cfg, ExpressionConfig)
        gen, nav = self.generator, self.generator.navigator
        assert nav.exp_fc is not None
        codes, labels = [], []
        loader = self.trainer.datamodule.train_dataloader()  # type: ignore[attr-defined]
        for i, raw in enumerate(loader):
            if i >= self.cfg.exp_init_batches:
                break
            batch = self.on_after_batch_transfer(self.transfer_batch_to_device(raw, self.device, 0), 0)
            frames = [batch[k] for k in ("target", "target2") if k in batch]  # target2: same clip, same label
            w, _ = gen.encoder(torch.cat(frames), with_features=False)
            codes.append(nav.fc(w).float().cpu())
            labels.append(batch["emotion"].repeat(len(frames)).cpu())
        x, y = gathered(self, torch.cat(codes)), gathered(self, torch.cat(labels))
        if self.cfg.exp_init == "anchors":
            anchors = emotion_anchors(y, gen.cfg.exp_dim, self.cfg.exp_anchor)
            assert anchors is not None
            rows, bias = anchor_read(x, anchors)
        else:
            dirs, mean = discriminant_directions(x, y)
            spread = nav.lip_fc(x.to(self.device)).std(0).mean().cpu()
            rows = torch.zeros(gen.cfg.exp_dim, x.shape[1])
            k = min(len(dirs), gen.cfg.exp_dim)
            rows[:k] = dirs[:k] * spread
            bias = -(rows @ mean)
        layers = [m for m in nav.exp_fc if isinstance(m, EqualLinear)]
        for layer in layers[:-1]:  # identity
            set_affine(layer, torch.eye(x.shape[1]), torch.zeros(x.shape[1]))
        set_affine(layers[-1], rows, bias)

    def emotion_code_dim(self) -> int:
        """`model.loss.emotion` reads the expression weights alpha_e here."""
        return self.generator.cfg.exp_dim

    def generator_step(self, batch: dict[str, torch.Tensor]) -> StepOutput:
        src, tgt = batch["source"], batch["target"]
        loss_w = self.cfg.loss
        assert isinstance(loss_w, ExpressionLoss)
        assert isinstance(self.cfg, ExpressionConfig)
        anchors = emotion_anchors(batch.get("emotion"), self.generator.cfg.exp_dim, self.cfg.exp_anchor)
        teach = None
        if anchors is not None and self.cfg.exp_teacher:
            known = batch["emotion"][:, None] >= 0
            teach = lambda a: torch.where(known, anchors.to(a), a)  # noqa: E731
        r = expression_reconstruct(self.generator, src, tgt, loss_w.complementary > 0, teach)
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
        if self.emotion_critic is not None:
            labels = batch.get("emotion")
            if labels is None:
                raise ValueError(
                    "model.loss.emotion_pixels needs the clips' emotion labels in the batch (EmotionDataModule "
                    "adds them); set model.loss.emotion_pixels=0"
                )
            real = torch.cat([tgt, batch["target2"]]) if "target2" in batch else tgt
            real_labels = labels.repeat(len(real) // len(tgt))
            losses["emotion_pixels"] = pixel_emotion_terms(
                self.emotion_critic, real, real_labels, fake, labels
            )
        if anchors is not None:
            known = batch["emotion"] >= 0
            losses["anchor"] = (
                ((r["alpha_exp"] - anchors.to(r["alpha_exp"])) ** 2)[known].sum(1).mean()
                if bool(known.any())
                else r["alpha_exp"].sum() * 0.0
            )
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
