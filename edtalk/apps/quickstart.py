"""The main job on the built-in data (`edtalk quickstart`, README's first command).

Builds the built-in dataset (shards), trains every stage briefly at a small size in dependency order
(reconstruct -> mouth_pose -> expression -> [coefficients] -> syncnet -> audio2mouth, audio2pose,
audio2exp, emotion_classifier), evaluates the expression generator on the built-in test split,
renders every generation mode and writes `report.md` with the numbers, plots and videos.

With `--weights DIR` holding official checkpoints (`EDTalk.pt`, `Audio2Lip.pt`, optionally
`EDTalk_lip_pose.pt`), training is skipped and the demo renders with them.

Each stage is an ordinary `edtalk fit STAGE --debug` run (64^2 networks, CPU) under
`OUT/runs/<stage>/debug/`, with more steps; a rerun reuses the stages that finished. When the machine
has a second core, a second process (`SideProcess`; one thread per process: these networks gain nothing
from two) trains the `SIDE` stages: syncnet and the emotion judge (no generator needed) beside the first
visual stages, then audio2mouth and audio2pose (they read the mouth_pose generator) beside expression
and audio2exp; then it runs the evaluation beside the learning table. The default `profile="demo"`
layers `experiments/demo/<stage>.yaml` (the CPU learning configuration: capacity, losses without
pretrained files, learning rates) over `--debug`; `profile="debug"` keeps the smoke-test networks. Each
stage starts from the checkpoint of the stage before it in this run.

The report opens with the learning table (`edtalk.apps.learning`): ours vs a random-init floor on the
held-out speaker, targets beside, a learning curve and a frame strip per generation mode. Emotion
modes render with emotion vectors computed from our own trained generator (`edtalk emotion-vectors`).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from edtalk import io

VISUAL = ("reconstruct", "mouth_pose", "expression")
PROFILES = ("demo", "debug")
AUDIO = ("syncnet", "audio2mouth", "audio2pose", "audio2exp", "emotion_classifier")
# With a second core, stages trained in a second process, by the stage they wait for (None: from the start):
# syncnet and the emotion judge need no generator; audio2mouth (it reads the syncnet too) and audio2pose
# read the mouth_pose generator, so they run beside expression and audio2exp.
SIDE: dict[str | None, tuple[str, ...]] = {
    None: ("syncnet", "emotion_classifier"),
    "mouth_pose": ("audio2mouth", "audio2pose"),
}
EXPORTS = {"audio2mouth": "audio2mouth.pt", "audio2pose": "audio2pose.pt", "audio2exp": "audio2exp.pt"}
# Demo profile: steps of a visual stage = --steps x this. A stage-1 step costs ~1/5 of a mouth_pose step
# (one render per pair against four); stage 1 reads the mouth after ~1000 steps, mouth_pose separates it
# from the pose after 400-600 and the expression stage's invariance takes its head off mouth and pose
# after ~400 (experiments/demo/README.md, "Optimiser", "Invariance", "Expression invariance"); the
# scales keep `make demo` within 15 min. syncnet (x --audio-steps) trains in the second process, which
# waits for stage 1 and mouth_pose anyway: 360 steps reach val accuracy 0.81 against 0.69 at 120.
DEMO_STEP_SCALE = {"reconstruct": 5.0, "mouth_pose": 2.0, "expression": 2.0, "syncnet": 3.0}
# CSIM of the evaluation from this many evenly spaced frames per clip: dlib's face descriptor was 67 of the
# evaluation's 138 s on every frame (`metrics.runner.MethodScorer`; `edtalk evaluate` keeps every frame).
CSIM_FRAMES = 8


@dataclass
class StageRun:
    name: str
    run_dir: Path
    steps: int
    seconds: float
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class Quickstart:
    """Options of the main job (see `edtalk quickstart --help`)."""

    out: Path
    steps: int = 200
    audio_steps: int = 120
    weights: Path | None = None
    eval_clips: int = 4
    log: Callable[[str], None] = print
    stages: list[StageRun] = field(default_factory=list)
    videos: dict[str, Path] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    profile: str = "demo"
    learning: dict[str, Any] = field(default_factory=dict)
    curve: list[dict[str, Any]] = field(default_factory=list)
    strips: dict[str, Path] = field(default_factory=dict)
    emotion_vectors: Path | None = None

    # -- the job ---------------------------------------------------------------------------------
    def run(self) -> Path:
        from datamodules.synthetic import ensure_builtin

        official = self.official(self.weights) if self.weights is not None else None
        self.out.mkdir(parents=True, exist_ok=True)
        self._step("data", "building the built-in dataset (shards) if needed")
        shards = ensure_builtin()
        if official is None:
            self.train_all()
            ckpts = self.checkpoints()
            args = (ckpts["generator"], shards, ckpts["audio2mouth"])
            # the evaluation in the second process, beside the learning table
            side = SideProcess.start_evaluation(self, *args) if second_core() else None
            if side is None:
                self.evaluate(*args)
            self.measure_learning(ckpts, shards)
            if side is not None:
                self.evaluation = side.join()
            self.emotion_vectors = self.our_emotion_vectors()
        else:
            ckpts = official
        self.render_all(ckpts, shards.parent / "raw")
        return self.write_report()

    def write_report(self) -> Path:
        """report.md (+ losses.png, summary.json) under `out`."""
        return _write(self)

    def _step(self, name: str, what: str) -> None:
        elapsed = time.perf_counter() - self.started
        self.log(f"[{elapsed:6.0f}s] {name}: {what}")

    # -- training --------------------------------------------------------------------------------
    def train_all(self) -> None:
        order = VISUAL + AUDIO
        parallel = second_core()
        elsewhere = {stage for group in SIDE.values() for stage in group} if parallel else set()
        side = self._start_side(SIDE[None]) if parallel else None
        for i, stage in enumerate(order, 1):
            if stage in elsewhere:
                continue
            steps = self.stage_steps(stage)
            self._step(stage, f"training ({i}/{len(order)}, {steps} steps)")
            self.stages.append(self.train(stage, steps))
            self._step(stage, "done " + _fmt_metrics(self.stages[-1].metrics))
            # a group waiting for this stage starts once the last group is in (audio2mouth reads its syncnet)
            if side is not None and stage in SIDE:
                self.stages += side.join()
                side = self._start_side(SIDE[stage])
        if side is not None:
            self.stages += side.join()
        rank = {stage: i for i, stage in enumerate(order)}
        self.stages.sort(key=lambda run: rank.get(run.name, len(order)))  # the report lists them in order

    def _start_side(self, stages: tuple[str, ...]) -> SideProcess:
        steps = {stage: self.stage_steps(stage) for stage in stages}
        self._step("+".join(stages), f"training in a second process ({steps})")
        return SideProcess.start(self, steps)

    def stage_steps(self, stage: str) -> int:
        """`--steps` (visual) or `--audio-steps`, scaled by `DEMO_STEP_SCALE` in the demo profile."""
        base = self.steps if stage in VISUAL else self.audio_steps
        scale = DEMO_STEP_SCALE.get(stage, 1.0) if self.profile == "demo" else 1.0
        return max(1, round(base * scale))

    def train(self, stage: str, steps: int, extra: list[str] | None = None) -> StageRun:
        """One stage run (`extra`: dotlist overrides applied last, e.g. a seed)."""
        from edtalk.train import compose, debug_dependency, fit, runs_of

        every = max(1, steps // 2)
        overrides = [
            *profile_overrides(stage, self.profile),
            *self._init_from(stage),
            f"run.root={self.out / 'runs'}",
            f"trainer.max_steps={steps}",
            f"trainer.val_check_interval={max(1, steps // 4)}",  # 4 points of the PSNR curve per stage
            f"checkpoint.every_n_steps={every}",
            *(extra or []),
        ]
        cfg = compose(stage, overrides, debug=True)
        if "samples_every_n_steps" in cfg.model:
            cfg.model.samples_every_n_steps = every
        run_dir = runs_of(cfg) / "debug"
        done = run_dir / "checkpoints" / "last.ckpt"
        start = time.perf_counter()
        if not _finished(done, steps, cfg):
            debug_dependency(cfg)
            run_dir = fit(cfg, overwrite=True)
        return StageRun(stage, run_dir, steps, time.perf_counter() - start, _last_metrics(run_dir))

    def _init_from(self, stage: str) -> list[str]:
        """`init_from=` the finished checkpoint of the stage this one requires, when this run trained it."""
        from omegaconf import DictConfig, OmegaConf

        from edtalk.train import experiment_file

        exp = OmegaConf.load(experiment_file(stage))
        requires = exp.get("requires") if isinstance(exp, DictConfig) else None
        done = {s.name: s.run_dir for s in self.stages}
        if not requires or requires not in done:
            return []
        return [f"init_from={done[requires] / 'checkpoints' / 'last.ckpt'}"]

    def checkpoints(self) -> dict[str, Path | None]:
        runs = {s.name: s.run_dir / "checkpoints" for s in self.stages}
        out: dict[str, Path | None] = {"generator": runs["expression"] / "last.ckpt"}
        for stage, file in EXPORTS.items():
            path = runs[stage] / file
            out[stage] = path if path.is_file() else None
        return out

    @staticmethod
    def official(folder: Path) -> dict[str, Path | None]:
        gen = folder / "EDTalk.pt"
        a2l = folder / "Audio2Lip.pt"
        for path in (gen, a2l):
            if not path.is_file():
                raise FileNotFoundError(
                    f"--weights {folder}: {path.name} not found; put the official EDTalk.pt and Audio2Lip.pt "
                    "there (EDTalk release, Hugging Face tanshuai0219/EDTalk)"
                )
        return {"generator": gen, "audio2mouth": a2l, "audio2pose": None, "audio2exp": None}

    # -- evaluation ------------------------------------------------------------------------------
    def evaluate(self, generator: Path | None, shards: Path, audio2lip: Path | None = None) -> None:
        from itertools import islice

        from metrics.render import render_split
        from metrics.runner import evaluate, ground_truth, load_judges, write_report

        assert generator is not None
        self._step(
            "evaluate", f"video- and audio-driven reconstruction of {self.eval_clips} built-in test clips"
        )
        out = self.out / "evaluation"
        folders, extras = render_split(
            generator, "builtin", shards, out, self.eval_clips, audio2lip=audio2lip, probes=False
        )
        methods = {"edtalk_video": folders["video"]} | (
            {"edtalk_audio": folders["audio"]} if "audio" in folders else {}
        )
        judges_dir = self.out / "weights"  # the emotion judge we trained; metrics without judges are skipped
        judges_dir.mkdir(exist_ok=True)
        trained = {s.name: s.run_dir for s in self.stages}
        judge = trained.get("emotion_classifier", Path()) / "checkpoints" / "emotion_classifier.pt"
        if judge.is_file():
            shutil.copyfile(judge, judges_dir / "emotion_classifier.ckpt")
        judges = load_judges(judges_dir)
        clips = islice(ground_truth("builtin", shards), self.eval_clips)
        report = evaluate(methods, clips, judges, lse_crop=False, log=lambda s: None, csim_frames=CSIM_FRAMES)
        report.extras.update(extras)
        files = write_report(report, out)
        self.evaluation = {
            "summary": report.summary,
            "skipped": report.skipped,
            "table": files["table"],
            "plots": sorted((out / "plots").glob("*.png")),
        }
        self._step("evaluate", "done " + _fmt_metrics(report.summary["edtalk_video"]))

    # -- learning --------------------------------------------------------------------------------
    def measure_learning(self, ckpts: dict[str, Path | None], shards: Path) -> None:
        """The learning table (ours vs random-init floor) and the disentanglement curve over stages."""
        from edtalk.apps.learning import floor_audio2lip, floor_generator, learning_table
        from edtalk.weights import load_generator
        from metrics.disentanglement import collect, probe_heatmap, scores

        self._step("learning", "probes on the training speakers, scored on the held-out speaker")
        ours = load_generator(ckpts["generator"]).eval()  # type: ignore[arg-type]
        a2l_path = ckpts.get("audio2mouth")
        a2l: dict[str, torch.nn.Module | None] = {"ours": None, "floor": None}
        if a2l_path is not None:
            from edtalk.pipeline import load_audio_model

            a2l = {"ours": load_audio_model(a2l_path, "audio2lip"), "floor": floor_audio2lip(a2l_path)}
        runs = {s.name: s.run_dir for s in self.stages}
        floor = floor_generator(ours)
        curve_gens, steps = self.stage_generators()
        # one pass over the frames for every generator (ours = the last visual stage's, floor = the curve's step 0)
        gens = {"ours": ours, "floor": floor} | {k: g for k, g in curve_gens.items() if k != VISUAL[-1]}
        train, test = collect(gens, shards, "train"), collect(gens, shards, "test")
        pair = {"ours": ours, "floor": floor}
        table = learning_table(
            pair,
            a2l,
            runs,
            shards,
            self.eval_clips,
            collected=({k: train[k] for k in pair}, {k: test[k] for k in pair}),
        )
        self.learning = {**table["ours"], "floor": table["floor"]}
        probe_heatmap(
            {k: table[k] for k in ("ours", "floor")}, self.out / "plots" / "disentanglement_probes.png"
        )
        alias = {"init": "floor", VISUAL[-1]: "ours"}
        self.curve = [
            {
                "stage": k,
                "step": steps[k],
                "score": scores(train[alias.get(k, k)], test[alias.get(k, k)])["disentanglement_score"],
            }
            for k in ["init", *curve_gens]
        ]
        self._step("learning", "done " + _fmt_learning(self.learning))

    def stage_generators(self) -> tuple[dict[str, Any], dict[str, int]]:
        """The generator after each visual stage this run trained, and the cumulative steps at its end
        (`steps["init"]` = 0: the random-init floor)."""
        from edtalk.weights import load_generator

        gens: dict[str, Any] = {}
        steps, total = {"init": 0}, 0
        for st in self.stages:
            if st.name in VISUAL:
                total += st.steps
                gens[st.name] = load_generator(st.run_dir / "checkpoints" / "last.ckpt").eval()
                steps[st.name] = total
        return gens, steps

    def our_emotion_vectors(self) -> Path | None:
        """<emotion>.npy from our expression generator's coefficients (audio2exp's extracted shards)."""
        from edtalk.coefficients import emotion_vectors

        run = next((s.run_dir for s in self.stages if s.name == "audio2exp"), None)
        data = run.parent / "debug-data" if run is not None else None
        if data is None or not data.is_dir():
            return None
        folder = self.out / "emotion_vectors"
        folder.mkdir(parents=True, exist_ok=True)
        for name, entry in emotion_vectors(data, ("train",)).items():
            np.save(folder / f"{name}.npy", entry["weights"])
        return folder

    # -- rendering -------------------------------------------------------------------------------
    def render_all(self, ckpts: dict[str, Path | None], raw: Path) -> None:
        from edtalk.pipeline import Pipeline

        pipe = Pipeline.from_checkpoints(
            ckpts["generator"],  # type: ignore[arg-type]
            audio2lip=ckpts["audio2mouth"],
            audio2pose=ckpts["audio2pose"],
            audio2exp=ckpts["audio2exp"],
            device="cpu",
            progress=False,
        )
        inputs = self.demo_inputs(raw)
        for name, kwargs in demo_modes(inputs, ckpts, self.emotion_vectors).items():
            self._step("render", name)
            result = pipe(out=self.out / "videos" / f"{name}.mp4", **kwargs)
            self.videos[name] = result.path
            self.strips[name] = frame_strip(result.path, self.out / "strips" / f"{name}.png")

    def demo_inputs(self, raw: Path) -> dict[str, Path]:
        """A source photo, speech and driver videos from the built-in test speaker's raw clips."""
        clips = sorted(raw.glob("S04/video/front/*/*/*.mp4"))
        if len(clips) < 3:
            raise FileNotFoundError(f"the built-in raw clips are missing under {raw}; delete it to rebuild")
        folder = self.out / "inputs"
        folder.mkdir(parents=True, exist_ok=True)
        photo = folder / "source.png"
        from PIL import Image

        Image.fromarray(io.read_video(clips[0], max_frames=1)[0]).save(photo)
        speech = io.write_wav(folder / "speech.wav", io.read_audio(clips[1]))
        return {"photo": photo, "speech": speech, "video_a": clips[1], "video_b": clips[2]}


def second_core() -> bool:
    """Whether the job uses a second process (`SideProcess`): the machine has more than one core."""
    return (os.cpu_count() or 1) > 1


@dataclass
class SideProcess:
    """Part of the job in a spawned process: `Quickstart.train` of some stages (`start`; `join` returns
    their `StageRun`s) or `Quickstart.evaluate` (`start_evaluation`; `join` returns `.evaluation`)."""

    process: Any
    queue: Any
    names: tuple[str, ...] = ()

    @classmethod
    def start(cls, job: Quickstart, steps: dict[str, int]) -> SideProcess:
        return cls._launch(job, {"steps": steps}, tuple(steps))

    @classmethod
    def start_evaluation(
        cls, job: Quickstart, generator: Path | None, shards: Path, audio2lip: Path | None
    ) -> SideProcess:
        return cls._launch(job, {"evaluate": (generator, shards, audio2lip)}, ("evaluate",))

    @classmethod
    def _launch(cls, job: Quickstart, task: dict[str, Any], names: tuple[str, ...]) -> SideProcess:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked torch/Lightning state
        queue = ctx.Queue()
        spec = {
            "out": str(job.out),
            "profile": job.profile,
            "started": job.started,
            "eval_clips": job.eval_clips,
            "stages": list(job.stages),  # finished runs: `Quickstart._init_from` starts from them there too
            **task,
        }
        process = ctx.Process(target=_side_main, args=(spec, queue), name="quickstart-side", daemon=True)
        process.start()
        return cls(process, queue, names)

    def join(self) -> Any:
        """Wait for the side task; re-raises a failure there with its traceback."""
        import queue as queue_mod

        while True:
            # alive is read before the get, so a result put just before the child exits is still read
            alive = self.process.is_alive()
            try:
                kind, payload = self.queue.get(timeout=5)
                break
            except queue_mod.Empty:
                if not alive:
                    raise RuntimeError(
                        f"the side process ({', '.join(self.names)}) died with exit code {self.process.exitcode}"
                    ) from None
        self.process.join()
        if kind == "error":
            raise RuntimeError(f"the second process ({', '.join(self.names)}) failed:\n{payload}")
        return payload


def _side_main(spec: dict[str, Any], queue: Any) -> None:
    """Entry of the side process: train `spec["steps"]` in order and put ("ok", [StageRun]), or evaluate
    (`spec["evaluate"]`) and put ("ok", the evaluation); ("error", traceback) on a failure."""
    torch.set_num_threads(1)
    try:
        job = Quickstart(
            Path(spec["out"]),
            profile=spec["profile"],
            started=spec["started"],
            eval_clips=spec["eval_clips"],
            stages=list(spec["stages"]),
        )
        if "evaluate" in spec:
            job.evaluate(*spec["evaluate"])
            queue.put(("ok", job.evaluation))
            return
        runs = []
        for stage, steps in spec["steps"].items():
            job._step(stage, f"training (second process, {steps} steps)")
            run = job.train(stage, steps)
            job._step(stage, "done " + _fmt_metrics(run.metrics))
            job.stages.append(run)
            runs.append(run)  # a StageRun pickles (module-level dataclass of plain values and Paths)
        queue.put(("ok", runs))
    except BaseException:  # the parent re-raises it with this traceback
        queue.put(("error", traceback.format_exc()))


def demo_modes(
    inp: dict[str, Path], ckpts: dict[str, Path | None], vectors: Path | None = None
) -> dict[str, dict[str, Any]]:
    """Every generation mode of the original demos, plus our extras where their models exist.

    `vectors`: a folder of <emotion>.npy computed from the generator that renders (`edtalk
    emotion-vectors`); without it the emotion modes use the release's vectors (right only for the
    official generator).
    """
    photo, speech, a, b = inp["photo"], inp["speech"], inp["video_a"], inp["video_b"]
    happy: str | torch.Tensor = "happy"
    mix: str | torch.Tensor = "happy:0.7,sad:0.3"
    if vectors is not None and (vectors / "happy.npy").is_file() and (vectors / "sad.npy").is_file():
        h, s = (torch.from_numpy(np.load(vectors / f"{e}.npy")) for e in ("happy", "sad"))
        happy, mix = h, 0.7 * h + 0.3 * s
    modes: dict[str, dict[str, Any]] = {
        "audio_emotion_happy": {"source": photo, "audio": speech, "emotion": happy, "pose": b},
        "audio_emotion_mix": {
            "source": photo,
            "audio": speech,
            "emotion": mix,
            "fix_pose": True,
        },
        "audio_exp_video": {"source": photo, "audio": speech, "exp": b, "pose": b},
        "audio_no_expression_fixed_pose": {
            "source": photo,
            "audio": speech,
            "no_expression": True,
            "fix_pose": True,
        },
        "lip_from_video": {"source": photo, "lip": a, "pose": b, "no_expression": True},
        "change_video_lip": {"source": a, "audio": speech},
        "video_driven": {"source": photo, "lip": a, "pose": b, "exp": b},
    }
    if ckpts.get("audio2pose") is not None:
        modes["audio_pose_sampled"] = {
            "source": photo,
            "audio": speech,
            "emotion": "neutral",
            "pose_temperature": 0.7,
        }
    if ckpts.get("audio2exp") is not None:
        modes["audio_emotion_auto"] = {"source": photo, "audio": speech, "emotion": "auto", "fix_pose": True}
    return modes


def profile_overrides(stage: str, profile: str) -> list[str]:
    """Dotlist of `experiments/demo/<stage>.yaml` for the demo profile ([] for `debug` or no file)."""
    from omegaconf import OmegaConf

    from edtalk.train import experiments_dir

    if profile not in PROFILES:
        raise ValueError(f"--profile must be one of {PROFILES}, got {profile!r}")
    path = experiments_dir() / "demo" / f"{stage}.yaml"
    if profile == "debug" or not path.is_file():
        return []
    return _dotlist(OmegaConf.to_container(OmegaConf.load(path), resolve=False), "")


def _dotlist(node: Any, prefix: str) -> list[str]:
    if isinstance(node, dict):
        return [item for k, v in node.items() for item in _dotlist(v, f"{prefix}{k}.")]
    value = json.dumps(node) if isinstance(node, list | str) else ("null" if node is None else str(node))
    return [f"{prefix[:-1]}={value}"]


def frame_strip(video: Path, path: Path, frames: int = 8) -> Path:
    """`frames` evenly spaced frames of `video` side by side in one PNG."""
    from PIL import Image

    clip = io.read_video(video)
    idx = np.linspace(0, len(clip) - 1, min(frames, len(clip))).round().astype(int)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(list(clip[idx]), axis=1)).save(path)  # -> H x (n*W) x 3
    return path


def _finished(ckpt: Path, steps: int, cfg: Any) -> bool:
    """A checkpoint of a run that reached `steps`, with the generator `cfg` builds (same profile)."""
    if not ckpt.is_file():
        return False
    from omegaconf import OmegaConf

    from edtalk.weights import load_file

    obj = load_file(ckpt)
    stored = obj.get("edtalk", {}).get("generator")
    same = stored is None or stored == OmegaConf.to_container(cfg.generator, resolve=True)
    return same and int(obj.get("global_step", -1)) >= steps


def _last_metrics(run_dir: Path) -> dict[str, float]:
    """Last logged value of each train/ and val/ scalar in the run's CSV log."""
    import csv

    out: dict[str, float] = {}
    for path in sorted(run_dir.glob("**/metrics.csv")):
        with path.open() as f:
            for row in csv.DictReader(f):
                for key, value in row.items():
                    if value and key.startswith(("train/", "val/")) and not key.endswith("_step"):
                        out[key] = float(value)
    return out


def _fmt_metrics(metrics: dict[str, float], keys: int = 4) -> str:
    items = [(k, v) for k, v in metrics.items() if k.startswith("val/") or k in ("PSNR", "SSIM", "F-LMD")]
    items = items or list(metrics.items())
    return ", ".join(f"{k}={v:.4g}" for k, v in items[:keys] if math.isfinite(v))


# -- the report ------------------------------------------------------------------------------------
def _loss_plot(stages: list[StageRun], path: Path) -> Path | None:
    import csv

    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, (len(stages) + 1) // 2, figsize=(3.2 * ((len(stages) + 1) // 2), 5.5))
    drawn = False
    for ax, st in zip(np.ravel(axes), stages, strict=False):
        series: dict[str, list[tuple[int, float]]] = {}
        for file in st.run_dir.glob("**/metrics.csv"):
            with file.open() as f:
                for row in csv.DictReader(f):
                    key = "train/loss" if row.get("train/loss") else None
                    key = key or next((k for k in row if k.startswith("train/") and row[k]), None)
                    if key and row.get("step"):
                        series.setdefault(key, []).append((int(float(row["step"])), float(row[key])))
        for key, pts in series.items():
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=key, lw=1)
            drawn = True
        ax.set_title(st.name, fontsize=9)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    if drawn:
        fig.savefig(path, dpi=90)
    plt.close(fig)
    return path if drawn else None


def _fmt_learning(row: dict[str, Any]) -> str:
    keys = ("psnr_video", "psnr_audio", "disentanglement_score", "sync_acc", "emotion_judge_acc")
    return ", ".join(f"{k}={row[k]:.3g}" for k in keys if isinstance(row.get(k), float))


def _cell(value: Any) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def learning_lines(learning: dict[str, Any]) -> list[str]:
    """The learning table: each target, ours vs the random-init floor, and the full probe tables."""
    from edtalk.apps.learning import target_checks

    ours, floor = target_checks(learning), target_checks(learning.get("floor", {}))
    lines = [
        "## Did it learn? (held-out speaker S04)",
        "",
        "| measure | ours | random-init floor | target | met |",
        "|---|---|---|---|---|",
    ]
    for key, (value, op, threshold, ok) in ours.items():
        met = "n/a" if ok is None else ("yes" if ok else "**no**")
        lines.append(f"| {key} | {_cell(value)} | {_cell(floor[key][0])} | {op} {threshold:g} | {met} |")
    lines += ["", "Out-of-sample R² of each coefficient group (rows) for each factor (columns); emotion: "
              "linear-probe accuracy (chance 0.25). Probes are fitted on the training speakers "
              "(metrics/DISENTANGLEMENT.md).", ""]  # fmt: skip
    for name, row in (("ours", learning), ("floor", learning.get("floor", {}))):
        r2, acc = row.get("r2") or {}, row.get("emotion_probe_acc") or {}
        factors = list(next(iter(r2.values()), {}))
        lines += [f"| {name} | {' | '.join(factors)} | emotion acc |", "|---" * (len(factors) + 2) + "|"]
        lines += [
            f"| {g} | {' | '.join(_cell(v) for v in per.values())} | {_cell(acc.get(g))} |"
            for g, per in r2.items()
        ]
        lines.append("")
    return lines


def _curve_plot(self: Quickstart, path: Path) -> Path | None:
    """Disentanglement score after each visual stage and the stages' val PSNR, against cumulative steps."""
    import matplotlib.pyplot as plt

    if not self.curve:
        return None
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.2))
    a1.plot([c["step"] for c in self.curve], [c["score"] for c in self.curve], "o-")
    for c in self.curve:
        a1.annotate(c["stage"], (c["step"], c["score"]), fontsize=7)
    a1.set(xlabel="step (cumulative over stages)", ylabel="disentanglement score", title="score")
    offset = 0
    for st in self.stages:
        if st.name not in VISUAL:
            continue
        pts = _series(st.run_dir, "val/psnr")
        if pts:
            a2.plot([offset + p[0] for p in pts], [p[1] for p in pts], "o-", label=st.name, ms=3)
        offset += st.steps
    a2.set(xlabel="step (cumulative over stages)", ylabel="val PSNR (dB)", title="PSNR (test speaker)")
    a2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _series(run_dir: Path, key: str) -> list[tuple[int, float]]:
    import csv

    pts = []
    for file in run_dir.glob("**/metrics.csv"):
        with file.open() as f:
            pts += [(int(float(r["step"])), float(r[key])) for r in csv.DictReader(f) if r.get(key)]
    return sorted(pts)


def _write(self: Quickstart) -> Path:
    lines = ["# edtalk quickstart report", ""]
    total = time.perf_counter() - self.started
    lines.append(
        f"Built-in data, 64² networks (profile `{self.profile}`), CPU. Total time {total / 60:.1f} min."
    )
    if self.learning:
        lines += ["", *learning_lines(self.learning)]
        lines.append("![probe tables](plots/disentanglement_probes.png)")
        curve = _curve_plot(self, self.out / "learning_curve.png")
        if curve:
            lines += ["", f"![learning curve]({curve.name})"]
    if self.stages:
        lines += [
            "",
            "## Training",
            "",
            "| stage | steps | seconds | last logged metrics |",
            "|---|---|---|---|",
        ]
        for st in self.stages:
            lines.append(f"| {st.name} | {st.steps} | {st.seconds:.0f} | {_fmt_metrics(st.metrics, 6)} |")
        plot = _loss_plot(self.stages, self.out / "losses.png")
        if plot:
            lines += ["", f"![training losses]({plot.name})"]
    if self.evaluation:
        table = Path(self.evaluation["table"]).read_text()
        lines += ["", "## Evaluation (built-in test split)", "", table]
        lines += [
            "",
            "`edtalk_video`: video-driven self-reconstruction (first frame = source, every frame drives); "
            "`edtalk_audio`: mouth from the clip's audio through the trained audio2mouth, pose and "
            "expression from the ground-truth frames.",
        ]
        for plot in self.evaluation["plots"]:
            lines.append(f"\n![{plot.stem}]({plot.relative_to(self.out)})")
    lines += _video_lines(self)
    path = self.out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    (self.out / "summary.json").write_text(json.dumps(_summary(self, total), indent=1))
    return path


def _video_lines(self: Quickstart) -> list[str]:
    source = "our generator (emotion_vectors/)" if self.emotion_vectors else "the official release"
    lines = ["", "## Videos", "", f"Emotion vectors: from {source}.", ""]
    lines += ["| mode | file | frames |", "|---|---|---|"]
    for name, path in self.videos.items():
        info = io.probe_video(path)
        lines.append(f"| {name} | [{path.name}]({path.relative_to(self.out)}) | {info.num_frames} |")
    for name, strip in self.strips.items():
        lines += ["", f"**{name}**", "", f"![{name}]({strip.relative_to(self.out)})"]
    return lines


def _summary(self: Quickstart, total: float) -> dict[str, Any]:
    return {
        "seconds": total,
        "profile": self.profile,
        "stages": {s.name: {"steps": s.steps, "seconds": s.seconds, **s.metrics} for s in self.stages},
        "evaluation": self.evaluation.get("summary", {}),
        "learning": self.learning,
        "learning_curve": self.curve,
        "videos": {k: str(v) for k, v in self.videos.items()},
        "strips": {k: str(v) for k, v in self.strips.items()},
    }


# -- the random-weights clip (kept for a fast smoke test) --------------------------------------------
def builtin_source(size: int) -> torch.Tensor:
    """The face of `skimage.data.astronaut()`, cropped square and resized: 1 x 3 x size x size in [-1, 1]."""
    from skimage import data

    face = data.astronaut()[20:220, 140:340]  # 200 x 200 around the face
    img = io.from_uint8(torch.from_numpy(np.ascontiguousarray(face)))[None]
    return F.interpolate(img, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


@torch.no_grad()
def render_random_clip(out_dir: Path, seconds: float = 2.0, size: int = 64, seed: int = 0) -> Path:
    """Render a clip whose mouth and pose weights follow smooth curves, with a random-init tiny generator."""
    from edtalk.config import GeneratorConfig
    from edtalk.nn.generator import Generator
    from edtalk.pipeline.render import Renderer

    torch.manual_seed(seed)
    gen = Generator(GeneratorConfig.tiny("full", size=size)).eval()
    frames = max(1, round(seconds * io.FPS))
    t = torch.arange(frames, dtype=torch.float32)[:, None] / io.FPS
    alpha = {
        "mouth": torch.sin(2 * math.pi * 3 * t + torch.arange(20)) * 0.5,
        "pose": torch.sin(2 * math.pi * 0.5 * t + torch.arange(6)) * 0.3,
        "exp": torch.zeros(frames, 10),
    }
    renderer = Renderer(gen, chunk_size=16, channels_last=False)
    source = renderer.still(builtin_source(size))
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "random_tiny_generator.mp4"
    sr = io.SAMPLE_RATE
    tone = 0.2 * np.sin(2 * np.pi * 220 * np.arange(int(seconds * sr)) / sr).astype(np.float32)
    with io.VideoWriter(path, audio=tone) as writer:
        for chunk, _ in renderer.stream(source, alpha, frames):
            writer.write(io.to_uint8(chunk))
    return path
