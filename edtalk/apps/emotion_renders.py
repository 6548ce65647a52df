"""Do the videos show the emotion? The paper's Acc_emo on the built-in data's held-out speakers.

For each held-out speaker, its first neutral clip gives the source (first frame) and a neutral voice;
each emotion is then rendered two ways:

* `generated`: the neutral voice drives the mouth, the emotion comes from our own emotion vector (the
  mean expression weights of that emotion over the training speakers, `emotion_vectors`);
* `audio`: `--emotion auto` from that speaker's emotional speech (audio2exp reads the emotion).

The trained emotion judge classifies every render (video-level top-1 over its 8 labels); the fraction
that equals the intended emotion is `acc_emo_generated` / `acc_emo_audio` (chance: 1 / 4). The floor
is the judge on the unedited source clip for every intended emotion (no emotion rendered). A grid
(rows emotions, columns speaker x path) of each render's middle frame goes to `plots/emotion_grid.png`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from edtalk import io, runs

PATHS = ("generated", "audio")


def judge_prediction(judge: torch.nn.Module, video: Path) -> int:
    """The judge's top-1 label id (of its 8 MEAD emotions) for a video file."""
    frames = io.from_uint8(io.read_video(video))  # -> T x 3 x H x W in [-1, 1]
    with torch.no_grad():
        return int(judge(frames[None]).argmax(-1).item())


def emotion_clips(raw: Path, speaker: str, emotion: str) -> list[Path]:
    """A speaker's raw clips of an emotion (MEAD layout), sorted."""
    return sorted(raw.glob(f"{speaker}/video/front/{emotion}/*/*.mp4"))


def emotion_renders(job: Any, *, strength: float = 1.0) -> dict[str, Any]:
    """Render and judge every (held-out speaker, emotion, path); adds `acc_emo_*` to the learning row.

    `strength` multiplies the expression weights of both paths (`Inputs.emotion_strength`; the plan's
    `options: {strength: K}`): the demo's expression decoder draws an anchor's emotion on a new face weaker
    than on the faces it trained on (experiments/demo/README.md, "Emotion strength")."""
    from PIL import Image

    from datamodules.synthetic import BUILTIN_EMOTIONS, TEST_SPEAKERS
    from edtalk.nn.emotion import EMOTIONS
    from edtalk.pipeline import Pipeline
    from metrics.runner import load_emotion_classifier

    ckpts = job.checkpoints()
    judge_file = runs.checkpoint(job.run_dirs().get("emotion_classifier", Path()), "emotion_classifier.pt")
    vectors = job.results.get("emotion_vectors")
    if not judge_file.is_file() or vectors is None:
        job.step("emotion renders", "skipped: needs the emotion judge and our emotion vectors")
        return {}
    judge = load_emotion_classifier(judge_file).eval()
    pipe = Pipeline.from_checkpoints(
        ckpts["generator"],
        audio2lip=ckpts["audio2mouth"],
        audio2exp=ckpts["audio2exp"],
        device="cpu",
        progress=False,
    )
    raw, out = job.shards.parent / "raw", job.out / "emotion_renders"
    job.step(
        "emotion renders",
        f"{len(BUILTIN_EMOTIONS)} emotions x {len(TEST_SPEAKERS)} held-out speakers x {PATHS}, "
        f"strength {strength:g}",
    )
    rows: list[dict[str, Any]] = []
    for speaker in TEST_SPEAKERS:
        neutral = emotion_clips(raw, speaker, "neutral")[0]
        source = out / speaker / "source.png"
        source.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(io.read_video(neutral, max_frames=1)[0]).save(source)
        voice = io.write_wav(out / speaker / "neutral.wav", io.read_audio(neutral))
        floor = judge_prediction(judge, neutral)
        for emotion in BUILTIN_EMOTIONS:
            speech = io.write_wav(
                out / speaker / f"{emotion}.wav", io.read_audio(emotion_clips(raw, speaker, emotion)[0])
            )
            drivers: dict[str, dict[str, Any]] = {
                "generated": {
                    "audio": voice,
                    "emotion": torch.from_numpy(np.load(Path(vectors) / f"{emotion}.npy")),
                },
                "audio": {"audio": speech, "emotion": "auto"},
            }
            for path, kwargs in drivers.items():
                video = pipe(
                    source,
                    out=out / speaker / f"{emotion}_{path}.mp4",
                    fix_pose=True,
                    emotion_strength=strength,
                    seed=job.seed,
                    **kwargs,
                ).path
                pred = judge_prediction(judge, video)
                rows.append({"speaker": speaker, "emotion": emotion, "path": path, "video": video,
                             "predicted": EMOTIONS[pred], "floor": EMOTIONS[floor], "strength": strength})  # fmt: skip
    acc = {p: float(np.mean([r["predicted"] == r["emotion"] for r in rows if r["path"] == p])) for p in PATHS}
    floor_acc = float(np.mean([r["floor"] == r["emotion"] for r in rows if r["path"] == PATHS[0]]))
    learning = dict(job.results.get("learning") or {})
    learning.update({f"acc_emo_{p}": acc[p] for p in PATHS})
    learning["floor"] = {**learning.get("floor", {}), **{f"acc_emo_{p}": floor_acc for p in PATHS}}
    grid = emotion_grid(rows, job.out / "plots" / "emotion_grid.png")
    job.step("emotion renders", "done " + ", ".join(f"acc_emo_{p}={acc[p]:.2f}" for p in PATHS))
    return {"learning": learning, "emotion_renders": {"rows": rows, "grid": grid}}


def emotion_grid(rows: list[dict[str, Any]], path: Path) -> Path:
    """Rows: emotions; columns: (path, speaker); each cell the render's middle frame, its border green
    when the judge read the intended emotion, red otherwise."""
    from PIL import Image

    emotions = list(dict.fromkeys(r["emotion"] for r in rows))
    columns = list(dict.fromkeys((r["path"], r["speaker"]) for r in rows))
    cells: dict[tuple[str, str, str], np.ndarray] = {}
    for r in rows:
        clip = io.read_video(r["video"])
        frame = np.array(clip[len(clip) // 2])  # -> H x W x 3
        frame[:2], frame[-2:], frame[:, :2], frame[:, -2:] = (
            (40, 200, 40) if r["predicted"] == r["emotion"] else (220, 40, 40),
        ) * 4
        cells[(r["emotion"], r["path"], r["speaker"])] = frame
    blank = np.zeros_like(next(iter(cells.values())))
    grid = np.concatenate(
        [np.concatenate([cells.get((e, p, s), blank) for p, s in columns], axis=1) for e in emotions], axis=0
    )  # -> (emotions x H) x (columns x W) x 3
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path)
    return path
