"""Fréchet Inception Distance from sufficient statistics (sum, sum of outer products, count).

Same formula as torch-fidelity 0.4: ||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 sum_i sqrt(lambda_i(S1 S2)).real
with unbiased covariances (the trace of sqrtm(S1 S2) taken from the eigenvalues, which stays finite when
S1 S2 is singular). Statistics are accumulated in float64.
"""

from __future__ import annotations

import numpy as np
import torch


def moments(total: torch.Tensor, outer: torch.Tensor, n: int | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(sum_i x_i, sum_i x_i x_i^T, n) -> mean D and unbiased covariance D x D (float64)."""
    n = int(n)
    if n < 2:
        raise ValueError(f"FID needs at least 2 images per side, got {n}")
    mu = total.double() / n
    cov = (outer.double() - n * torch.outer(mu, mu)) / (n - 1)
    return mu.cpu().numpy(), cov.cpu().numpy()


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2)."""
    diff = mu1 - mu2
    tr_covmean = np.sum(np.sqrt(np.linalg.eigvals(sigma1.dot(sigma2)).astype("complex128")).real)
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)


def evenly_spaced(num_frames: int, k: int = 5) -> list[int]:
    """k frame indices spread over a clip (EAT's MEAD protocol pools 5 per video); all when shorter."""
    if num_frames <= k:
        return list(range(num_frames))
    return np.linspace(0, num_frames - 1, k).round().astype(int).tolist()
