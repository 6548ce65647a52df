"""`edtalk evaluate --checkpoint`: render a split with a generator and collect its bank diagnostics.

Protocols (the field's standard pair):
- video-driven self-reconstruction: for each ground-truth clip the first frame is the source (encoded
  once) and every frame drives mouth, pose and expression -> `<out>/render/<clip id>.mp4`;
- audio-driven (with an Audio2Lip model): the mouth comes from the clip's own audio (mel windows,
  temporally smoothed as at inference), pose and expression from the ground-truth frames (GT pose)
  -> `<out>/render_audio/<clip id>.mp4`; the clip is floor(len(audio) / 640) frames long.
Videos are written at the generator's resolution with the clip's audio. Coefficients of the
ground-truth frames feed the coefficient-correlation matrix and, where the clip metadata carries the
built-in dataset's `factors`, the disentanglement score: out-of-sample linear probes fitted on the
training speakers and scored on the test speaker (`metrics.disentanglement`, metrics/DISENTANGLEMENT.md).
"""

from __future__ import annotations

from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edtalk.io import from_uint8, to_uint8, write_video
from edtalk.nn.generator import Generator
from edtalk.pipeline.render import Renderer
from metrics.judges import resize_frames
from metrics.orthogonality import Disentanglement, bank_diagnostics
from metrics.runner import ground_truth, heatmap


@torch.no_grad()
def reconstruct(
    gen: Generator, frames: torch.Tensor, batch: int = 16
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """frames: T x 3 x S x S in [-1, 1] -> rendered T x 3 x S x S and per-frame coefficients.

    The first frame is the source (encoded once); every frame drives mouth, pose and expression.
    """
    renderer = Renderer(gen, chunk_size=batch, channels_last=False)
    return renderer(frames[:1], drivers=frames)


@torch.no_grad()
def reconstruct_from_audio(
    gen: Generator, audio2lip: torch.nn.Module, frames: torch.Tensor, wav: np.ndarray, batch: int = 16
) -> torch.Tensor:
    """Mouth from `wav` through Audio2Lip, pose/expression from `frames` (T x 3 x S x S) -> T' x 3 x S x S."""
    from edtalk.mel import mel_windows, smooth_coefficients

    windows = torch.from_numpy(mel_windows(wav)).to(frames.device)  # -> T' x 1 x 80 x 16
    t = min(len(windows), len(frames))
    mouth = smooth_coefficients(audio2lip(windows[:t]).float(), padding="replicate")  # -> T' x 20
    renderer = Renderer(gen, chunk_size=batch, channels_last=False)
    motion = dict.fromkeys(renderer.components) | {"mouth": mouth}
    return renderer(frames[:1], motion, drivers=frames[:t])[0]


def render_split(
    checkpoint: str | Path,
    split: str,
    gt_root: str | Path | None,
    out: Path,
    max_clips: int | None = None,
    device: str = "cpu",
    audio2lip: str | Path | None = None,
    clips: list[str] | None = None,
    probes: bool = True,
) -> tuple[dict[str, Path], dict[str, Any]]:
    """Render the split (video-driven, and audio-driven when `audio2lip` is given).

    Returns:
        {"video": out/render[, "audio": out/render_audio]} and the orthogonality report.
    """
    from edtalk import weights

    gen = weights.load_generator(checkpoint).to(device).eval()
    a2l = weights.load(audio2lip, "audio2lip").to(device).eval() if audio2lip else None
    folders = {"video": out / "render"} | ({"audio": out / "render_audio"} if a2l is not None else {})
    size = gen.cfg.size
    dims = {k: v.shape[1] for k, v in gen.banks.split(gen.basis()).items()}
    dis = Disentanglement(dims, with_factors=True)
    corr_only = Disentanglement(dims, with_factors=False)
    has_factors = False
    for gt in islice(ground_truth(split, gt_root, clips), max_clips):
        frames = resize_frames(from_uint8(gt.frames), size).to(device)
        rendered, coeffs = reconstruct(gen, frames)
        write_video(folders["video"] / f"{gt.clip_id}.mp4", to_uint8(rendered), audio=gt.wav)
        if a2l is not None:
            from_audio = reconstruct_from_audio(gen, a2l, frames, gt.wav)
            write_video(folders["audio"] / f"{gt.clip_id}.mp4", to_uint8(from_audio), audio=gt.wav)
        factors = gt.meta.get("factors")
        if factors:
            has_factors = True
            dis.update(coeffs, {**factors, "emotion_id": factors["emotion_id"]})
        corr_only.update(coeffs)
    report = _diagnostics(gen, dis if has_factors else corr_only, out / "plots")
    if has_factors and probes:  # `probes=False`: the caller measures them itself (the quickstart)
        report["disentanglement"] = _probes(gen, gt_root, out / "plots")
    return folders, report


def _probes(gen: Generator, gt_root: str | Path | None, plots: Path) -> dict[str, Any]:
    """Out-of-sample probe tables and score of the generator on the shards' train/test speakers."""
    from metrics.disentanglement import measure, probe_heatmap

    if gt_root is None:
        from datamodules.synthetic import ensure_builtin

        gt_root = ensure_builtin()
    result = measure({"generator": gen}, gt_root)
    probe_heatmap(result, plots / "disentanglement_probes.png")
    row = result["generator"]
    return {
        "score": row["disentanglement_score"],
        "r2": row["r2"],
        "emotion_probe_acc": row["emotion_probe_acc"],
    }


def _diagnostics(gen: Generator, metric: Disentanglement, plots: Path) -> dict[str, Any]:
    diag = bank_diagnostics(gen)
    labels = [f"{k}{i}" for k, d in diag["sizes"].items() for i in range(d)]
    heatmap(diag["gram"], "Q^T Q (orthonormalised banks)", plots / "gram.png", labels)
    heatmap(diag["raw_cosines"], "cosines of learned bank columns", plots / "gram_raw.png", labels)
    result = metric.compute()
    heatmap(result["correlation"], "coefficient correlation", plots / "coeff_correlation.png", labels)
    report: dict[str, Any] = {
        "orthogonality": {k: diag[k] for k in ("orthonormality_error", "overlap", "raw_overlap", "sizes")},
    }
    return report
