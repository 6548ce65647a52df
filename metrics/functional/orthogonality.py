"""Orthogonality diagnostics of the bases banks and a disentanglement score on known factors.

* `bank_gram(q)`: Q^T Q of the orthonormalised banks (identity when QR did its job), and
  `raw_cosines(w)`: cosines between the *learned* columns before QR (how orthogonal training made them).
* `cross_overlap(a, b)`: ||A^T B||_F / sqrt(min(k_a, k_b)) in [0, 1] (0: orthogonal subspaces).
* Coefficient statistics come from one second-moment matrix M = sum_i z_i z_i^T over samples with
  z = [coefficients (K) | factors (F) | 1], so they reduce across processes by summation:
  `correlation(M)` and `explained(M, ...)` (adjusted R^2 of a least-squares fit of each factor from
  each component's coefficients). `disentanglement_score` = mean over factors of
  R^2(intended component) - max R^2(other components), in [-1, 1] (1: each factor is explained by its
  own bank only).
"""

from __future__ import annotations

import math

import torch

# Which bank should explain each ground-truth factor of the built-in dataset.
INTENDED = {"mouth_open": "mouth", "yaw": "pose", "pitch": "pose", "roll": "pose", "emotion": "exp"}


def bank_gram(q: torch.Tensor) -> torch.Tensor:
    """q: S x K -> K x K Gram matrix."""
    return q.t() @ q


def raw_cosines(w: torch.Tensor) -> torch.Tensor:
    """w: S x K learned bank columns -> K x K cosine similarities."""
    n = w / w.norm(dim=0, keepdim=True).clamp_min(1e-12)
    return n.t() @ n


def cross_overlap(a: torch.Tensor, b: torch.Tensor) -> float:
    """Normalised Frobenius overlap of two column blocks (S x ka, S x kb)."""
    na = a / a.norm(dim=0, keepdim=True).clamp_min(1e-12)
    nb = b / b.norm(dim=0, keepdim=True).clamp_min(1e-12)
    return float((na.t() @ nb).norm() / min(a.shape[1], b.shape[1]) ** 0.5)


def second_moment(z: torch.Tensor) -> torch.Tensor:
    """z: N x D -> (D+1) x (D+1) sum of [z, 1][z, 1]^T (float64)."""
    zz = torch.cat([z.double(), z.new_ones(z.shape[0], 1, dtype=torch.float64)], 1)
    return zz.t() @ zz


def correlation(m: torch.Tensor) -> torch.Tensor:
    """(D+1) x (D+1) second moment (last row/col: constant) -> D x D Pearson correlation."""
    n = m[-1, -1]
    mean = m[:-1, -1] / n
    cov = m[:-1, :-1] / n - torch.outer(mean, mean)
    sd = cov.diagonal().clamp_min(1e-12).sqrt()
    return cov / torch.outer(sd, sd)


def r2(m: torch.Tensor, x_idx: list[int], y_idx: list[int], ridge: float = 1e-6) -> float:
    """Adjusted R^2 of the least-squares fit y ~ x + 1 from the second moments, averaged over y columns."""
    n = float(m[-1, -1])
    xi = [*x_idx, m.shape[0] - 1]
    xx, xy = m[xi][:, xi], m[xi][:, y_idx]
    beta = torch.linalg.solve(xx + ridge * torch.eye(len(xi), dtype=m.dtype) * xx.diagonal().mean(), xy)
    mean_y = m[y_idx, -1] / n
    yy = m[y_idx, y_idx]  # paired indexing: the diagonal entries
    sst = yy - n * mean_y**2
    sse = yy - 2 * (beta * xy).sum(0) + (beta * (xx @ beta)).sum(0)
    keep = sst > 1e-12 * n
    if not bool(keep.any()):
        return float("nan")
    r = 1 - sse[keep] / sst[keep]
    p = len(x_idx)
    adj = 1 - (1 - r) * (n - 1) / max(n - p - 1, 1.0)
    return float(adj.mean().clamp(min=0.0))


def explained(
    m: torch.Tensor, components: dict[str, list[int]], factors: dict[str, list[int]]
) -> dict[str, dict[str, float]]:
    """{component: {factor: adjusted R^2}} for index lists into the second-moment matrix."""
    return {c: {f: r2(m, ci, fi) for f, fi in factors.items()} for c, ci in components.items()}


def disentanglement_score(table: dict[str, dict[str, float]]) -> float:
    """Mean over non-constant factors with their intended bank present of R^2(intended) - max R^2(others)."""
    gaps = []
    for factor, owner in INTENDED.items():
        if owner not in table or factor not in table[owner]:
            continue
        others = [table[c][factor] for c in table if c != owner and not math.isnan(table[c][factor])]
        if math.isnan(table[owner][factor]):  # the factor is constant over the data: nothing to explain
            continue
        gaps.append(table[owner][factor] - (max(others) if others else 0.0))
    return float(sum(gaps) / len(gaps)) if gaps else float("nan")
