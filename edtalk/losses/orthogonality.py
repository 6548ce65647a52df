"""Orthogonality diagnostics of the bases banks (logged, not optimised: QR already enforces Q^T Q = I).

What QR cannot enforce is that the *learned* raw directions stay distinct; the raw-overlap numbers
show when two banks collapse onto each other (then the QR basis becomes ill-conditioned).
"""

from __future__ import annotations

import torch

from edtalk.nn.navigation import BasesBanks


def _normalised(w: torch.Tensor) -> torch.Tensor:
    return w / w.norm(dim=0, keepdim=True).clamp_min(1e-12)


@torch.no_grad()
def bank_diagnostics(banks: BasesBanks) -> dict[str, float]:
    """Scalars: Q orthonormality error, per-pair overlap of Q blocks and of the raw columns, condition number.

    Returns keys `orth/q_gram_err` (max |Q^T Q - I|), `orth/q_<a>_<b>` (||Q_a^T Q_b||_F),
    `orth/raw_<a>_<b>` (mean |cos| between raw columns of banks a and b), `orth/cond` (sigma_max/sigma_min).
    """
    q = banks.basis().float()
    eye = torch.eye(q.shape[1], device=q.device)
    out = {"orth/q_gram_err": float((q.t() @ q - eye).abs().max())}
    blocks = banks.split(q)
    raw = {"mouth": banks.mouth_pose[:, : banks.mouth_dim], "pose": banks.mouth_pose[:, banks.mouth_dim :]}
    if banks.expression is not None:
        raw["exp"] = banks.expression
    names = list(blocks)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            out[f"orth/q_{a}_{b}"] = float((blocks[a].t() @ blocks[b]).norm())
            cos = _normalised(raw[a].float()).t() @ _normalised(raw[b].float())
            out[f"orth/raw_{a}_{b}"] = float(cos.abs().mean())
    w = torch.cat(list(raw.values()), 1).float()
    s = torch.linalg.svdvals(w)
    out["orth/cond"] = float(s[0] / s[-1].clamp_min(1e-12))
    return out
