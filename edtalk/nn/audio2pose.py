"""Audio -> head pose: OUR OWN design, not the paper's (SPEC 4.3; never released upstream).

The paper (Sec. 3.4) generates pose with a normalizing flow (built on MoGlow); that network was not
released. `Audio2Pose` is our simpler stand-in, named as such in docs/recipes.md: a conditional VAE over
pose-weight sequences. Audio features get temporal context from dilated residual 1-D convolutions; a
sequence of latents at a coarse rate (one per `latent_stride` frames, linearly interpolated to the frame
rate) carries the head motion the audio does not determine, so different draws give different, smooth
head motions. The prior over the latents is conditioned on the audio (and on the source's pose when
given); `temperature` scales its spread at sampling time (0 = the prior's mean).

Shapes: mel windows B x T x 1 x 80 x 16, pose B x T x 6.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from edtalk.config import SerializableConfig, config_from_dict
from edtalk.nn.audio_encoder import (
    AudioEncoder,
    AudioEncoderConfig,
    _check_mel,
    temporal_stack,
)

# Loss weights that checkpoints written before they moved to the stage's `model.loss` carry in their
# network config (`Audio2PoseConfig.from_dict` drops them).
LOSS_KEYS = ("kl_weight", "velocity_weight")


@dataclass(frozen=True)
class Audio2PoseConfig(SerializableConfig):
    """Hyper-parameters of `Audio2Pose` (a conditional VAE over pose sequences).

    Attributes:
        pose_dim: pose-bank size (6).
        audio: the per-frame audio encoder.
        hidden: width of the temporal networks.
        context_layers: dilated blocks of the audio context / posterior / decoder stacks.
        latent_dim: latent channels per latent step.
        latent_stride: frames per latent step (5 = 0.2 s); latents are interpolated between steps.

    Loss weights are not architecture: they are arguments of `Audio2Pose.loss` (the training stage's
    `model.loss`). Files written before they moved hold `kl_weight` / `velocity_weight` here;
    `from_dict` reads them and drops those keys (`LOSS_KEYS`).
    """

    pose_dim: int = 6
    audio: AudioEncoderConfig = field(default_factory=AudioEncoderConfig)
    hidden: int = 256
    context_layers: int = 4
    latent_dim: int = 16
    latent_stride: int = 5

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Audio2PoseConfig:
        """As `SerializableConfig.from_dict`, ignoring the loss weights older files stored here."""
        out: Audio2PoseConfig = config_from_dict(cls, {k: v for k, v in d.items() if k not in LOSS_KEYS})
        return out

    @classmethod
    def tiny(cls) -> Audio2PoseConfig:
        return cls(
            audio=AudioEncoderConfig.tiny(), hidden=16, context_layers=2, latent_dim=4, latent_stride=2
        )


class Gaussian(NamedTuple):
    """Diagonal Gaussian over latent sequences: mean and log-variance, B x Z x L."""

    mean: torch.Tensor
    logvar: torch.Tensor

    def kl(self, other: Gaussian) -> torch.Tensor:
        """KL(self || other) per element, B x Z x L."""
        return 0.5 * (
            other.logvar
            - self.logvar
            + (self.logvar.exp() + (self.mean - other.mean).square()) / other.logvar.exp()
            - 1.0
        )


class Audio2Pose(nn.Module):
    """Probabilistic audio -> head-pose weights: our conditional VAE (the paper uses a normalizing flow,
    unreleased; this is a stand-in of ours with the same role: several plausible motions per audio).

    Args:
        cfg: hyper-parameters; `Audio2PoseConfig.tiny()` for tests.
    """

    def __init__(self, cfg: Audio2PoseConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or Audio2PoseConfig()
        h, z, p = cfg.hidden, cfg.latent_dim, cfg.pose_dim
        self.audio = AudioEncoder(cfg.audio)
        self.audio_in = nn.Conv1d(cfg.audio.dim, h, 1)
        self.ref_in = nn.Linear(p, h)
        self.context = temporal_stack(h, cfg.context_layers)
        self.posterior = nn.Sequential(nn.Conv1d(h + p, h, 1), *temporal_stack(h, cfg.context_layers))
        self.posterior_out = nn.Conv1d(h, 2 * z, 1)
        self.prior_out = nn.Conv1d(h, 2 * z, 1)
        self.decoder = nn.Sequential(nn.Conv1d(h + z, h, 1), *temporal_stack(h, cfg.context_layers))
        self.decoder_out = nn.Conv1d(h, p, 1)

    def condition(self, mel: torch.Tensor, ref_pose: torch.Tensor | None = None) -> torch.Tensor:
        """Audio (+ source pose) context per frame: mel B x T x 1 x 80 x 16, ref_pose B x 6 -> B x H x T."""
        _check_mel(mel)
        feats = self.audio(mel).transpose(1, 2)  # -> B x D x T
        cond = self.audio_in(feats)
        if ref_pose is not None:
            cond = cond + self.ref_in(ref_pose)[:, :, None]
        return self.context(cond)

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        """Frame rate -> latent rate: B x C x T -> B x C x ceil(T / stride)."""
        s = self.cfg.latent_stride
        return F.avg_pool1d(x, kernel_size=s, stride=s, ceil_mode=True) if s > 1 else x

    def prior(self, cond: torch.Tensor) -> Gaussian:
        mean, logvar = self.prior_out(self._pool(cond)).chunk(2, dim=1)
        return Gaussian(mean, logvar.clamp(-10.0, 10.0))

    def posterior_of(self, pose: torch.Tensor, cond: torch.Tensor) -> Gaussian:
        """q(z | pose, audio): pose B x T x 6, cond B x H x T -> Gaussian B x Z x L."""
        h = self.posterior(torch.cat([cond, pose.transpose(1, 2)], dim=1))
        mean, logvar = self.posterior_out(self._pool(h)).chunk(2, dim=1)
        return Gaussian(mean, logvar.clamp(-10.0, 10.0))

    def decode(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Latents B x Z x L and context B x H x T -> pose B x T x 6."""
        t = cond.shape[-1]
        z_up = F.interpolate(z, size=t, mode="linear", align_corners=False) if z.shape[-1] != t else z
        out = self.decoder_out(self.decoder(torch.cat([cond, z_up], dim=1)))  # -> B x 6 x T
        return out.transpose(1, 2)

    @torch.no_grad()
    def sample(
        self,
        mel: torch.Tensor,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        ref_pose: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Draw pose-weight sequences for the audio.

        Args:
            mel: B x T x 1 x 80 x 16 mel windows.
            temperature: scale of the prior's spread (0: its mean, 1: a plain draw).
            generator: random source (on the model's device) for reproducible draws.
            ref_pose: optional B x 6 pose weights of the source image.

        Returns:
            B x T x 6 pose weights, one per video frame.
        """
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        cond = self.condition(mel, ref_pose)
        prior = self.prior(cond)
        eps = torch.randn(prior.mean.shape, generator=generator, device=cond.device, dtype=cond.dtype)
        z = prior.mean + temperature * (0.5 * prior.logvar).exp() * eps
        return self.decode(z, cond)

    def forward(
        self,
        mel: torch.Tensor,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        ref_pose: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Same as `sample`."""
        return self.sample(mel, temperature, generator, ref_pose)

    def loss(
        self,
        mel: torch.Tensor,
        pose: torch.Tensor,
        ref_pose: torch.Tensor | None = None,
        kl_weight: float = 0.01,
        velocity_weight: float = 1.0,
    ) -> dict[str, torch.Tensor]:
        """Negative ELBO terms on a batch of clips.

        Args:
            mel: B x T x 1 x 80 x 16 mel windows.
            pose: B x T x 6 target pose weights (extracted by the generator).
            ref_pose: optional B x 6 source pose weights (e.g. of the identity frame).
            kl_weight: weight of the KL term (per latent element) against the per-element pose MSE.
            velocity_weight: weight of the MSE between frame-to-frame pose differences.

        Returns:
            {"loss": total, "recon": pose MSE, "velocity": MSE of frame differences, "kl": mean KL per
            latent element, "pred": B x T x 6 reconstruction (detached)}.
        """
        if pose.ndim != 3 or pose.shape[2] != self.cfg.pose_dim or pose.shape[:2] != mel.shape[:2]:
            raise ValueError(
                f"pose must be B x T x {self.cfg.pose_dim} matching mel {tuple(mel.shape[:2])}, "
                f"got {tuple(pose.shape)}"
            )
        cond = self.condition(mel, ref_pose)
        q = self.posterior_of(pose, cond)
        z = q.mean + (0.5 * q.logvar).exp() * torch.randn_like(q.mean)
        pred = self.decode(z, cond)
        recon = F.mse_loss(pred, pose)
        velocity = (
            F.mse_loss(pred.diff(dim=1), pose.diff(dim=1)) if pose.shape[1] > 1 else recon.new_zeros(())
        )
        kl = q.kl(self.prior(cond)).mean()
        total = recon + velocity_weight * velocity + kl_weight * kl
        return {"loss": total, "recon": recon, "velocity": velocity, "kl": kl, "pred": pred.detach()}
