"""Stage `audio2mouth` (SPEC 5.4): mel windows -> the 20 mouth weights of the MLN bank.

Batch (AudioDataModule with coefficient sidecars, T = `data.clip_frames` >= 5): frames B x T x 3 x S x S,
mel B x T x 1 x 80 x 16, identity B x 3 x S x S, bbox B x T x 4, mouth B x T x 20, pose B x T x 6
(+ exp B x T x 10), the coefficients extracted by the generator given as `init_from`.

With alpha_hat = Audio2Lip(mel) (B x T x 20) the loss terms (weights `model.loss.<term>`) are

* coeff     MSE(alpha_hat, alpha)                                    (1)
* temporal  MSE(diff_t alpha_hat, diff_t alpha)                      (0.1)
* l1, vgg   render G(identity; w_a + [alpha_hat, alpha_pose(, alpha_exp)] Q^T) vs the real frames (1, 1)
* mouth_l1  L1 between the expert's crops (lower halves of the 96 x 96 face-box crops; `sync_crop`)
            of rendered and real frames (upstream img_l1_sync: whole 96 x 96 face crops)           (1)
* sync      BCE(cos(SyncNet(mel window), SyncNet(rendered mouths)), 1) on frames s..s+4 and the mel
            window of the SAME frames (window s + 2; upstream paired window s: two frames early) (5)
* gan       non-saturating GAN_G of the rendered frames under the *frozen* discriminator of the
            `init_from` checkpoint (upstream's --dis_weight 1; D is never updated)           (1)

Upstream recipe (the defaults of experiments/audio2mouth.yaml): the audio encoder starts from Wav2Lip's
generator checkpoint (`model.audio_encoder_init=PATH/wav2lip.pth`, its `audio_encoder.*` part) and is
frozen: requires_grad False, but its BatchNorm layers stay in train mode so their running statistics
keep updating, as in the original; only `mapping` (512 -> 20) is trained, with Adam betas (0, 0.992)
and lr 0.0016. `model.audio_trainable` None means exactly that when an encoder file is given
(`audio_encoder_init` or `init`), and everything (with a warning) when the encoder starts at random.

Ours, off by default (`model.subspace`, the demo profile: 0.99): the predictions stay in the principal
subspace of the training targets that holds that fraction of their variance, at the targets' mean in the
other directions. On the demo's generators the mouth weights vary along one direction (> 99.9 %); left
free, the other 19 carry the network's noise at ~15x the targets' spread there, which the learning
table's linear read-out of the opening weighs heavily (`mouth_open_corr_audio` -0.15 vs +0.78 on the
same predictions' leading direction, seed 3; experiments/demo/README.md, "The audio mouth off the
weights' subspace"). `mapping` is projected onto it at the start and after every optimiser step, so the
network is a plain Audio2Lip (same keys, nothing to undo at export).

The generator is frozen (its bytes are verified unchanged at the end) unless `model.trainable` lists
globs, e.g. `'model.trainable=[synthesis.*]'` to fine-tune the decoder; the SyncNet expert is always
frozen (eval mode).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from edtalk.losses import VGGPyramidLoss, g_nonsaturating
from edtalk.losses.sync import (
    SyncLoss,
    check_sync_crop,
    crop_boxes,
    random_starts,
    sync_faces,
    warn_other_crop,
)
from edtalk.nn.audio2lip import Audio2Lip, Audio2LipConfig
from edtalk.nn.generator import Generator, SourceEncoding
from edtalk.nn.syncnet import SYNC_FRAMES, SyncNet
from edtalk.stages.builders import build_discriminator, build_generator, build_perceptual
from edtalk.stages.params import apply_trainable
from edtalk.stages.stage import DebugExport, keep_out_of_checkpoints, psnr
from edtalk.stages.supervised import (
    StageConfig,
    SupervisedStage,
    debug_coefficient_data,
    load_network,
    resolved,
    scaled,
    seeded_generator,
    tie_to_generator,
)

AUDIO2LIP_CHANNELS = Audio2LipConfig().channels  # (32, 64, 128, 256, 512): Wav2Lip's audio encoder
IMAGE_TERMS = ("l1", "vgg", "mouth_l1", "sync", "gan")
WAV2LIP_PREFIX = "audio_encoder."


@dataclass
class Audio2MouthLoss:
    """Weights of the loss terms (a term with weight 0 is not computed)."""

    coeff: float = 1.0
    temporal: float = 0.1
    l1: float = 1.0
    vgg: float = 1.0
    mouth_l1: float = 1.0
    sync: float = 5.0
    gan: float = 1.0


@dataclass
class Audio2MouthConfig(StageConfig):
    """`model:` of the audio2mouth stage.

    Attributes:
        network: the `Audio2Lip` architecture at `width` 1 (`model.network.channels`; times `width`);
            `mouth_dim` follows `generator.mouth_dim`.
        loss: loss weights.
        syncnet: the lip-sync expert (our syncnet checkpoint/export or the official Wav2Lip expert);
            required when `loss.sync` > 0.
        init: start the Audio2Lip network from this file (official `Audio2Lip.pt` or ours).
        audio_encoder_init: Wav2Lip's generator checkpoint (`wav2lip.pth`, weight kind `wav2lip`): its
            `audio_encoder.*` tensors start the audio encoder (upstream's recipe).
        audio_trainable: globs of trained Audio2Lip parameters; None: `[mapping.*]` when the encoder
            comes from a file (upstream), else all.
        trainable: globs of trained generator parameters (default none: the generator is frozen).
        sync_crop: "face" (lower half of the 96 x 96 face-box crop, Wav2Lip's expert input) or
            "mouth" (lower half of a mouth-box square), for the sync and mouth_l1 terms.
        crop_scale: mouth crop side over the mouth-box width (`sync_crop=mouth` only).
        verify_frozen: check bit-exactly that frozen generator parameters did not change.
        subspace: ours: keep the predictions in the training targets' principal subspace holding this
            fraction of their variance (read from the training shards' sidecars); None: unconstrained.
    """

    network: Audio2LipConfig = field(default_factory=Audio2LipConfig)
    loss: Audio2MouthLoss = field(default_factory=Audio2MouthLoss)
    syncnet: str | None = None
    init: str | None = None
    audio_encoder_init: str | None = None
    audio_trainable: list[str] | None = None
    trainable: list[str] = field(default_factory=list)
    sync_crop: str = "face"
    crop_scale: float = 2.0
    verify_frozen: bool = True
    subspace: float | None = None

    def __post_init__(self) -> None:
        check_sync_crop(self.sync_crop)


SCRATCH_WARNING = (
    "audio2mouth: the audio encoder starts at random and is trained; the original starts it from Wav2Lip's "
    "generator checkpoint (wav2lip.pth, github.com/Rudrabha/Wav2Lip) and freezes it: "
    "model.audio_encoder_init=PATH/wav2lip.pth"
)


def audio_globs(cfg: Audio2MouthConfig) -> list[str]:
    """Trained Audio2Lip parameters: `audio_trainable`, or by default only `mapping` when the encoder
    comes from a file (upstream) and everything when it starts at random."""
    if cfg.audio_trainable is not None:
        return list(cfg.audio_trainable)
    return ["mapping.*"] if (cfg.audio_encoder_init or cfg.init) else ["*"]


def wav2lip_audio_encoder(path: str | Path) -> dict[str, torch.Tensor]:
    """The `audio_encoder.*` tensors (prefix removed) of a Wav2Lip generator checkpoint.

    Read through the weight kind `wav2lip` (`edtalk weights inspect PATH --kind wav2lip`): a top-level
    "state_dict" whose keys may carry DataParallel's `module.` prefix; `audio_encoder.<i>.conv_block.{0,1}.*`
    are the 13 audio blocks, the face encoder/decoder entries are dropped.
    """
    from edtalk import weights

    _, sd = weights.read(path, "wav2lip")  # a file without the audio encoder fails here, naming the key
    return weights.sub_state_dict(sd, WAV2LIP_PREFIX)


def load_wav2lip_audio_encoder(net: Audio2Lip, path: str | Path) -> None:
    """Load the Wav2Lip generator's audio encoder into `net.audio_encoder`: every key and shape checked
    (BatchNorm running statistics included); `mapping` keeps its initialisation."""
    from edtalk.weights import CheckpointError
    from edtalk.weights.handoff import load_strict

    encoder = wav2lip_audio_encoder(path)
    try:
        load_strict(net.audio_encoder, encoder, path)
    except CheckpointError as err:
        raise CheckpointError(f"{err} (Wav2Lip's encoder is width 1: set model.width=1.0)") from err


def frozen_discriminator(cfg: Any, obj: Any) -> nn.Module | None:
    """The discriminator of the `init_from` file for the frozen GAN term (None, with a warning, when the
    file holds none or `discriminator.enabled` is false). `obj` None (resume): built, weights from the
    Lightning checkpoint."""
    from edtalk.weights.handoff import init_discriminator

    if not cfg.discriminator.enabled:
        return None
    disc = build_discriminator(cfg)
    if obj is not None and not init_discriminator(disc, obj, cfg.init_from):
        warnings.warn(
            f"{cfg.init_from} holds no discriminator: audio2mouth trains without the GAN term "
            "(model.loss.gan=0 silences this)",
            UserWarning,
            stacklevel=2,
        )
        return None
    return disc


def expand_source(enc: SourceEncoding, t: int) -> SourceEncoding:
    """Each source repeated for its T frames: batch B -> B*T, ordered b0 x T, b1 x T, ..."""
    feats = [f.repeat_interleave(t, 0) for f in enc.feats]
    eem = [f.repeat_interleave(t, 0) for f in enc.eem] if enc.eem is not None else None
    return SourceEncoding(enc.w_a.repeat_interleave(t, 0), feats, eem)


class Audio2MouthStage(SupervisedStage):
    """Audio2Lip trained against extracted coefficients, through the frozen generator and SyncNet.

    Args:
        net: the Audio2Lip network.
        net_config: its config dict ({"mouth_dim", "channels"}).
        generator: the (lip-pose or full) generator the coefficients were extracted with.
        perceptual: VGG pyramid loss (None when `loss.vgg` is 0).
        sync: the frozen SyncNet loss (None when `loss.sync` is 0).
        cfg: stage hyper-parameters.
        run_config: resolved run configuration.
        discriminator: the frozen image discriminator of the GAN term (None: no GAN term). It is
            saved in our checkpoints (resume) but never updated.
    """

    Config: ClassVar[type[StageConfig]] = Audio2MouthConfig
    stage_name: ClassVar[str] = "audio2mouth"
    kind: ClassVar[str] = "audio2mouth"
    cfg: Audio2MouthConfig

    def __init__(
        self,
        net: Audio2Lip,
        net_config: dict[str, Any],
        generator: Generator,
        perceptual: VGGPyramidLoss | None,
        sync: SyncLoss | None,
        cfg: Audio2MouthConfig,
        run_config: dict[str, Any] | None = None,
        discriminator: nn.Module | None = None,
    ) -> None:
        super().__init__(net, net_config, cfg, run_config)
        if cfg.loss.vgg > 0 and perceptual is None:
            raise ValueError("model.loss.vgg > 0 needs a perceptual loss (or set model.loss.vgg=0)")
        if cfg.loss.sync > 0 and sync is None:
            raise ValueError(
                "model.loss.sync > 0 needs the lip-sync expert: model.syncnet=<syncnet checkpoint> "
                "(edtalk fit syncnet, or Wav2Lip's lipsync_expert.pth), or set model.loss.sync=0"
            )
        self.generator = generator
        self.perceptual = perceptual
        self.sync = sync
        for frozen in (perceptual, sync):  # fixed judges stay out of our checkpoints
            if frozen is not None:
                keep_out_of_checkpoints(frozen)
        apply_trainable(net, audio_globs(cfg))
        self.discriminator = discriminator
        if discriminator is not None:
            discriminator.requires_grad_(False)
        self.freeze_except(generator, cfg.trainable, cfg.verify_frozen, what="generator parameters")
        self.mouth_space: tuple[torch.Tensor, torch.Tensor] | None = None  # (mean, basis): on_fit_start

    @classmethod
    def build(cls, cfg: Any, resume: bool = False) -> Audio2MouthStage:
        """Generator (+ `init_from`), Audio2Lip (+ `model.init`), VGG and SyncNet from a run config."""
        from edtalk.weights.handoff import init_generator

        model_cfg, run_config = resolved(cfg)
        gen = build_generator(cfg)
        if not cfg.init_from and not resume:
            raise ValueError(
                "audio2mouth renders through a trained generator: set init_from=<mouth_pose checkpoint> "
                "(the one the coefficients were extracted with)"
            )
        obj = None if resume else init_generator(gen, cfg.init_from, use_ema=bool(cfg.init.ema))
        disc = frozen_discriminator(cfg, obj) if model_cfg.loss.gan > 0 else None
        net_cfg = tie_to_generator(model_cfg.network, "mouth_dim", gen.cfg.mouth_dim)
        channels = scaled(net_cfg.channels, model_cfg.width)
        net = Audio2Lip(net_cfg.mouth_dim, channels)
        net_config = {"mouth_dim": net_cfg.mouth_dim, "channels": list(channels)}
        if model_cfg.init and not resume:
            net.load_state_dict(load_network(model_cfg.init, "audio2mouth").state_dict(), strict=True)
        if model_cfg.audio_encoder_init and not resume:
            load_wav2lip_audio_encoder(net, model_cfg.audio_encoder_init)
        if not (model_cfg.init or model_cfg.audio_encoder_init or resume):
            warnings.warn(SCRATCH_WARNING, UserWarning, stacklevel=2)
        perceptual = build_perceptual(model_cfg.perceptual, model_cfg.loss.vgg)
        sync = None
        if model_cfg.loss.sync > 0 and model_cfg.syncnet:
            expert = load_network(model_cfg.syncnet, "syncnet")
            assert isinstance(expert, SyncNet)
            sync = SyncLoss(expert, model_cfg.crop_scale, model_cfg.sync_crop)
            warn_other_crop(model_cfg.syncnet, model_cfg.sync_crop)
        return cls(net, net_config, gen, perceptual, sync, model_cfg, run_config, disc)

    @classmethod
    def prepare_debug(cls, cfg: Any, debug_export: DebugExport) -> None:
        """`--debug`: coefficients of the debug mouth_pose generator and the debug syncnet expert."""
        debug_coefficient_data(cfg)
        if cfg.model.loss.sync > 0 and not cfg.model.syncnet:
            cfg.model.syncnet = str(debug_export("syncnet", cfg))

    def trainable_parameters(self) -> list[nn.Parameter]:
        own = [p for p in self.net.parameters() if p.requires_grad]
        return own + [p for p in self.generator.parameters() if p.requires_grad]

    # -- the subspace constraint (model.subspace) ---------------------------------------------------
    def on_fit_start(self) -> None:
        super().on_fit_start()
        if self.cfg.subspace is not None:
            self.mouth_space = self.target_subspace(self.cfg.subspace)
            self.project_mapping()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        super().on_train_batch_end(outputs, batch, batch_idx)
        if self.mouth_space is not None:
            self.project_mapping()

    def target_subspace(self, fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, basis 20 x k) of the training shards' mouth weights (`principal_subspace`)."""
        from datamodules.shards import is_url, shard_urls
        from edtalk.coefficients import part_rows, principal_subspace

        root = self.trainer.datamodule.shard_root()  # type: ignore[attr-defined]
        if is_url(root):
            raise ValueError(
                f"model.subspace reads the training mouth weights from local sidecars; {root} is a URL: "
                "copy the shards and their .coeffs.npz locally or set model.subspace=null"
            )
        rows = part_rows(shard_urls(root, "train"), "mouth")
        mean, basis = principal_subspace(rows, fraction)
        return torch.from_numpy(mean).float(), torch.from_numpy(basis).float()

    def project_mapping(self) -> None:
        """`mapping`'s outputs onto mean + span(basis) (`edtalk.coefficients.confine_linear_`)."""
        from edtalk.coefficients import confine_linear_

        assert self.mouth_space is not None
        lin = self.net.mapping
        assert isinstance(lin, nn.Linear)
        confine_linear_(lin.weight, lin.bias, *self.mouth_space)

    # -- the objective -----------------------------------------------------------------------------
    def render(self, batch: dict[str, torch.Tensor], mouth: torch.Tensor) -> torch.Tensor:
        """Frames from the identity and per-frame weights: mouth B x T x 20 (+ batch pose/exp) -> B x T x 3 x S x S."""
        b, t = mouth.shape[:2]
        gen = self.generator
        src = expand_source(gen.encode(batch["identity"]), t)  # -> B*T
        alpha = {"mouth": mouth.flatten(0, 1), "pose": batch["pose"].flatten(0, 1)}  # -> (B*T) x K
        if gen.cfg.has_expression and "exp" in batch:
            alpha["exp"] = batch["exp"].flatten(0, 1)
        out = gen.animate(src, alpha)  # -> (B*T) x 3 x S x S
        return out.view(b, t, *out.shape[1:])

    def compute(self, batch: dict[str, torch.Tensor], train: bool) -> dict[str, torch.Tensor]:
        target = batch["mouth"]
        pred = self.net(batch["mel"])  # -> B x T x 20
        terms = {"coeff": F.mse_loss(pred, target)}
        if target.shape[1] > 1:
            terms["temporal"] = F.mse_loss(pred.diff(dim=1), target.diff(dim=1))
        extra: dict[str, torch.Tensor] = {}
        w = self.cfg.loss
        if any(getattr(w, k) > 0 for k in IMAGE_TERMS):
            image, extra = self.image_terms(batch, pred, train)
            terms.update(image)
        total = sum((getattr(w, k) * v for k, v in terms.items()), pred.new_zeros(()))
        return {"loss": total, **terms, **extra}

    def image_terms(
        self, batch: dict[str, torch.Tensor], pred: torch.Tensor, train: bool
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """(loss terms l1 / vgg / mouth_l1 / sync, logged-only {"psnr"}) of frames rendered from `pred`."""
        frames, w = batch["frames"], self.cfg.loss
        fake = self.render(batch, pred)  # -> B x T x 3 x S x S
        out: dict[str, torch.Tensor] = {"l1": (fake - frames).abs().mean()}
        if self.perceptual is not None and w.vgg > 0:
            out["vgg"] = self.perceptual(fake.flatten(0, 1), frames.flatten(0, 1))
        b, t = pred.shape[:2]
        if t >= SYNC_FRAMES and (w.sync > 0 or w.mouth_l1 > 0):
            start = random_starts(b, t, None if train else seeded_generator(self.val_index))
            crop, boxes = self.cfg.sync_crop, crop_boxes(batch, self.cfg.sync_crop)
            fake_mouth = sync_faces(fake, boxes, start, self.cfg.crop_scale, crop=crop)
            real_mouth = sync_faces(frames, boxes, start, self.cfg.crop_scale, crop=crop)
            out["mouth_l1"] = (fake_mouth - real_mouth).abs().mean()
            if self.sync is not None and w.sync > 0:
                out["sync"] = self.sync(fake, crop_boxes(batch, self.sync.crop), batch["mel"], start)
        if self.discriminator is not None and w.gan > 0:
            out["gan"] = g_nonsaturating(self.discriminator(fake.flatten(0, 1)))  # frozen D, B*T frames
        if train and self.sample_due():
            self.log_samples([batch["identity"], frames[:, 0], fake[:, 0].detach()], "train")
        return out, {"psnr": psnr(fake.detach(), frames)}
