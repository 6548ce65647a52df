"""Did training learn EDTalk? The main job's learning table on the built-in data's held-out speaker.

For our trained networks and, as the floor, freshly initialised networks of the same architectures
(seeded), `learning_table` measures on the held-out test speaker:

* `psnr_video`: video-driven self-reconstruction PSNR (first frame = source, every frame drives);
* `psnr_audio`: mouth from the clip's audio through audio2mouth, pose/expression from the frames;
* `r2`, `emotion_probe_acc`, `disentanglement_score`: out-of-sample linear probes of each coefficient
  group (probes fitted on the training speakers, `metrics.disentanglement`);
* `sync_acc`: the syncnet's in-sync vs shifted accuracy (its validation on the test speaker);
* `emotion_judge_acc`: the emotion classifier's validation accuracy on the test speaker;
* `mouth_open_corr_audio`: Pearson correlation of the mouth opening read out (mouth probe) from
  audio2mouth's predicted coefficients with the true opening.

Keys are an interface (`summary.json` -> "learning"); a value that cannot be measured is None.
"""

from __future__ import annotations

import math
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import torch

TARGETS: dict[str, tuple[str, float]] = {
    "psnr_video": (">=", 25.0),
    "psnr_audio": (">=", 22.0),
    "disentanglement_score": (">=", 0.6),
    "sync_acc": (">=", 0.9),
    "emotion_judge_acc": (">=", 0.95),
    "mouth_open_corr_audio": (">=", 0.7),
    "r2.mouth.mouth_open": (">=", 0.8),
    "r2.pose.yaw_pitch_roll": (">=", 0.8),
    "r2.off_diagonal_max": ("<=", 0.2),
    "emotion_probe_acc.exp": (">=", 0.9),
    "emotion_probe_acc.mouth": ("<=", 0.5),
    "emotion_probe_acc.pose": ("<=", 0.5),
    "acc_emo_generated": (">=", 0.8),
    "acc_emo_audio": (">=", 0.8),
}
KEYS = (
    "psnr_video",
    "psnr_audio",
    "r2",
    "emotion_probe_acc",
    "disentanglement_score",
    "sync_acc",
    "emotion_judge_acc",
    "mouth_open_corr_audio",
)


def floor_generator(gen: Any, seed: int = 0) -> Any:
    """A freshly initialised generator of `gen`'s architecture (the floor), seeded, in eval mode."""
    return floor_from_config(gen.cfg, seed)


def floor_from_config(cfg: Any, seed: int = 0) -> Any:
    """The floor of a `GeneratorConfig` (before any generator of it exists: `learning_probes`)."""
    from edtalk.nn.generator import Generator

    torch.manual_seed(seed)
    return Generator(cfg).eval()


def floor_audio2lip(path: Path, seed: int = 0) -> torch.nn.Module:
    """A freshly initialised audio2mouth network with the configuration stored in our export `path`."""
    from edtalk.nn.audio2lip import Audio2Lip
    from edtalk.weights import load_file

    config = dict(load_file(path).get("config") or {})
    torch.manual_seed(seed)
    return Audio2Lip(**config).eval()


def psnr(pred: torch.Tensor, target: torch.Tensor) -> float:
    """PSNR in dB of images in [-1, 1] (peak-to-peak 2), over all pixels of the batch."""
    mse = float((pred.clamp(-1, 1) - target).pow(2).mean())
    return 10 * math.log10(4.0 / max(mse, 1e-10))


@torch.no_grad()
def clip_psnrs(
    gen: Any, audio2lip: torch.nn.Module | None, root: Path, clips: int
) -> tuple[float, float | None, list[tuple[np.ndarray, np.ndarray]]]:
    """Mean video- and audio-driven PSNR over the first `clips` test clips, and per clip
    (predicted audio mouth coefficients T' x 20, true opening T') for the mouth-opening correlation."""
    from edtalk.io import from_uint8
    from edtalk.mel import mel_windows, smooth_coefficients
    from metrics.judges import resize_frames
    from metrics.render import reconstruct, reconstruct_from_audio
    from metrics.runner import ground_truth

    video, audio, mouths = [], [], []
    for gt in islice(ground_truth("builtin", root), clips):
        frames = resize_frames(from_uint8(gt.frames).float(), gen.cfg.size)
        rendered, _ = reconstruct(gen, frames)
        video.append(psnr(rendered, frames))
        if audio2lip is None:
            continue
        from_audio = reconstruct_from_audio(gen, audio2lip, frames, gt.wav)
        audio.append(psnr(from_audio, frames[: len(from_audio)]))
        windows = torch.from_numpy(mel_windows(gt.wav))
        mouth = smooth_coefficients(audio2lip(windows).float(), padding="replicate").numpy()  # -> T' x 20
        opening = np.asarray(gt.meta["factors"]["mouth_open"], np.float64)
        t = min(len(mouth), len(opening))
        mouths.append((mouth[:t], opening[:t]))
    return float(np.mean(video)), (float(np.mean(audio)) if audio else None), mouths


def copy_source_psnr(root: Path, size: int, clips: int) -> float:
    """Mean PSNR over the first `clips` test clips of copying each clip's first frame (the source) to
    every frame, through the same path as `clip_psnrs`: the no-model baseline a reconstruction must beat."""
    from edtalk.io import from_uint8
    from metrics.judges import resize_frames
    from metrics.runner import ground_truth

    values = []
    for gt in islice(ground_truth("builtin", root), clips):
        frames = resize_frames(from_uint8(gt.frames).float(), size)  # -> T x 3 x S x S in [-1, 1]
        values.append(psnr(frames[:1].expand_as(frames), frames))
    return float(np.mean(values))


def mouth_open_corr(probe: Any, mouths: list[tuple[np.ndarray, np.ndarray]]) -> float | None:
    """Pearson r of probe(audio mouth coefficients) with the true opening over all test frames."""
    from metrics.disentanglement import pearson

    if not mouths:
        return None
    pred = np.concatenate([probe.predict(m) for m, _ in mouths])
    true = np.concatenate([o for _, o in mouths])
    r = pearson(pred, true)
    return None if math.isnan(r) else r


def validate_run(run_dir: Path | None, fresh: bool, seed: int = 0) -> float | None:
    """`val/accuracy` of a finished stage run on its validation (= test speaker) data; `fresh`: the same
    stage at initialisation (the floor). None when the run is absent."""
    from edtalk import runs

    if run_dir is None or not runs.config_file(run_dir).is_file():
        return None
    import warnings

    import lightning as L
    from omegaconf import DictConfig, OmegaConf

    from edtalk.stages import stage_class
    from edtalk.train import build_datamodule
    from edtalk.weights import load_file

    cfg = OmegaConf.load(runs.config_file(run_dir))
    assert isinstance(cfg, DictConfig)
    cfg.trainer.limit_val_batches = 1.0
    cls = stage_class(str(cfg.stage))
    cfg.model = OmegaConf.merge(OmegaConf.structured(cls.Config), cfg.model)  # typed, as `compose` makes it
    torch.manual_seed(seed)
    module = cls.build(cfg, resume=True)  # resume: no init_from file is read
    if not fresh:
        module.load_state_dict(load_file(runs.checkpoint(run_dir))["state_dict"])
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = trainer.validate(module, datamodule=build_datamodule(cfg), verbose=False)
    value = out[0].get("val/accuracy") if out else None
    return None if value is None else float(value)


def learning_table(
    generators: dict[str, Any],
    audio2lip: dict[str, torch.nn.Module | None],
    runs: dict[str, Path],
    root: Path,
    clips: int,
    collected: tuple[dict[str, Any], dict[str, Any]] | None = None,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """{"ours": {KEYS...}, "floor": {KEYS...}} for generators {"ours", "floor"} (see the module docstring).

    `seed`: of the fresh syncnet and emotion judge the floor's validations build.

    `collected`: (train, test) of `metrics.disentanglement.collect` already made for these generators
    (the caller's, when it probes more generators than these two); collected here otherwise."""
    from metrics.disentanglement import collect, mouth_probe_from, scores

    if collected is None:
        collected = collect(generators, root, "train"), collect(generators, root, "test")
    train, test = collected
    out: dict[str, dict[str, Any]] = {}
    for name, gen in generators.items():
        row: dict[str, Any] = scores(train[name], test[name])
        row["psnr_video"], row["psnr_audio"], mouths = clip_psnrs(gen, audio2lip.get(name), root, clips)
        row["mouth_open_corr_audio"] = mouth_open_corr(mouth_probe_from(train[name]), mouths)
        fresh = name != "ours"
        row["sync_acc"] = validate_run(runs.get("syncnet"), fresh, seed)
        row["emotion_judge_acc"] = validate_run(runs.get("emotion_classifier"), fresh, seed)
        out[name] = {k: row[k] for k in KEYS}
    return out


def target_checks(row: dict[str, Any]) -> dict[str, tuple[float | None, str, float, bool | None]]:
    """{target name: (value, op, threshold, met)} for one row of the learning table."""
    r2 = row.get("r2") or {}
    acc = row.get("emotion_probe_acc") or {}
    pose = [r2.get("pose", {}).get(f) for f in ("yaw", "pitch", "roll")]
    off = [
        v
        for g, per in r2.items()
        for f, v in per.items()
        if not (g == "mouth" and f == "mouth_open") and not (g == "pose" and f != "mouth_open")
    ]
    values: dict[str, float | None] = {k: row.get(k) for k in TARGETS if "." not in k} | {
        "r2.mouth.mouth_open": r2.get("mouth", {}).get("mouth_open"),
        "r2.pose.yaw_pitch_roll": float(np.mean(pose)) if pose and None not in pose else None,
        "r2.off_diagonal_max": max(off) if off else None,
        "emotion_probe_acc.exp": acc.get("exp"),
        "emotion_probe_acc.mouth": acc.get("mouth"),
        "emotion_probe_acc.pose": acc.get("pose"),
    }
    out: dict[str, tuple[float | None, str, float, bool | None]] = {}
    for key, (op, threshold) in TARGETS.items():
        v = values[key]
        ok = None if v is None or math.isnan(v) else (v >= threshold if op == ">=" else v <= threshold)
        out[key] = (v, op, threshold, ok)
    return out
