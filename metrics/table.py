"""The one table of metrics: what each needs, how it scores a clip, how its clips aggregate.

A row names the values it writes (`outputs`), the judges it needs (all must be loaded), the per-clip
inputs it reads (`needs`, computed once per clip by `ClipInputs` and shared by every metric that asks),
its `score` (one clip -> the per-clip row values + a `part`, the clip's contribution) and its `fold`
(the parts of all clips, in clip order -> the split's values). The runner keeps the parts, writes them
to disk per clip (resume, shards) and folds them at the end, so one machine, a resumed run and merged
shards give the same numbers. Adding a metric = its functional core, its Metric class, one row here.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import torch

from edtalk.io import from_uint8
from metrics.base import MeanMetric
from metrics.functional.fid import evenly_spaced, frechet_distance, moments

Part = Any  # a clip's contribution: arrays / floats that `fold` replays


@dataclass
class Options:
    """Settings of the default suite (`MethodScorer`)."""

    fid_frames: int = 5  # frames per clip for FID (0: all)
    lse_crop: bool = True  # LSE: dlib face crop (False: whole frames resized)
    csim_frames: int | None = None  # CSIM on that many evenly spaced frames (None: all)
    # the shared path: one dlib detection per result video for CSIM, LMD and the LSE crop, CSIM's
    # descriptors batched in PyTorch (`DlibFaceResNet`), the first ground-truth frame's descriptor cached
    # on disk, SSIM by scikit-image on the uint8 frames, channels-last LPIPS, SyncNet and
    # Emotion-FAN (its batch norms folded, `EmotionFAN.fused`) (False: each metric prepares its own
    # inputs, dlib's descriptor per frame: the path before issue 29 and the baseline of
    # benchmarks/evaluate.py)
    fast: bool = True


class ClipInputs:
    """Everything a metric may need for one clip, each computed on first use and then shared."""

    def __init__(self, gt: Any, pred: np.ndarray, wav: np.ndarray, judges: Any, opts: Options) -> None:
        self.gt, self.wav, self.j, self.opts = gt, wav, judges, opts
        self.t = min(len(pred), len(gt.frames))
        self.p_u8, self.g_u8 = pred[: self.t], gt.frames[: self.t]

    @cached_property
    def p(self) -> torch.Tensor:
        """Result frames T x 3 x H x W in [-1, 1]."""
        return from_uint8(self.p_u8)

    @cached_property
    def g(self) -> torch.Tensor:
        """Ground-truth frames T x 3 x H x W in [-1, 1]."""
        return from_uint8(self.g_u8)

    @cached_property
    def boxes(self) -> list[Any]:
        """dlib face boxes of the result frames (detected once per video)."""
        return list(self.j.dlib.boxes(self.p_u8))

    @cached_property
    def lp(self) -> torch.Tensor:
        """dlib 68 landmarks of the result frames, T x 68 x 2."""
        return torch.from_numpy(self.j.dlib.landmarks(self.p_u8, self.boxes))

    @cached_property
    def lg(self) -> torch.Tensor:
        """dlib landmarks of the ground truth (computed once per clip, shared by every method)."""
        if self.gt.lmk is None:
            import dlib

            from metrics.clips import gt_cached
            from metrics.judges import dlib_model_file

            files = [dlib_model_file("shape_predictor_68_face_landmarks.dat")]
            kind = f"dlib-landmarks-{dlib.__version__}"
            self.gt.lmk = gt_cached(self.gt, kind, files, lambda: self.j.dlib.landmarks(self.gt.frames))
        return torch.from_numpy(self.gt.lmk)[: self.t]

    @cached_property
    def lse_frames(self) -> torch.Tensor:
        """syncnet_python's 224-px input frames of the result."""
        from metrics.sync import face_crops_224

        if not self.opts.lse_crop:
            return face_crops_224(self.p_u8)
        # the boxes CSIM and LMD use: the same detector, the same frames (no dlib judge: its own crops)
        if self.opts.fast and self.j.dlib is not None:
            return face_crops_224(self.p_u8, boxes=self.boxes)
        return face_crops_224(self.p_u8, self.j.dlib)

    @cached_property
    def source_embedding(self) -> torch.Tensor:
        """dlib 128-d embedding of the clip's first ground-truth frame, 1 x 128 (CSIM's source)."""
        compute = lambda: self.j.dlib.embeddings(self.gt.frames[:1])  # noqa: E731
        if not self.opts.fast:
            return torch.from_numpy(compute())
        import dlib

        from metrics.clips import gt_cached
        from metrics.judges import dlib_model_file

        names = ("shape_predictor_5_face_landmarks.dat", "dlib_face_recognition_resnet_model_v1.dat")
        kind = f"dlib-embedding-first-frame-{dlib.__version__}"
        return torch.from_numpy(gt_cached(self.gt, kind, [dlib_model_file(n) for n in names], compute))


Score = Callable[[Any, ClipInputs], tuple[dict[str, Any], Part]]
Fold = Callable[[Sequence[Part]], dict[str, float]]


@dataclass(frozen=True)
class MetricRow:
    """One metric (or a pair scored together, LSE-D/C) of the default suite."""

    name: str
    outputs: tuple[str, ...]
    judges: tuple[str, ...]
    needs: tuple[str, ...]
    aggregate: str  # how clips combine, in words (docs and the table caption)
    make: Callable[[Any, Options], Any]  # (judges, options) -> the Metric that scores one clip
    score: Score
    fold: Fold


# -- folds: the parts of all clips -> values ------------------------------------------------------
class _Sum(MeanMetric):
    """`MeanMetric`'s float64 (sum, count) over values given as they are."""

    def update(self, values: torch.Tensor) -> None:
        self._add(values)


def fold_mean(name: str) -> Fold:
    """Per-item values (frames or clips) -> their mean, in float64 as `MeanMetric` sums them."""

    def fold(parts: Sequence[Part]) -> dict[str, float]:
        if not parts:
            return {name: math.nan}
        acc = _Sum()
        for values in parts:
            acc.update(torch.as_tensor(np.asarray(values)))
        return {name: float(acc.compute())}

    return fold


def fold_fid(parts: Sequence[Part]) -> dict[str, float]:
    """Inception features of both sides, pooled over clips -> FID (as `FID`: float64 sums in batches of 32)."""
    sums: dict[str, list[torch.Tensor]] = {}
    for side in ("real", "fake"):
        total = outer = None
        n = 0
        for part in parts:
            feats = torch.as_tensor(np.asarray(part[side]))
            for i in range(0, len(feats), 32):
                f = feats[i : i + 32].double()
                total = f.sum(0) if total is None else total + f.sum(0)
                outer = f.t() @ f if outer is None else outer + f.t() @ f
                n += f.shape[0]
        if total is None or outer is None or n < 2:
            return {"fid": math.nan}
        sums[side] = [total, outer, torch.tensor(n)]
    mu1, s1 = moments(*sums["real"])
    mu2, s2 = moments(*sums["fake"])
    return {"fid": float(torch.tensor(frechet_distance(mu2, s2, mu1, s1), dtype=torch.float64))}


def fold_lse(parts: Sequence[Part]) -> dict[str, float]:
    """Per-video (LSE-D, LSE-C) -> their means (float64, as `LSE`)."""
    if not parts:
        return {}
    d = c = torch.tensor(0.0, dtype=torch.float64)
    for lse_d, lse_c in parts:
        d, c = d + float(lse_d), c + float(lse_c)
    n = torch.tensor(len(parts)).clamp_min(1)
    return {"lse_d": float(d / n), "lse_c": float(c / n)}


def fold_hits(name: str) -> Fold:
    """Per-clip hits (True/False) -> percent correct."""

    def fold(parts: Sequence[Part]) -> dict[str, float]:
        return {name: 100.0 * float(np.mean(parts)) if len(parts) else math.nan}

    return fold


# -- scores: one clip -> (row values, part) -------------------------------------------------------
def _mean_values(metric: MeanMetric, values: torch.Tensor, name: str) -> tuple[dict[str, Any], Part]:
    metric._add(values)
    return {name: metric.last}, values.detach().double().reshape(-1).numpy()


def score_image(name: str) -> Score:
    """PSNR / SSIM / LPIPS: per-frame values of the result against the ground truth."""

    def score(metric: Any, x: ClipInputs) -> tuple[dict[str, Any], Part]:
        return _mean_values(metric, metric.values(x.p, x.g), name)

    return score


def score_fid(metric: Any, x: ClipInputs) -> tuple[dict[str, Any], Part]:
    """Inception features of the same frames of both sides (the ground truth's cached on disk per
    frame selection when the judge's file is known)."""
    idx = evenly_spaced(x.t, x.opts.fid_frames) if x.opts.fid_frames else list(range(x.t))
    file = getattr(x.j, "files", {}).get("inception")
    if file is None:
        real = metric.features(x.g[idx])
    else:
        from metrics.clips import gt_cached

        kind = "fid-real-" + hashlib.sha256(str(idx).encode()).hexdigest()[:12]
        real = gt_cached(x.gt, kind, [file], lambda: metric.features(x.g[idx]))
    return {}, {"real": real, "fake": metric.features(x.p[idx])}


def score_lmd(name: str) -> Score:
    def score(metric: Any, x: ClipInputs) -> tuple[dict[str, Any], Part]:
        return _mean_values(metric, metric.values(x.lp, x.lg), name)

    return score


def score_csim(metric: Any, x: ClipInputs) -> tuple[dict[str, Any], Part]:
    """CSIM against the clip's first ground-truth frame (dlib 128-d, or ArcFace when loaded)."""
    t, j = x.t, x.j
    idx = evenly_spaced(t, x.opts.csim_frames) if x.opts.csim_frames else list(range(t))
    if j.arcface is not None:
        from metrics.judges import arcface_crops

        src = j.arcface(arcface_crops(x.g_u8[:1], x.lg[:1].numpy()))
        emb = j.arcface(arcface_crops(x.p_u8[idx], x.lp[idx].numpy()))
    else:
        src = x.source_embedding
        boxes = [x.boxes[i] for i in idx]
        emb = torch.from_numpy(j.dlib.embeddings(x.p_u8[idx], boxes, batched=x.opts.fast))
    return _mean_values(metric, metric.values(src[0], emb), "csim")


def score_lse(metric: Any, x: ClipInputs) -> tuple[dict[str, Any], Part]:
    metric.update(x.lse_frames, x.wav)
    return dict(metric.last.as_dict()), (metric.last.lse_d, metric.last.lse_c)


def score_emotion(metric: Any, x: ClipInputs) -> tuple[dict[str, Any], Part]:
    from metrics.functional.emotion import EMOTIONS, emotion_label

    logits = x.j.emotion(x.p[None])  # 1 x T x 3 x H x W -> 1 x 8
    values = metric.values(logits[:, None], emotion_label(x.gt.clip_id))
    _, part = _mean_values(metric, values, "emotion_acc")
    return {"emotion_pred": EMOTIONS[int(logits.argmax())]}, part


def score_fan(fan: Any, x: ClipInputs) -> tuple[dict[str, Any], Part]:
    return fan.add(x.gt.clip_id, x.p_u8)


def _make(
    cls_path: str, judge: str | None = None, fast: dict[str, Any] | None = None, **kw: Any
) -> Callable[[Any, Options], Any]:
    """`cls(judge, **kw)`, with `fast` added to `kw` on the shared path (`Options.fast`)."""

    def make(judges: Any, opts: Options) -> Any:
        import importlib

        module, name = cls_path.rsplit(".", 1)
        cls = getattr(importlib.import_module(module), name)
        kwargs = {**kw, **(fast or {})} if opts.fast else kw
        return cls(getattr(judges, judge), **kwargs) if judge else cls(**kwargs)

    return make


# The default suite (`--protocol ours`), in the order the per-clip rows list them.
TABLE: tuple[MetricRow, ...] = (
    MetricRow("psnr", ("psnr",), (), ("frames",), "mean over all frames", _make("metrics.image.PSNR"),
              score_image("psnr"), fold_mean("psnr")),
    MetricRow("ssim", ("ssim",), (), ("frames",), "mean over all frames",
              _make("metrics.image.SSIM", None, {"uint8_frames": True}), score_image("ssim"), fold_mean("ssim")),
    MetricRow("lpips", ("lpips",), ("alexnet",), ("frames",), "mean over all frames",
              _make("metrics.image.LPIPS", "alexnet", {"channels_last": True}), score_image("lpips"),
              fold_mean("lpips")),
    MetricRow("fid", ("fid",), ("inception",), ("frames",), "features of 5 frames per clip, pooled",
              _make("metrics.fid.FID", "inception"), score_fid, fold_fid),
    MetricRow("csim", ("csim",), ("dlib",), ("frames", "boxes", "landmarks"), "mean over all frames",
              _make("metrics.identity.CSIM"), score_csim, fold_mean("csim")),
    MetricRow("m_lmd", ("m_lmd",), ("dlib",), ("landmarks",), "mean over clips",
              _make("metrics.landmarks.LMD", region="mouth"), score_lmd("m_lmd"), fold_mean("m_lmd")),
    MetricRow("f_lmd", ("f_lmd",), ("dlib",), ("landmarks",), "mean over clips",
              _make("metrics.landmarks.LMD", region="face"), score_lmd("f_lmd"), fold_mean("f_lmd")),
    MetricRow("lse", ("lse_d", "lse_c"), ("syncnet",), ("lse_crops", "audio"), "mean over clips",
              _make("metrics.sync.LSE", "syncnet", {"channels_last": True}), score_lse, fold_lse),
    MetricRow("emotion_acc", ("emotion_acc",), ("emotion",), ("frames",), "mean over clips",
              _make("metrics.emotion.EmotionAccuracy"), score_emotion, fold_mean("emotion_acc")),
    MetricRow("emotion_fan_acc", ("emotion_fan_acc",), ("emotion_fan",), ("frames",), "% of clips",
              lambda j, o: FanJudge(j.emotion_fan, o.fast), score_fan, fold_hits("emotion_fan_acc")),
)  # fmt: skip


class FanJudge:
    """Emotion-FAN on EAT's face-chip inputs of a clip's frames: (row, hit or None without a face)."""

    def __init__(self, net: torch.nn.Module, fast: bool = False) -> None:
        from metrics.eat import EmotionFANInputs
        from metrics.judges import EmotionFAN

        if fast and isinstance(net, EmotionFAN):
            net = net.fused()  # batch norms folded into the convolutions, channels-last
        self.net, self.prep, self.channels_last = net, EmotionFANInputs(), fast

    @torch.no_grad()
    def add(self, clip_id: str, frames: np.ndarray) -> tuple[dict[str, Any], Part]:
        from metrics.eat import emotion_fan_label
        from metrics.judges.emotion_fan import EMOTION_FAN_LABELS

        faces = self.prep(frames)
        if not len(faces):
            return {"emotion_fan_pred": "no face"}, None
        if self.channels_last:
            faces = faces.contiguous(memory_format=torch.channels_last)
        pred = int(self.net(faces).argmax())
        return {"emotion_fan_pred": EMOTION_FAN_LABELS[pred]}, pred == emotion_fan_label(clip_id)


def fold_parts(rows: Sequence[MetricRow], parts: Sequence[dict[str, Part]]) -> dict[str, float]:
    """The split's values of `rows` from the clips' parts (in clip order; a None part is left out)."""
    out: dict[str, float] = {}
    for row in rows:
        out.update(row.fold([p[row.name] for p in parts if p.get(row.name) is not None]))
    return out


HIGHER_IS_BETTER = {
    "psnr": True, "ssim": True, "lpips": False, "fid": False, "csim": True, "m_lmd": False, "f_lmd": False,
    "lse_d": False, "lse_c": True, "emotion_acc": True, "emotion_fan_acc": True,
}  # fmt: skip
# metric -> (higher is better, judge it needs), every output of the table in order
METRICS: dict[str, tuple[bool, str]] = {
    out: (HIGHER_IS_BETTER[out], row.judges[0] if row.judges else "") for row in TABLE for out in row.outputs
}
# table headers where the metric name alone would be ambiguous
LABELS = {"emotion_acc": "acc_emo (ours-classifier)", "emotion_fan_acc": "acc_emo (Emotion-FAN)"}
# the papers' column order (EDTalk Table 1, EAT): (header, the metrics that fill it, first found wins)
PAPER_COLUMNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("PSNR", ("psnr",)),
    ("SSIM", ("ssim",)),
    ("FID", ("fid",)),
    ("M-LMD", ("m_lmd",)),
    ("F-LMD", ("f_lmd",)),
    ("LSE-C", ("lse_c",)),
    ("LSE-D", ("lse_d",)),
    ("Acc_emo", ("emotion_fan_acc", "emotion_acc")),
)
