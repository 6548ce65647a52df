"""Person-specific fine-tuning from a raw video (`edtalk finetune`): check -> prepare -> fit -> export.

    edtalk finetune --video me.mp4 --checkpoint EDTalk.pt --out ft/     # then:
    edtalk generate --source photo.jpg --audio speech.wav --checkpoint ft/finetuned.pt --audio2lip A2L.pt --out o.mp4

1. check (`check_video`): a readable video, at least `MIN_FPS` and `MIN_SECONDS` long; otherwise a
   `ValueError` naming the file and the fix (the CLI prints it as one line and exits 2);
2. prepare (`prepare_video`): the real `edtalk preprocess` code on the video alone (``folder`` layout):
   face track, crop, 256² at 25 fps, landmarks, mouth boxes -> shards under ``<out>/shards``; a video
   it skips (no face, several faces, no sound, ...) is a `ValueError` with preprocess' reason;
3. fit (`fit_person`): `experiments/finetune.yaml` (+ `--debug`'s CPU smoke-test layer) with
   `init_from=<checkpoint>`, `data.clip=<the video>`: the first 80 % of the frames train, the last
   20 % validate (`data.train_fraction`); the run lives under ``<out>/runs/finetune/``;
4. export: the fine-tuned generator as our generator file ``<out>/finetuned.pt`` (the input checkpoint
   is only read), ready for `edtalk generate --checkpoint`;
5. score (`holdout_scores`): did it pay on this video? The held-out frames (the last 20 %), each rendered
   from the first frame as the validation does, by the checkpoint before and the fine-tuned generator
   after, beside copying the first frame to every held-out frame (the no-model floor): PSNR at the
   generator's size, written to ``<out>/holdout.json`` and printed; ``<out>/holdout_strip.png`` shows
   rows before | after | ground truth of six evenly spaced held-out frames.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MIN_FPS = 20.0  # below this, resampling to 25 fps repeats frames: the person's motion is not in the footage
MIN_SECONDS = 2.0  # 80 % train / 20 % validate needs a few seconds; a minute or more is better
CHECKPOINT = "finetuned.pt"
STRIP_FRAMES = 6
HOLDOUT = "holdout.json"
HOLDOUT_STRIP = "holdout_strip.png"


@dataclass
class Prepared:
    """The shard directory of one prepared video and its clip id (`data.clip`)."""

    shards: Path
    clip: str
    frames: int


def check_video(path: Path, min_seconds: float = MIN_SECONDS) -> None:
    """Raise a one-line `ValueError` unless `path` is a readable video of at least `MIN_FPS`, `min_seconds`."""
    from edtalk.io import probe_video

    info = probe_video(path)  # MediaError (a ValueError) names the file when it is missing or unreadable
    if not info.fps or info.fps < MIN_FPS:
        raise ValueError(
            f"{path}: {info.fps:.1f} fps is below {MIN_FPS:.0f}; resampling to 25 fps would repeat frames: "
            "give the original recording (25 or 30 fps are typical)"
        )
    if info.duration < min_seconds:
        raise ValueError(
            f"{path} is {info.duration:.1f} s long: fine-tuning needs at least {min_seconds:.0f} s of the "
            "person (the last 20 % validate); give a longer video (a minute or more works best)"
        )


def prepare_video(video: Path, out: Path, workers: int = 1, progress: bool = True) -> Prepared:
    """Crop `video` to 256² at 25 fps with landmarks and mouth boxes into ``<out>/shards`` (`edtalk
    preprocess --layout folder` on a folder holding only this video); resumable like preprocess."""
    from datamodules.preprocess.layouts import find_jobs
    from datamodules.preprocess.pipeline import PreprocessConfig, preprocess
    from datamodules.shards import iter_clips, read_index

    folder = out / "input"
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / video.name
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(video.resolve())
    clip = find_jobs(folder, "folder")[0].clip_ids[0]
    report = preprocess(folder, "folder", out / "shards", PreprocessConfig(), workers, progress, True)
    skipped = [r for r in report.skipped if r["clip"] == clip]
    if skipped:
        detail = f" ({skipped[0]['detail']})" if skipped[0].get("detail") else ""
        raise ValueError(
            f"{video}: {skipped[0]['reason']}{detail}; give a video that shows one face, with sound"
        )
    shards = out / "shards"
    splits = read_index(shards).get("splits", {})
    frames = sum(c.num_frames for s in splits for c in iter_clips(shards, s) if c.key == clip)
    if not frames:
        raise ValueError(
            f"{video}: preprocessing wrote no frames of {clip} to {shards}; see {shards / 'skipped.json'}"
        )
    return Prepared(shards, clip, frames)


def person_config(
    checkpoint: Path, prepared: Prepared, out: Path, overrides: Sequence[str] = (), debug: bool = False
) -> Any:
    """The composed `finetune` experiment for the prepared video, starting from `checkpoint`."""
    from edtalk.train import compose

    return compose(
        "finetune",
        [
            f"init_from={checkpoint}",
            f"data.root={prepared.shards}",
            f"data.clip={prepared.clip}",
            f"run.root={out / 'runs'}",
            *overrides,
        ],
        debug=debug,
    )


def fit_person(cfg: Any, debug: bool = False) -> Path:
    """`edtalk fit finetune` with the composed `person_config`; returns the run directory."""
    from edtalk.train import fit

    return fit(cfg, overwrite=debug)


def export_generator(run_dir: Path, path: Path, init_from: Path) -> Path:
    """The run's fine-tuned generator (`checkpoints/last.ckpt`) as our generator file `path`."""
    from edtalk.runs import checkpoint
    from edtalk.weights import load_generator, save_checkpoint

    gen = load_generator(checkpoint(run_dir))
    return save_checkpoint(gen, "generator", path, stage="finetune", init_from=str(init_from))


def write_strip(before: Any, after: Any, truth: Any, path: Path) -> Path:
    """Rows before | after | ground truth of `STRIP_FRAMES` evenly spaced frames (T x H x W x 3 uint8)."""
    import numpy as np
    from PIL import Image

    t = min(len(before), len(after), len(truth))
    idx = np.linspace(0, t - 1, min(STRIP_FRAMES, t)).round().astype(int)
    rows = [np.concatenate(list(video[idx]), axis=1) for video in (before, after, truth)]  # -> H x nW x 3
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)
    return path


def holdout_scores(cfg: Any, generators: dict[str, Any], strip: Path | None = None) -> dict[str, Any]:
    """PSNR (dB, pooled over the frames) of the fit's validation frames rendered by each of `generators`
    from the validation source (`drive`, as the stage validates), and `copy_source`: that source frame
    copied to every validation frame. `cfg`: the fit's composed config (its `FramesDataModule`).
    `strip`: also write rows "before" | "after" | ground truth of evenly spaced validation frames there."""
    import torch

    from edtalk.apps.learning import psnr
    from edtalk.io import to_uint8, uint8_to_float
    from edtalk.stages.reconstruct import drive
    from edtalk.train import build_datamodule

    dm = build_datamodule(cfg)
    dm.setup("fit")
    sources, targets = [], []
    for batch in dm.val_dataloader():
        sources.append(uint8_to_float(batch["source"]))  # the batches are uint8 B x 3 x S x S
        targets.append(uint8_to_float(batch["target"]))
    source, target = torch.cat(sources), torch.cat(targets)
    out: dict[str, Any] = {"frames_validated": len(target), "copy_source": psnr(source, target)}
    renders = {}
    with torch.no_grad():
        for name, gen in generators.items():
            gen = gen.eval()
            renders[name] = torch.cat([drive(gen, s, t) for s, t in zip(source.split(16), target.split(16))])
            out[name] = psnr(renders[name], target)
    if strip is not None:
        before, after, truth = (to_uint8(x).numpy() for x in (renders["before"], renders["after"], target))
        write_strip(before, after, truth, strip)
    return out


def finetune_video(
    video: Path,
    checkpoint: Path,
    out: Path,
    overrides: Sequence[str] = (),
    debug: bool = False,
    workers: int = 1,
    log: Callable[[str], None] = print,
) -> Path:
    """Check, prepare, fine-tune, export and score (module docstring); returns ``<out>/finetuned.pt``."""
    from datamodules.shards import write_json_atomic
    from edtalk.weights import load_generator

    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"--checkpoint {checkpoint} not found; give a generator checkpoint")
    check_video(video)
    prepared = prepare_video(video, out, workers, progress=False)
    log(f"prepared {prepared.clip}: {prepared.frames} frames at 25 fps in {prepared.shards}")
    cfg = person_config(checkpoint, prepared, out, overrides, debug)
    run_dir = fit_person(cfg, debug)
    path = export_generator(run_dir, out / CHECKPOINT, checkpoint)
    log(f"fine-tuned generator: {path} (run {run_dir}; val/psnr in its logs is the validation curve)")
    generators = {"before": load_generator(checkpoint), "after": load_generator(path)}
    scores = holdout_scores(cfg, generators, out / HOLDOUT_STRIP)
    write_json_atomic(out / HOLDOUT, scores)
    log(
        f"held-out frames ({scores['frames_validated']}, the last 20 %) from the first frame: PSNR "
        f"{scores['before']:.2f} dB before, {scores['after']:.2f} dB after, {scores['copy_source']:.2f} dB "
        f"copying the first frame ({out / HOLDOUT})"
    )
    return path
