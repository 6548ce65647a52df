"""Does person-specific fine-tuning pay? Fine-tune a copy of a generator on one held-out person and
score that person's other clips before and after (`finetune_eval`; the main job's
`summary.json["learning"]["finetune"]`).

Protocol:

* the person: a speaker of the test split (default: the speaker of the first test clip, whom none of
  the shared stages trained on; the built-in data's S04);
* fine-tuning data (`finetune_split`): the first clip (natural order of the ids) of each of the
  person's emotions (clips without an emotion label form one group), read by `FramesDataModule` as one
  video: its first 80 % of frames train, the rest validate (`val/psnr` in the run's CSV log is the
  validation curve: when it falls while `train/l1` keeps falling, the run overfits);
* the stage: `experiments/finetune.yaml` layered over `--debug` (CPU, built-in data) and, in the
  `demo` profile, `experiments/demo/finetune.yaml` (the CPU settings); its run lives under
  ``<out>/runs/finetune/debug/``;
* scored on the person's *other* clips, video-driven reconstruction exactly as the learning table's
  `psnr_video` (`metrics.render.reconstruct`: the first frame is the source, every frame drives):
  PSNR at the generator's size (`edtalk.apps.learning.psnr`); SSIM, M-LMD and CSIM (against the
  clip's first frame, the source) as `edtalk evaluate` scores them (`metrics.runner.MethodScorer` with
  dlib's judges, the render resized to the ground truth's size; CSIM from `CSIM_FRAMES` frames per clip);
  the floor `psnr_copy_source`: each clip's first frame copied to every frame;
* `other_speakers_psnr_delta`: mean PSNR after - before on the first clip of every other speaker of the
  test split (of the train split when the test split holds only this person, as the built-in data
  does). Information, not a target: a fine-tuned model may specialise.

The shared checkpoint is only read: its sha256 is asserted unchanged. Files under `out`:
`finetuned.pt` (the fine-tuned generator, our format, a new file), `finetune_strip.png` (rows: before,
after, ground truth; evenly spaced frames of the first scored clip) and `finetune.json` (the result,
every metric before/after, the clips, the sha256 and the seconds).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edtalk.apps.finetune import CHECKPOINT, write_strip

KEYS = (
    "psnr_before",
    "psnr_after",
    "psnr_copy_source",
    "m_lmd_before",
    "m_lmd_after",
    "csim_before",
    "csim_after",
    "other_speakers_psnr_delta",
)
TARGETS = {"psnr_over_before": 2.0, "psnr_over_copy_source": 2.0}  # dB (README, "Fine-tuning on one person")
STRIP = "finetune_strip.png"
DETAILS = "finetune.json"
CSIM_FRAMES = 8  # as the main job's evaluation: dlib's descriptor on every frame is most of the time
FACE_METRICS = ("ssim", "m_lmd", "f_lmd", "csim")  # per clip, from `metrics.runner.MethodScorer`
# The face metrics from this many evenly spaced frames per clip (the first, the source, included): dlib's
# detector on every 256² frame of every clip twice was most of the step's time
FACE_FRAMES = 16
PROFILES = ("demo", "debug")


@dataclass
class PersonSplit:
    """Clip ids: the person's fine-tuning clips, their other (scored) clips, other speakers' clips."""

    speaker: str
    train: list[str]
    scored: list[str]
    others: list[str]
    others_split: str


def _natural(key: str) -> list[Any]:
    from datamodules.frames import natural_key

    return natural_key(Path(key))


def finetune_split(shards: Path, speaker: str | None = None) -> PersonSplit:
    """Which clips fine-tune, which are scored and which other speakers' clips show specialisation."""
    from datamodules.shards import iter_clips

    test = {c.key: c.meta for c in iter_clips(shards, "test")}
    if not test:
        raise ValueError(f"{shards} has no test clips: the held-out person comes from the test split")
    speaker = speaker or str(test[min(test, key=_natural)].get("speaker"))
    mine = sorted((k for k, m in test.items() if str(m.get("speaker")) == speaker), key=_natural)
    if not mine:
        speakers = sorted({str(m.get("speaker")) for m in test.values()})
        raise ValueError(f"speaker {speaker!r} has no test clips in {shards}; test speakers: {speakers}")
    groups: dict[str, list[str]] = {}
    for key in mine:
        groups.setdefault(str(test[key].get("emotion")), []).append(key)
    train = [keys[0] for keys in groups.values()]
    scored = [k for k in mine if k not in train]
    if not scored:
        raise ValueError(
            f"speaker {speaker!r} has one clip per emotion in {shards}: no clip is left to score after "
            "fine-tuning on one clip per emotion; give the person at least two clips"
        )
    others_split, pool = "test", test
    if all(str(m.get("speaker")) == speaker for m in test.values()):
        others_split, pool = "train", {c.key: c.meta for c in iter_clips(shards, "train")}
    first: dict[str, str] = {}
    for key in sorted(pool, key=_natural):
        first.setdefault(str(pool[key].get("speaker")), key)
    others = [k for s, k in sorted(first.items()) if s != speaker]
    return PersonSplit(speaker, train, scored, others, others_split)


def finetune_run(
    generator: Path,
    shards: Path,
    clips: Sequence[str],
    root: Path,
    profile: str = "demo",
    steps: int | None = None,
    overrides: Sequence[str] = (),
) -> Path:
    """Fine-tune a copy of `generator` on `clips` of `shards` (`edtalk fit finetune --debug` with the
    profile's settings); returns the run directory (under `root`)."""
    from edtalk.apps.runner import profile_overrides
    from edtalk.train import compose, fit

    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    cfg = compose(
        "finetune",
        [
            *profile_overrides("finetune", "demo" if profile == "demo" else None),
            f"init_from={generator}",
            f"data.root={shards}",
            f"data.clips={json.dumps(list(clips))}",
            f"run.root={root}",
            *([f"trainer.max_steps={steps}"] if steps is not None else []),
            *overrides,
        ],
        debug=True,
    )
    cfg.trainer.val_check_interval = max(1, int(cfg.trainer.max_steps) // 4)  # 4 points of the val curve
    return fit(cfg, overwrite=True)


def read_clips(shards: Path, split: str, ids: Sequence[str]) -> list[Any]:
    """`metrics.runner.GroundTruth` of clips `ids` of a split, in the order of `ids`."""
    from datamodules.shards import iter_clips
    from metrics.runner import GroundTruth, ground_truth

    if split == "test":
        found = {gt.clip_id: gt for gt in ground_truth("builtin", shards, clips=list(ids))}
    else:
        found = {
            c.key: GroundTruth(c.key, c.frames(range(c.num_frames)), c.wav(), c.meta)
            for c in iter_clips(shards, split)
            if c.key in ids
        }
    return [found[k] for k in ids]


@torch.no_grad()
def render(gen: Any, gt: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(video-driven reconstruction, ground truth), T x 3 x S x S in [-1, 1] at the generator's size S."""
    from edtalk.io import from_uint8
    from metrics.judges import resize_frames
    from metrics.render import reconstruct

    frames = resize_frames(from_uint8(gt.frames).float(), gen.cfg.size)
    return reconstruct(gen, frames)[0], frames


def _full_size(images: torch.Tensor, gt: Any) -> np.ndarray:
    """T x 3 x S x S in [-1, 1] -> T x H x W x 3 uint8 at the ground truth's size."""
    from edtalk.io import to_uint8
    from metrics.judges import resize_frames

    return np.ascontiguousarray(to_uint8(resize_frames(images, int(gt.frames.shape[1]))).numpy())


def score(gen: Any, clips: Sequence[Any], judges: Any | None) -> dict[str, Any]:
    """PSNR (generator size, every frame) and, with `judges` (dlib), SSIM, M-LMD, F-LMD, CSIM (`FACE_FRAMES`
    frames per clip) of video-driven reconstruction: means over `clips` of the per-clip values; with
    `judges` also "renders" and "truth": those frames rendered (ground truth's size) and true, per clip."""
    from edtalk.apps.learning import psnr
    from metrics.runner import MethodScorer

    rows: list[dict[str, Any]] = []
    renders: list[np.ndarray] = []
    truth: list[np.ndarray] = []
    scorer = MethodScorer(judges, lse_crop=False, csim_frames=CSIM_FRAMES) if judges is not None else None
    for gt in clips:
        pred, frames = render(gen, gt)
        row = {"psnr": psnr(pred, frames)}
        if scorer is not None:
            idx = np.linspace(0, len(pred) - 1, min(FACE_FRAMES, len(pred))).round().astype(int)
            renders.append(_full_size(pred[idx], gt))
            truth.append(_frames_of(gt, idx).frames)
            found = scorer.add(_frames_of(gt, idx), renders[-1], gt.wav)
            row |= {k: float(found[k]) for k in FACE_METRICS}
        rows.append(row)
    out: dict[str, Any] = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    return out | {"per_clip": rows, "renders": renders, "truth": truth}


def _frames_of(gt: Any, idx: np.ndarray) -> Any:
    """The ground-truth clip cut to frames `idx` (its landmarks, once computed, kept for the next model)."""
    from metrics.runner import GroundTruth

    key = "finetune_eval:" + ",".join(map(str, idx.tolist()))
    if key not in gt.cache:
        gt.cache[key] = GroundTruth(gt.clip_id, gt.frames[idx], gt.wav, gt.meta)
    return gt.cache[key]


def copy_source_floor(gen_size: int, clips: Sequence[Any]) -> float:
    """Mean PSNR of copying each clip's first frame to every frame (the path of `render`'s frames)."""
    from edtalk.apps.learning import psnr
    from edtalk.io import from_uint8
    from metrics.judges import resize_frames

    values = []
    for gt in clips:
        frames = resize_frames(from_uint8(gt.frames).float(), gen_size)
        values.append(psnr(frames[:1].expand_as(frames), frames))
    return float(np.mean(values))


def compare(
    generator: Path, finetuned: Path, shards: Path, split: PersonSplit, out: Path, clips: int | None = None
) -> tuple[dict[str, float | None], dict[str, Any]]:
    """(the {KEYS} result, details) of `finetuned` against `generator` on `split`; writes the strip."""
    from edtalk.weights import load_generator
    from metrics.judges.dlib_face import load_dlib
    from metrics.runner import Judges

    before, after = load_generator(generator).eval(), load_generator(finetuned).eval()
    scored = read_clips(shards, "test", split.scored[:clips])
    judges = Judges(dlib=load_dlib())
    scores = {"before": score(before, scored, judges), "after": score(after, scored, judges)}
    others = read_clips(shards, split.others_split, split.others)
    other = {"before": score(before, others, None), "after": score(after, others, None)} if others else None
    write_strip(
        scores["before"]["renders"][0],
        scores["after"]["renders"][0],
        scores["after"]["truth"][0],
        out / STRIP,
    )

    result: dict[str, float | None] = {
        "psnr_before": scores["before"]["psnr"],
        "psnr_after": scores["after"]["psnr"],
        "psnr_copy_source": copy_source_floor(before.cfg.size, scored),
        "m_lmd_before": scores["before"]["m_lmd"],
        "m_lmd_after": scores["after"]["m_lmd"],
        "csim_before": scores["before"]["csim"],
        "csim_after": scores["after"]["csim"],
        "other_speakers_psnr_delta": (other["after"]["psnr"] - other["before"]["psnr"]) if other else None,
    }
    details: dict[str, Any] = {
        "result": result,
        "metrics": {
            k: {m: v for m, v in s.items() if m not in ("renders", "truth")} for k, s in scores.items()
        },
        "other_speakers": {k: s["per_clip"] for k, s in (other or {}).items()} | {"clips": split.others},
        "split": {"speaker": split.speaker, "train": split.train, "scored": split.scored[:clips]},
        "generator": str(generator),
        "finetuned": str(finetuned),
    }
    return result, details


def _sha256(path: Path) -> str:
    from datamodules.shards import sha256_file

    return sha256_file(path)


def finetune_eval(
    generator: str | Path,
    out: str | Path,
    shards: str | Path | None = None,
    speaker: str | None = None,
    profile: str = "demo",
    steps: int | None = None,
    overrides: Sequence[str] = (),
    clips: int | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, float | None]:
    """Fine-tune a copy of `generator` on part of one held-out person's clips and score the others.

    Args:
        generator: the shared generator checkpoint (any generator file); read only.
        out: folder for `finetuned.pt`, `finetune_strip.png`, `finetune.json` and the run (``runs/``).
        shards: shard directory (None: the built-in dataset).
        speaker: the person, a test-split speaker (None: the speaker of the first test clip).
        profile: "demo" (experiments/demo/finetune.yaml over --debug) or "debug" (the smoke-test settings).
        steps: fine-tuning steps (None: the profile's `trainer.max_steps`).
        overrides: more dotlist overrides of the finetune run (e.g. "seed=1").
        clips: score only the first `clips` of the person's other clips (None: all of them).
        log: progress lines.

    Returns:
        {KEYS}: PSNR (dB) before / after / copy-source floor and M-LMD, CSIM before / after on the person's
        other clips; `other_speakers_psnr_delta`: PSNR after - before on other speakers (module docstring).
    """
    from datamodules.synthetic import ensure_builtin
    from edtalk.apps.finetune import export_generator

    started = time.perf_counter()
    generator, out = Path(generator), Path(out)
    shards = Path(shards) if shards is not None else ensure_builtin()
    digest = _sha256(generator)
    split = finetune_split(shards, speaker)
    log(f"finetune: {split.speaker}, fine-tuning on {split.train}, scoring {split.scored}")
    run_dir = finetune_run(generator, shards, split.train, out / "runs", profile, steps, overrides)
    export_generator(run_dir, out / CHECKPOINT, generator)
    if _sha256(generator) != digest:
        raise AssertionError(f"fine-tuning changed the shared checkpoint {generator}; please report this bug")
    trained = time.perf_counter() - started

    result, details = compare(generator, out / CHECKPOINT, shards, split, out, clips)
    seconds = {"finetune": trained, "total": time.perf_counter() - started}
    details |= {"generator_sha256": digest, "run": str(run_dir), "seconds": seconds}
    (out / DETAILS).write_text(json.dumps(details, indent=2))
    log(
        f"finetune: PSNR {result['psnr_before']:.2f} -> {result['psnr_after']:.2f} dB "
        f"(copy-source {result['psnr_copy_source']:.2f}) in {seconds['total']:.0f} s"
    )
    return result
