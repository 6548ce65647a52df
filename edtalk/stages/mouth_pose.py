"""Stage 2, Mouth-Pose decouple (spec §5.2): cross-reconstruction with mouth-swapped frames.

Batch (CrossPairDataModule): two identities a, b with identity frames s_a, s_b, targets t_a, t_b, and
mouth-swapped frames swap_ab = t_a with t_b's mouth, swap_ba = t_b with t_a's mouth.
With d_c(x) = alpha_c(x) Q_c^T the component latent of driver x:

* self-reconstruction   x_a = G(s_a; w_a(s_a) + d_m(t_a) + d_p(t_a))            -> t_a   (and b)
* cross-reconstruction  y_a = G(s_a; w_a(s_a) + d_m(swap_ba) + d_p(swap_ab))     -> t_a   (and b:
  mouth from swap_ab, pose from swap_ba): a's mouth is only visible in swap_ba, a's pose only in swap_ab;
* latent consistency    sum_batch exp(-cos(d_m(swap_ba), d_m(t_a))) + exp(-cos(d_p(swap_ab), d_p(t_a))) (and b).

Loss = w_vgg VGG + w_l1 L1 + w_gan GAN_G(all four) + w_latent latent, where VGG and L1 are, as in the
original trainer, the *sum* of four per-pair means (self a, self b, cross a, cross b): reconstruction
weighs 4 : 4 against GAN 1 and latent 1. The four pairs have the same batch B, so the sum equals 4 x
the mean over the 4B batch and is computed in one call. `model.pair_losses: mean` takes one mean over
the four instead (a 4x weaker reconstruction, this project's earlier default);
D sees real [t_a, t_b] vs fake [y_a, y_b].
Terms of our own, off by default (the paper has none of them): `model.loss.mouth` (L1 in the
targets' mouth boxes, `edtalk.losses.region`; the CPU demo profile uses it), `model.loss.decorrelation`
(upstream's `discor`, as in the expression stage, between the mouth and pose weights; measured to lower
the disentanglement score, experiments/demo/README.md), `model.loss.invariance` (the latent
consistency's pairs on the bank weights themselves, scale-free: `edtalk.losses.coefficient_invariance`)
and `model.loss.warp_invariance`: the same ratio between the mouth weights of the targets and of the
targets warped by a random in-plane rotation, scale and shift (`model.warp`, `edtalk.losses.random_similarity`):
a head that rolls (or, with `scale` / `shift`, nears or moves) keeps its mouth. A mouth-swapped frame carries its own frame's roll
and placement in the pasted mouth, so the swaps alone leave a pose direction in the mouth weights that a
linear probe reads; the warp pairs differ in the pose only (one more encoder pass of 2B frames).
Sources are encoded once and the four drivers in one batch; the four renders are one batched synthesis
call (upstream runs ten encoder passes per step).
Init from `reconstruct` (same lip-pose generator: a strict load, no key surgery). As in the original
stage 2, the mouth/pose heads (MLN, PLN) and the 512 x 26 bank start fresh on top of stage 1's
encoder, motion MLP and decoder (`model.fresh_heads: true`); `false` keeps stage 1's heads and bank.
A mouth_pose checkpoint or an official file as `init_from` always keeps everything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import islice
from typing import ClassVar

import torch

from edtalk.coefficients import confine_linear_, principal_subspace
from edtalk.losses import (
    coefficient_invariance,
    decorrelation,
    latent_consistency,
    linear_leak,
    random_similarity,
    standardised_invariance,
)
from edtalk.nn.generator import Generator, SourceEncoding
from edtalk.nn.layers import EqualLinear
from edtalk.stages.base import GANStage, GANStageConfig, LossWeights, StepOutput
from edtalk.weights.handoff import MOUTH_POSE_HEADS


@dataclass
class MouthPoseLoss(LossWeights):
    """Loss weights; `decorrelation` and `invariance` are our options (0: the paper's objective).
    decorrelation: ||corr(alpha_m, alpha_p)||_F^2 / 20 of the batch-centred mouth and pose weights of the
    step's 4B drivers (`edtalk.losses.decorrelation`). invariance: `edtalk.losses.coefficient_invariance` of
    the mouth weights of swap_ba vs t_a (and swap_ab vs t_b: same mouth, other pose and identity) plus the
    pose weights of swap_ab vs t_a (and swap_ba vs t_b: same pose, other mouth). warp_invariance: the same
    ratio of the mouth weights of t_a, t_b vs those frames warped (`MouthPoseConfig.warp`). leak:
    `edtalk.losses.linear_leak` of the 4B drivers' mouth weights against the motion of their brow, nose and
    eye landmarks in their clip (`data.rigid_landmarks: true`; ridge `MouthPoseConfig.leak_ridge`): what a
    ridge read-out of the mouth weights explains of the head's motion within the batch. pose_read: 1 minus the same
    R² for the pose weights (the pose group reads the head's motion; same landmarks and ridge). mouth_read: 1
    minus the same R² of the mouth weights against the targets' mouth shape from their lip landmarks, less its
    clip mean (`data.mouth_landmarks: true`): the mouth group reads how the mouth moves."""

    latent: float = 1.0
    decorrelation: float = 0.0
    invariance: float = 0.0
    warp_invariance: float = 0.0
    leak: float = 0.0
    pose_read: float = 0.0
    mouth_read: float = 0.0


@dataclass
class WarpConfig:
    """`model.warp`: amplitudes of the random similarity of `loss.warp_invariance` (uniform in +-each):
    roll in degrees, scale as a fraction per axis, shift as a fraction of the half-width. Roll alone by
    default: with scale 0.1 and shift 0.08 as well the mouth weights lost the opening (R² 0.32 vs 0.74 in
    600 demo steps, experiments/demo/README.md)."""

    roll: float = 10.0
    scale: float = 0.0
    shift: float = 0.0
    # the ratio per weight dimension (`edtalk.losses.standardised_invariance`) instead of over all of them
    standardised: bool = False
    # the term trains the mouth head (`lip_fc`) alone: the encoder and the shared motion MLP, which the
    # expression head reads too, get no gradient from it
    head_only: bool = False


PAIRS = 4  # self a, self b, cross a, cross b


@dataclass
class MouthPoseConfig(GANStageConfig):
    """`model:` of mouth_pose.

    Attributes:
        pair_losses: "sum" (upstream: VGG and L1 summed over the four pairs' means) or "mean".
        fresh_heads: from a stage-1 (`reconstruct`) checkpoint, re-initialise the mouth/pose heads and
            bank (upstream) instead of inheriting them.
        leak_ridge: ridge of `loss.leak`'s read-out, a fraction of each weight's own variance.
        leak_head_only: `loss.leak` trains the mouth head (`lip_fc`) alone: the encoder and the shared motion
            MLP, which the pose head reads, get no gradient from it.
        mouth_subspace: ours (None: off): when training ends, the mouth weights are confined to the principal
            subspace that holds this fraction of their variance on `subspace_batches` training batches (drivers
            a and b; gathered over the ranks), at their mean in the other directions: folded into the mouth
            head's last layer (same keys; EMA copy too) before last.ckpt is written (`before_final_checkpoint`).
        subspace_batches: training batches read for `mouth_subspace`.
    """

    loss: MouthPoseLoss = field(default_factory=MouthPoseLoss)
    warp: WarpConfig = field(default_factory=WarpConfig)
    leak_ridge: float = 0.1
    leak_head_only: bool = False
    pair_losses: str = "sum"
    fresh_heads: bool = True
    mouth_subspace: float | None = None
    subspace_batches: int = 32

    def __post_init__(self) -> None:
        if self.pair_losses not in ("sum", "mean"):
            raise ValueError(f"model.pair_losses={self.pair_losses!r}: use 'sum' (upstream) or 'mean'")


def fold_mouth_subspace(gen: Generator, mean: torch.Tensor, basis: torch.Tensor) -> None:
    """Confine `gen`'s mouth weights to mean + span(basis) (20 x k, orthonormal) in the mouth head's last layer
    (`edtalk.coefficients.confine_linear_`, its bias scaled by `lr_mul`); the state-dict keys stay."""
    last = gen.navigator.lip_fc[-1]
    assert isinstance(last, EqualLinear) and last.bias is not None
    confine_linear_(last.weight, last.bias, mean, basis, last.lr_mul)


def _repeat(enc: SourceEncoding, n: int) -> SourceEncoding:
    """The encoding of a batch, repeated n times along the batch axis (a,b -> a,b,a,b,...)."""
    feats = [f.repeat(n, 1, 1, 1) for f in enc.feats]
    eem = [f.repeat(n, 1, 1, 1) for f in enc.eem] if enc.eem is not None else None
    return SourceEncoding(enc.w_a.repeat(n, 1), feats, eem)


def cross_reconstruct(gen: Generator, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """All four reconstructions and the component latents of one mouth_pose batch.

    Returns: "out" 4B x 3 x H x W ordered [self_a, self_b, cross_a, cross_b], "target" 4B x 3 x H x W,
    "mouth"/"pose" 4B x S component latents in the same order, "alpha_mouth"/"alpha_pose" the weights of
    the 4B drivers [t_a, t_b, swap_ab, swap_ba], "w_drivers" their encoder latents.
    """
    sa, sb, ta, tb = batch["source_a"], batch["source_b"], batch["target_a"], batch["target_b"]
    enc = gen.encode(torch.cat([sa, sb]))  # -> 2B
    drivers = torch.cat([ta, tb, batch["swap_ab"], batch["swap_ba"]])
    w_drivers, _ = gen.encoder(drivers, with_features=False)
    coef = gen.heads(w_drivers, drivers)  # -> 4B (= gen.coefficients(drivers))
    m_ta, m_tb, m_ab, m_ba = coef["mouth"].chunk(4)
    p_ta, p_tb, p_ab, p_ba = coef["pose"].chunk(4)
    alpha = {"mouth": torch.cat([m_ta, m_tb, m_ba, m_ab]), "pose": torch.cat([p_ta, p_tb, p_ab, p_ba])}
    q = gen.basis()
    src = _repeat(enc, 2)  # -> 4B: [a, b, a, b]
    w, _ = gen.latent(src.w_a, alpha, q)
    out = gen.render(src, w)
    comp = gen.component_latents(alpha, q)
    return {
        "out": out,
        "target": torch.cat([ta, tb, ta, tb]),
        "mouth": comp["mouth"],
        "pose": comp["pose"],
        "alpha_mouth": coef["mouth"],
        "alpha_pose": coef["pose"],
        "w_drivers": w_drivers,
    }


class MouthPoseStage(GANStage):
    """Cross-reconstruction + self-reconstruction + latent consistency on CrossPairDataModule batches."""

    Config: ClassVar[type[GANStageConfig]] = MouthPoseConfig
    stage_name: ClassVar[str] = "mouth_pose"

    @classmethod
    def fresh_at_handoff(cls, cfg: GANStageConfig) -> tuple[str, ...]:
        assert isinstance(cfg, MouthPoseConfig)
        return MOUTH_POSE_HEADS if cfg.fresh_heads else ()

    # -- model.mouth_subspace: the mouth weights confined to their principal subspace at the end ------------
    def before_final_checkpoint(self) -> None:
        assert isinstance(self.cfg, MouthPoseConfig)
        if self.cfg.mouth_subspace is None:
            return
        rows = self.mouth_rows(self.cfg.subspace_batches)
        mean, basis = principal_subspace(rows.double().cpu().numpy(), self.cfg.mouth_subspace)
        for gen in (self.generator, self.generator_ema):
            if gen is not None:
                fold_mouth_subspace(gen, torch.from_numpy(mean), torch.from_numpy(basis))

    @torch.no_grad()
    def mouth_rows(self, batches: int) -> torch.Tensor:
        """The mouth weights of the drivers a and b of `batches` training batches, every rank's: N x 20."""
        gen = self.generator_ema if self.generator_ema is not None else self.generator
        loader = self.trainer.datamodule.train_dataloader()  # type: ignore[attr-defined]
        rows = []
        for raw in islice(loader, batches):
            batch = self.on_after_batch_transfer(self.transfer_batch_to_device(raw, self.device, 0), 0)
            drivers = torch.cat([batch["target_a"], batch["target_b"]])
            rows.append(gen.coefficients(drivers)["mouth"].float())
        local = torch.cat(rows)
        gathered = self.all_gather(local)  # -> world x N x 20 (N x 20 on one process)
        assert isinstance(gathered, torch.Tensor)
        return gathered.reshape(-1, local.shape[1])

    def generator_step(self, batch: dict[str, torch.Tensor]) -> StepOutput:
        r = cross_reconstruct(self.generator, batch)
        out, target = r["out"], r["target"]
        half = out.shape[0] // 2
        boxes = self.target_boxes(batch)  # [t_a, t_b]; `target` is [t_a, t_b, t_a, t_b]
        losses = self.reconstruction_losses(out, target, boxes=None if boxes is None else boxes.repeat(2, 1))
        assert isinstance(self.cfg, MouthPoseConfig) and isinstance(self.cfg.loss, MouthPoseLoss)
        if self.cfg.pair_losses == "sum":  # sum of the four equal-size pairs' means = 4 x the 4B mean
            losses = {k: PAIRS * v for k, v in losses.items()}
        if self.cfg.loss.latent > 0:
            losses["latent"] = latent_consistency(r["mouth"][half:], r["mouth"][:half]) + latent_consistency(
                r["pose"][half:], r["pose"][:half]
            )
        if self.cfg.loss.decorrelation > 0:
            losses["decorrelation"] = decorrelation(r["alpha_mouth"], r["alpha_pose"])
        if (
            self.cfg.loss.invariance > 0
        ):  # drivers [t_a, t_b, swap_ab, swap_ba]: swap_ba has a's mouth, b's pose
            m_ta, m_tb, m_ab, m_ba = r["alpha_mouth"].chunk(4)
            p_ta, p_tb, p_ab, p_ba = r["alpha_pose"].chunk(4)
            losses["invariance"] = coefficient_invariance(
                torch.cat([m_ba, m_ab]), torch.cat([m_ta, m_tb])
            ) + coefficient_invariance(torch.cat([p_ab, p_ba]), torch.cat([p_ta, p_tb]))
        if self.cfg.loss.warp_invariance > 0:
            drivers = torch.cat([batch["target_a"], batch["target_b"]])
            warp = self.cfg.warp
            warped, _ = random_similarity(drivers, warp.roll, warp.scale, warp.shift)
            ratio = standardised_invariance if warp.standardised else coefficient_invariance
            if warp.head_only:
                nav = self.generator.navigator
                with torch.no_grad():
                    motion = nav.fc(
                        self.generator.encoder(torch.cat([drivers, warped]), with_features=False)[0]
                    )
                m_self, m_warped = nav.lip_fc(motion).chunk(2)
                losses["warp_invariance"] = ratio(m_warped, m_self)
            else:
                m_warped = self.generator.coefficients(warped)["mouth"]
                losses["warp_invariance"] = ratio(m_warped, r["alpha_mouth"][:half])
        losses |= self.motion_terms(batch, r)
        with torch.no_grad():
            self.log("train/cross_l1", (out[half:] - target[half:]).abs().mean(), batch_size=half)
        b = half // 2
        samples = [
            batch["source_a"],
            batch["swap_ba"],
            batch["swap_ab"],
            out[half : half + b],
            batch["target_a"],
        ]
        real = target[half:]
        return StepOutput(losses, fake=out, real=real, d_fake=out[half:], samples=samples)

    def motion_terms(
        self, batch: dict[str, torch.Tensor], r: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """`loss.leak`, `loss.pose_read` and `loss.mouth_read` (those with weight > 0): the drivers' mouth and pose
        weights against the head's motion in the targets' rigid landmarks (`data.rigid_landmarks`) and the mouth
        weights against the lips' motion (`data.mouth_landmarks`)."""
        assert isinstance(self.cfg, MouthPoseConfig) and isinstance(self.cfg.loss, MouthPoseLoss)
        terms: dict[str, torch.Tensor] = {}
        if self.cfg.loss.leak > 0 or self.cfg.loss.pose_read > 0:
            if "rigid_a" not in batch or "rigid_b" not in batch:
                raise ValueError(
                    "model.loss.leak / pose_read > 0 read the targets' rigid landmarks: set data.rigid_landmarks: true"
                )
            rigid = torch.cat([batch["rigid_a"], batch["rigid_b"]]).repeat(
                2, 1
            )  # [t_a, t_b, swap_ab, swap_ba]
            if self.cfg.loss.leak > 0:
                mouth = r["alpha_mouth"]
                # with leak_head_only the mouth head alone learns from it, not the trunk the pose head reads
                if self.cfg.leak_head_only:
                    nav = self.generator.navigator
                    mouth = nav.lip_fc(nav.fc(r["w_drivers"]).detach())
                terms["leak"] = linear_leak(mouth, rigid, self.cfg.leak_ridge)
            if self.cfg.loss.pose_read > 0:
                terms["pose_read"] = 1 - linear_leak(r["alpha_pose"], rigid, self.cfg.leak_ridge)
        if self.cfg.loss.mouth_read > 0:
            if "mouth_a" not in batch or "mouth_b" not in batch:
                raise ValueError(
                    "model.loss.mouth_read > 0 reads the targets' lip landmarks: set data.mouth_landmarks: true"
                )
            m_a, m_b = batch["mouth_a"], batch["mouth_b"]
            shape = torch.cat([m_a, m_b, m_b, m_a])  # [t_a, t_b, swap_ab (b's mouth), swap_ba (a's mouth)]
            terms["mouth_read"] = 1.0 - linear_leak(r["alpha_mouth"], shape, self.cfg.leak_ridge)
        return terms

    def validation_pairs(
        self, generator: Generator, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-reconstructions (the disentanglement test) vs the targets."""
        r = cross_reconstruct(generator, batch)
        half = r["out"].shape[0] // 2
        return r["out"][half:], r["target"][half:]

    def target_boxes(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """Mouth boxes of the targets [t_a, t_b] (the cross-reconstructions' and the self pairs' order)."""
        if "box_a" not in batch or "box_b" not in batch:
            return None
        return torch.cat([batch["box_a"], batch["box_b"]])
