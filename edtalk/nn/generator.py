"""The EDTalk generator: one backbone shared by every training stage and by inference.

    w_a, pyramid = E(source)                                   appearance (Sec. 3.1)
    alpha_{mouth,pose,exp} = heads(fc(E(driver).w_a))          latent navigation (Sec. 3.2)
    Q = qr([W_mouth | W_pose | W_exp] + 1e-8)                  orthonormal bases banks
    w = w_a + alpha @ Q^T,  e = alpha_exp @ Q_exp^T
    image = G(w, pyramid, EEM(e))                              flow-warping synthesis (Sec. 3.3)

`animate(src, alpha, q)` is latent + render in one call: the renderer of `edtalk.pipeline`, evaluation
and the apps go through it. The lip-pose variant (`GeneratorConfig.variant = "lip_pose"`) has no ELN, no expression bank and no EEM.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from edtalk.config import GeneratorConfig
from edtalk.nn.encoder import AppearanceEncoder, ExpressionEncoder
from edtalk.nn.navigation import BasesBanks, MotionNavigator
from edtalk.nn.synthesis import Synthesis

COMPONENTS = ("mouth", "pose", "exp")


@dataclass
class SourceEncoding:
    """Everything the renderer needs from a source image, computed once per video.

    Attributes:
        w_a: B x S appearance latent.
        feats: pyramid [8x8 ... HxW] of B x C x r x r maps.
        eem: per level InstanceNorm(EEM.conv(feat)) (full variant), the expression-independent EEM part.
    """

    w_a: torch.Tensor
    feats: list[torch.Tensor]
    eem: list[torch.Tensor] | None = None


class Generator(nn.Module):
    """E + motion MLP/heads + bases banks + synthesis G (+ EEM), configured by `GeneratorConfig`."""

    def __init__(self, cfg: GeneratorConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or GeneratorConfig()
        self.encoder = AppearanceEncoder(self.cfg)
        self.navigator = MotionNavigator(self.cfg)
        self.banks = BasesBanks(self.cfg)
        self.synthesis = Synthesis(self.cfg)
        self.exp_encoder = (
            ExpressionEncoder(self.cfg.exp_dim, self.cfg.exp_encoder_width)
            if self.cfg.has_expression and self.cfg.exp_encoder == "cnn"
            else None
        )

    def train(self, mode: bool = True) -> Generator:
        """As `nn.Module.train`, except that a frozen expression reader (no parameter requires grad)
        stays in eval mode: its BatchNorm keeps the statistics it was trained with (a stage that only
        renders with it, or fine-tunes the rest on one person, must not re-estimate them)."""
        super().train(mode)
        if self.exp_encoder is not None and not any(p.requires_grad for p in self.exp_encoder.parameters()):
            self.exp_encoder.eval()
        return self

    # -- encoding ---------------------------------------------------------------------------
    def encode(self, source: torch.Tensor) -> SourceEncoding:
        """source: B x 3 x H x W in [-1, 1] -> appearance latent, pyramid and cached EEM features."""
        w_a, feats = self.encoder(source)
        blocks = self.synthesis.eem_blocks if self.cfg.eem else []
        eem = [blk.prepare(f) for blk, f in zip(blocks, feats, strict=True)] if blocks else None
        return SourceEncoding(w_a, feats, eem)

    def coefficients(self, driver: torch.Tensor) -> dict[str, torch.Tensor]:
        """driver: B x 3 x H x W -> bank weights {"mouth": Bx20, "pose": Bx6[, "exp": Bx10]}."""
        w, _ = self.encoder(driver, with_features=False)
        return self.heads(w, driver)

    def heads(self, w: torch.Tensor, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """Bank weights from E's latents `w` (B x S) of `frames` (B x 3 x H x W), which the expression
        reader of its own reads when `cfg.exp_encoder` is "cnn"."""
        out = self.navigator(w)
        if self.exp_encoder is not None:
            out["exp"] = self.exp_encoder(frames)
        return out

    # -- latent arithmetic --------------------------------------------------------------------
    def basis(self) -> torch.Tensor:
        """Q: S x K orthonormal directions (recompute once per clip, not per frame)."""
        return self.banks.basis()

    def latent(
        self,
        w_a: torch.Tensor,
        alpha: dict[str, torch.Tensor],
        q: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """w = w_a + alpha @ Q^T and the expression latent e (None without expression weights).

        Args:
            w_a: B x S (or 1 x S, broadcast).
            alpha: {"mouth": Bx20, "pose": Bx6, "exp": Bx10 (full variant; omit to render without EEM)}.
            q: precomputed `basis()`.
        """
        q = self.basis() if q is None else q
        blocks = self.banks.split(q)
        direction = alpha["mouth"] @ blocks["mouth"].t() + alpha["pose"] @ blocks["pose"].t()
        e = None
        if "exp" in alpha and "exp" in blocks:
            e = alpha["exp"] @ blocks["exp"].t()
            direction = direction + e
        return w_a + direction, e

    def component_latents(
        self, alpha: dict[str, torch.Tensor], q: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Per-component directions alpha_c @ Q_c^T (B x S each), for the latent-consistency losses."""
        blocks = self.banks.split(self.basis() if q is None else q)
        return {k: alpha[k] @ blocks[k].t() for k in alpha if k in blocks}

    # -- rendering ----------------------------------------------------------------------------
    def render(self, src: SourceEncoding, w: torch.Tensor, e: torch.Tensor | None = None) -> torch.Tensor:
        """Render B frames from one encoded source (batch 1 or B) and latents w (B x S), e (B x S)."""
        feats = src.feats
        blocks = self.synthesis.eem_blocks if self.cfg.eem else []  # cfg.eem False: the "w/o EEM" ablation
        if e is not None and blocks:
            if src.eem is None:
                raise ValueError(
                    "render(e=...) needs a SourceEncoding from Generator.encode with EEM features"
                )
            feats = [blk.modulate(f, n, e) for blk, f, n in zip(blocks, feats, src.eem, strict=True)]
        return self.synthesis(w, feats)

    def animate(
        self, src: SourceEncoding, alpha: dict[str, torch.Tensor], q: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Latent + render in one call: B frames of an encoded source moved by bank weights `alpha`.

        Args:
            src: `encode(source)` of batch 1 (broadcast) or B.
            alpha: {"mouth": Bx20, "pose": Bx6[, "exp": Bx10]}; without "exp" no expression is applied.
            q: precomputed `basis()` (compute it once per clip).

        Returns:
            B x 3 x H x W frames in [-1, 1] (not clamped).
        """
        w, e = self.latent(src.w_a, alpha, q)
        return self.render(src, w, e)

    def forward(
        self,
        source: torch.Tensor,
        mouth: torch.Tensor,
        pose: torch.Tensor,
        exp: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Video-driven reconstruction: mouth/pose/expression taken from three driving images.

        source, mouth, pose, exp: B x 3 x H x W -> B x 3 x H x W. Without `exp` (or for the lip-pose
        variant) no expression is applied.
        """
        src = self.encode(source)
        alpha = {"mouth": self.coefficients(mouth)["mouth"], "pose": self.coefficients(pose)["pose"]}
        if exp is not None and self.cfg.has_expression:
            alpha["exp"] = self.coefficients(exp)["exp"]
        return self.animate(src, alpha)
