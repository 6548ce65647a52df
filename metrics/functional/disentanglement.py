"""Out-of-sample linear probes of coefficient groups for known factors, and the disentanglement score.

The question a probe answers: "can a linear read-out of this coefficient group predict this factor on
a speaker the read-out has never seen?". Probes are fitted on frames of the training speakers and
scored on frames of the held-out speaker(s), so a group that merely varies with the image (any 20
numbers explain any factor in-sample) scores ≈ 0 or below.

* continuous factors (mouth opening, yaw, pitch, roll): ridge regression on standardised
  coefficients (train-set mean/std), the ridge strength chosen by leave-one-speaker-out over the
  training speakers; scored by the out-of-sample R^2 = 1 - SSE / SST (SST around the *test* mean, as
  `sklearn.metrics.r2_score`). R^2 < 0 means worse than predicting the test mean.
* emotion: multinomial logistic regression (L2, full-batch L-BFGS) on the same standardised
  features; scored by top-1 accuracy per frame on the held-out speaker.
* `disentanglement_score` = mean over factors of (intended group - best other group), where for a
  continuous factor the value is R^2 clipped to [0, 1] (a probe worse than the mean carries no
  information) and for emotion it is the chance-corrected accuracy (acc - 1/C) / (1 - 1/C) clipped
  to [0, 1] (C = number of emotions in the training frames). Range [-1, 1]; 1 = every factor is read
  out perfectly from its own group and not at all from the others.

Everything here is numpy/torch on small matrices (frames x <= 20 features): milliseconds to seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

GROUPS = ("mouth", "pose", "exp")
FACTORS = ("mouth_open", "yaw", "pitch", "roll")
INTENDED = {"mouth_open": "mouth", "yaw": "pose", "pitch": "pose", "roll": "pose", "emotion": "exp"}
ALPHAS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)


@dataclass
class ProbeData:
    """Frames of one split: coefficients per group (N x k_g), factors (N each), emotion ids and speakers (N)."""

    coeffs: dict[str, np.ndarray]
    factors: dict[str, np.ndarray]
    emotion: np.ndarray
    speaker: np.ndarray

    def __len__(self) -> int:
        return len(self.emotion)


@dataclass
class RidgeProbe:
    """A fitted linear read-out y = ((x - mean) / std) @ w + b."""

    mean: np.ndarray
    std: np.ndarray
    w: np.ndarray
    b: float
    alpha: float

    def predict(self, x: np.ndarray) -> np.ndarray:
        """x: N x k -> N predictions."""
        return ((np.asarray(x, np.float64) - self.mean) / self.std) @ self.w + self.b


def standardiser(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (constant columns get std 1) of the rows of x (N x k)."""
    mean = x.mean(0)
    std = x.std(0)
    return mean, np.where(std > 1e-12, std, 1.0)


def r2_score(y: np.ndarray, pred: np.ndarray) -> float:
    """1 - SSE / SST around the mean of y; nan when y is constant."""
    y, pred = np.asarray(y, np.float64), np.asarray(pred, np.float64)
    sst = float(((y - y.mean()) ** 2).sum())
    if sst <= 1e-12 * max(len(y), 1):
        return float("nan")
    return 1.0 - float(((y - pred) ** 2).sum()) / sst


def _ridge(z: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    """Closed-form ridge on standardised z (N x k): argmin mean (y - z w - b)^2 + alpha |w|^2."""
    n, k = z.shape
    zc, yc = z - z.mean(0), y - y.mean()
    w = np.linalg.solve(zc.T @ zc / n + alpha * np.eye(k), zc.T @ yc / n)
    return w, float(y.mean() - z.mean(0) @ w)


def fit_ridge(
    x: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None, alphas: tuple[float, ...] = ALPHAS
) -> RidgeProbe:
    """Ridge probe on standardised x (N x k) for y (N); alpha by leave-one-group-out R^2 when >1 group."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    mean, std = standardiser(x)
    z = (x - mean) / std
    alpha = _select_alpha(z, y, groups, alphas) if groups is not None else alphas[len(alphas) // 2]
    w, b = _ridge(z, y, alpha)
    return RidgeProbe(mean, std, w, b, alpha)


def _select_alpha(z: np.ndarray, y: np.ndarray, groups: np.ndarray, alphas: tuple[float, ...]) -> float:
    names = np.unique(groups)
    if len(names) < 2:
        return alphas[len(alphas) // 2]
    best, best_score = alphas[0], -math.inf
    for alpha in alphas:
        scores = []
        for g in names:
            held = groups == g
            w, b = _ridge(z[~held], y[~held], alpha)
            r = r2_score(y[held], z[held] @ w + b)
            scores.append(-1.0 if math.isnan(r) else r)
        if float(np.mean(scores)) > best_score:
            best, best_score = alpha, float(np.mean(scores))
    return best


def ridge_probe_r2(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    groups: np.ndarray | None = None,
) -> float:
    """Out-of-sample R^2 on (x_test, y_test) of a ridge probe fitted on the training rows."""
    return r2_score(y_test, fit_ridge(x_train, y_train, groups).predict(x_test))


def logistic_probe_acc(
    x_train: np.ndarray,
    labels_train: np.ndarray,
    x_test: np.ndarray,
    labels_test: np.ndarray,
    l2: float = 1e-3,
    iters: int = 200,
) -> float:
    """Top-1 accuracy on the test rows of a multinomial logistic probe fitted on standardised training rows."""
    mean, std = standardiser(np.asarray(x_train, np.float64))
    classes, y = np.unique(labels_train, return_inverse=True)
    z = torch.from_numpy((x_train - mean) / std)
    target = torch.from_numpy(y)
    w = torch.zeros(z.shape[1], len(classes), dtype=torch.float64, requires_grad=True)
    b = torch.zeros(len(classes), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=iters, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z @ w + b, target) + l2 * (w**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        logits = torch.from_numpy((np.asarray(x_test, np.float64) - mean) / std) @ w + b
    pred = classes[logits.argmax(1).numpy()]
    return float((pred == np.asarray(labels_test)).mean())


def probe_table(train: ProbeData, test: ProbeData) -> dict[str, Any]:
    """{"r2": {group: {factor: out-of-sample R^2}}, "emotion_probe_acc": {group: accuracy}}."""
    r2: dict[str, dict[str, float]] = {}
    acc: dict[str, float] = {}
    for group, x_tr in train.coeffs.items():
        x_te = test.coeffs[group]
        r2[group] = {
            f: ridge_probe_r2(x_tr, train.factors[f], x_te, test.factors[f], train.speaker)
            for f in FACTORS
            if f in train.factors
        }
        acc[group] = logistic_probe_acc(x_tr, train.emotion, x_te, test.emotion)
    return {"r2": r2, "emotion_probe_acc": acc}


def chance_corrected(acc: float, num_classes: int) -> float:
    """(acc - 1/C) / (1 - 1/C): 0 at chance, 1 when perfect."""
    chance = 1.0 / num_classes
    return (acc - chance) / (1.0 - chance)


def disentanglement_score(
    r2: dict[str, dict[str, float]], emotion_acc: dict[str, float] | None = None, num_emotions: int = 4
) -> float:
    """Mean over factors of value(intended group) - max value(other groups); values clipped to [0, 1].

    A factor is skipped when its intended group is absent or its R^2 is nan (constant factor).
    """
    values: dict[str, dict[str, float]] = {f: {g: r2[g][f] for g in r2 if f in r2[g]} for f in FACTORS}
    if emotion_acc:
        values["emotion"] = {g: chance_corrected(a, num_emotions) for g, a in emotion_acc.items()}
    gaps = []
    for factor, per_group in values.items():
        owner = INTENDED[factor]
        if owner not in per_group or math.isnan(per_group[owner]):
            continue
        clip = {g: min(max(v, 0.0), 1.0) for g, v in per_group.items() if not math.isnan(v)}
        others = [v for g, v in clip.items() if g != owner]
        gaps.append(clip[owner] - (max(others) if others else 0.0))
    return float(np.mean(gaps)) if gaps else float("nan")
