"""Disentanglement of a generator's coefficient groups on data with known factors (the built-in dataset).

`measure({"ours": gen, "floor": random_init_gen}, shards)` reads the frames of the training speakers
and of the held-out test speaker once, extracts each generator's per-frame coefficients (mouth 20,
pose 6, expression 10), fits linear probes on the training speakers and scores them on the test
speaker (see `metrics.functional.disentanglement` for the probes and the score). Result per generator:
``{"r2": {group: {factor: R^2}}, "emotion_probe_acc": {group: acc}, "disentanglement_score": s}``;
`probe_heatmap` draws one table as a heatmap. `mouth_probe_from` returns the fitted mouth-opening read-out,
which scores audio-predicted mouth coefficients against the true opening (`mouth_open_corr`).

Documented in `metrics/DISENTANGLEMENT.md`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edtalk.io import from_uint8
from edtalk.nn.generator import Generator
from metrics.functional.disentanglement import (
    FACTORS,
    GROUPS,
    ProbeData,
    RidgeProbe,
    disentanglement_score,
    fit_ridge,
    probe_table,
)
from metrics.judges import resize_frames


@torch.no_grad()
def clip_coefficients(gen: Generator, frames: torch.Tensor, batch: int = 32) -> dict[str, np.ndarray]:
    """frames: T x 3 x H x W in [-1, 1] (any size; resized to the generator's) -> {group: T x k}."""
    out: dict[str, list[torch.Tensor]] = {}
    device = next(gen.parameters()).device
    for i in range(0, len(frames), batch):
        chunk = resize_frames(frames[i : i + batch].to(device), gen.cfg.size)
        for k, v in gen.coefficients(chunk).items():
            out.setdefault(k, []).append(v.float().cpu())
    return {k: torch.cat(v).numpy().astype(np.float64) for k, v in out.items()}


def collect(
    gens: dict[str, Generator], root: str | Path, split: str, max_frames: int | None = None
) -> dict[str, ProbeData]:
    """Per generator, the probe data of every clip of `split` (frames decoded once for all generators)."""
    from datamodules.shards import iter_clips

    rows: dict[str, list[dict[str, np.ndarray]]] = {name: [] for name in gens}
    factors: list[dict[str, np.ndarray]] = []
    for clip in iter_clips(root, split):
        known = clip.meta.get("factors")
        if not known:
            raise ValueError(
                f"{clip.key}: no per-frame 'factors' in the clip metadata; disentanglement is measured on "
                "the built-in dataset (edtalk quickstart builds it)"
            )
        t = min(clip.num_frames, len(known["mouth_open"]), max_frames or clip.num_frames)
        frames = from_uint8(torch.from_numpy(clip.frames(range(t)))).float()  # -> T x 3 x H x W
        sized: dict[int, torch.Tensor] = {}  # the frames at each generator size, resized once per clip
        for name, gen in gens.items():
            size = gen.cfg.size
            if size not in sized:
                sized[size] = torch.cat([resize_frames(c, size) for c in frames.split(32)])
            rows[name].append(clip_coefficients(gen, sized[size]))
        per = {f: np.asarray(known[f][:t], np.float64) for f in FACTORS}
        per["emotion"] = np.full(t, int(known["emotion_id"]))
        per["speaker"] = np.full(t, str(clip.meta.get("speaker", clip.key.split("#")[0])))
        factors.append(per)
    if not factors:
        raise ValueError(f"no {split} clips under {root}")
    cat = {k: np.concatenate([f[k] for f in factors]) for k in factors[0]}
    return {
        name: ProbeData(
            coeffs={g: np.concatenate([r[g] for r in clips]) for g in clips[0]},
            factors={f: cat[f] for f in FACTORS},
            emotion=cat["emotion"],
            speaker=cat["speaker"],
        )
        for name, clips in rows.items()
    }


def scores(train: ProbeData, test: ProbeData) -> dict[str, Any]:
    """{"r2", "emotion_probe_acc", "disentanglement_score"} of one generator's probe data."""
    table = probe_table(train, test)
    classes = len(np.unique(train.emotion))
    score = disentanglement_score(table["r2"], table["emotion_probe_acc"], classes)
    return {**table, "disentanglement_score": score}


def measure(
    gens: dict[str, Generator], root: str | Path, max_frames: int | None = None
) -> dict[str, dict[str, Any]]:
    """{name: {"r2", "emotion_probe_acc", "disentanglement_score"}}: probes fit on train, scored on test."""
    train = collect(gens, root, "train", max_frames)
    test = collect(gens, root, "test", max_frames)
    return {name: scores(train[name], test[name]) for name in gens}


def mouth_probe_from(train: ProbeData) -> RidgeProbe:
    """The ridge read-out mouth coefficients -> mouth opening, fitted on the training speakers' frames."""
    return fit_ridge(train.coeffs["mouth"], train.factors["mouth_open"], train.speaker)


def pearson(a: Iterable[float], b: Iterable[float]) -> float:
    """Pearson correlation of two equal-length sequences (nan when one is constant)."""
    x, y = np.asarray(list(a), np.float64), np.asarray(list(b), np.float64)
    if x.std() < 1e-12 or y.std() < 1e-12:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def probe_heatmap(results: dict[str, dict[str, Any]], path: Path) -> Path:
    """One panel per generator: rows = coefficient groups, columns = factors (R^2, emotion: accuracy)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    cols = [*FACTORS, "emotion (acc)"]
    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 2.8), squeeze=False)
    for ax, (name, res) in zip(axes[0], results.items()):
        groups = [g for g in GROUPS if g in res["r2"]]
        grid = np.array([[res["r2"][g][f] for f in FACTORS] + [res["emotion_probe_acc"][g]] for g in groups])
        im = ax.imshow(np.clip(grid, -1, 1), cmap="RdBu_r", vmin=-1, vmax=1)
        for (i, j), v in np.ndenumerate(grid):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7)
        ax.set_xticks(range(len(cols)), cols, rotation=30, fontsize=7)
        ax.set_yticks(range(len(groups)), groups, fontsize=8)
        ax.set_title(f"{name}: score {res['disentanglement_score']:.2f}", fontsize=9)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return path
