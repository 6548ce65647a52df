"""Component-aware latent navigation (paper Sec. 3.2): motion MLP, MLN/PLN/ELN heads and the bases banks.

Each head maps the shared motion feature fc(w_a(driver)) to weights over its bank: mouth (MLN, 20),
pose (PLN, 6), expression (ELN, 10). The banks are learned 512 x k matrices whose columns are made
orthonormal by re-parametrisation: Q = qr([W_mouth | W_pose | W_exp] + 1e-8) (reduced Householder,
LAPACK signs). QR is column-ordered, so pose is orthogonal to mouth and expression to both.
All layers are affine (no nonlinearity), as in the released model.
"""

from __future__ import annotations

import torch
from torch import nn

from edtalk.config import GeneratorConfig
from edtalk.nn.layers import EqualLinear


def _mlp(dim: int, depth: int, out_dim: int | None = None) -> nn.Sequential:
    layers = [EqualLinear(dim, dim) for _ in range(depth - 1)]
    layers.append(EqualLinear(dim, out_dim if out_dim is not None else dim))
    return nn.Sequential(*layers)


class MotionNavigator(nn.Module):
    """Shared 4-layer motion MLP `fc` and the three heads (`lip_fc`, `pose_fc`, `exp_fc`)."""

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        d = cfg.style_dim
        self.fc = _mlp(d, 4)
        self.lip_fc = _mlp(d, 3, cfg.mouth_dim)
        self.pose_fc = _mlp(d, 3, cfg.pose_dim)
        shared = cfg.has_expression and cfg.exp_encoder == "shared"  # "cnn": the generator's exp_encoder
        self.exp_fc = _mlp(d, 3, cfg.exp_dim) if shared else None

    def forward(self, w: torch.Tensor) -> dict[str, torch.Tensor]:
        """w: B x S appearance latents of driving frames -> {"mouth": Bx20, "pose": Bx6[, "exp": Bx10]}."""
        m = self.fc(w)
        out = {"mouth": self.lip_fc(m), "pose": self.pose_fc(m)}
        if self.exp_fc is not None:
            out["exp"] = self.exp_fc(m)
        return out


class BasesBanks(nn.Module):
    """The mouth | pose (| expression) banks, orthonormalised jointly by QR."""

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.mouth_dim, self.pose_dim = cfg.mouth_dim, cfg.pose_dim
        self.orthogonal = cfg.orthogonal_banks
        self.mouth_pose = nn.Parameter(torch.randn(cfg.style_dim, cfg.mouth_dim + cfg.pose_dim))
        self.expression = (
            nn.Parameter(torch.randn(cfg.style_dim, cfg.exp_dim)) if cfg.has_expression else None
        )

    @property
    def num_directions(self) -> int:
        return self.mouth_pose.shape[1] + (self.expression.shape[1] if self.expression is not None else 0)

    def basis(self) -> torch.Tensor:
        """Orthonormal directions Q: S x K, columns ordered mouth, pose, expression (the plain W when
        `orthogonal_banks` is False: the paper's ablation)."""
        w = self.mouth_pose if self.expression is None else torch.cat([self.mouth_pose, self.expression], 1)
        if not self.orthogonal:
            return w
        q, _ = torch.linalg.qr(w + 1e-8, mode="reduced")
        return q

    def split(self, q: torch.Tensor) -> dict[str, torch.Tensor]:
        """Column blocks of Q by component: {"mouth": Sx20, "pose": Sx6[, "exp": Sx10]}."""
        m, p = self.mouth_dim, self.pose_dim
        out = {"mouth": q[:, :m], "pose": q[:, m : m + p]}
        if self.expression is not None:
            out["exp"] = q[:, m + p :]
        return out
