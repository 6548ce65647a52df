"""The four sections of the GPU check (tests, train, inference, evaluation); each runs in its own process.

Every section takes (recorder, dry_run, deadline): it measures what fits before `deadline` (epoch
seconds), writes each result through the `Recorder` as soon as it has it, and marks what it had to
leave out as skipped for lack of time. `dry_run` swaps in tiny sizes on the CPU so CI runs every line.
Importing this module never initialises CUDA (the parent forks the sections after importing it).
"""

from __future__ import annotations

import gc
import json
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from train_step import _median, _Repeat, _Timer  # benchmarks/train_step.py: the timed Lightning loop

from edtalk.config import GeneratorConfig
from edtalk.losses import VGGPyramidLoss
from edtalk.nn.discriminator import Discriminator
from edtalk.nn.generator import Generator
from edtalk.stages import stage_class
from edtalk.stages.base import GANStage

GIB = 2**30
GOAL_FPS, GOAL_RATIO = 300.0, 10.0  # issue 17: batched frames/s on one GPU, and x the per-frame way


# -- recording -----------------------------------------------------------------------------------
class Recorder:
    """A section's result dict, rewritten to `path` (JSON) after every change."""

    def __init__(self, path: Path) -> None:
        self.path, self.data = path, {}  # type: ignore[var-annotated]

    def set(self, **items: Any) -> None:
        self.data.update(items)
        self._flush()

    def append(self, key: str, row: dict[str, Any]) -> None:
        self.data.setdefault(key, []).append(row)
        self._flush()
        print(f"  {key}: {json.dumps(row, default=str)}", flush=True)

    def _flush(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=str))
        tmp.replace(self.path)


def left(deadline: float) -> float:
    return deadline - time.time()


def pick_device(dry_run: bool) -> torch.device:
    """cuda on the GPU run (an error if it is missing there), cpu for the dry run."""
    if dry_run:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError("no CUDA device visible to torch; run with --dry-run on a CPU machine")
    return torch.device("cuda")


def device_info(device: torch.device) -> dict[str, Any]:
    if device.type != "cuda":
        return {"device": "cpu", "threads": torch.get_num_threads()}
    p = torch.cuda.get_device_properties(device)
    return {
        "device": p.name,
        "memory_gib": round(p.total_memory / GIB, 1),
        "capability": f"{p.major}.{p.minor}",
        "bf16": torch.cuda.is_bf16_supported(),
        "cudnn": torch.backends.cudnn.version(),
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32,
    }


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free(device: torch.device) -> None:
    """Release what the last measurement left behind and restart the peak-memory counter."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / GIB, 2) if device.type == "cuda" else None


def is_oom(err: BaseException) -> bool:
    """CUDA out-of-memory, including cuDNN/cuBLAS allocation failures that surface as RuntimeError."""
    text = str(err)
    return isinstance(err, torch.OutOfMemoryError) or any(
        s in text for s in ("out of memory", "ALLOC_FAILED", "CUBLAS_STATUS_ALLOC")
    )


def error_text(err: BaseException) -> str:
    return f"{type(err).__name__}: {str(err)[:500]}"


# -- section: tests --------------------------------------------------------------------------------
def tests_section(rec: Recorder, dry_run: bool, deadline: float) -> None:
    """`pytest -m gpu tests/gpu` in this process; each test's outcome is recorded as soon as it ends."""
    import pytest

    timeout = max(10, int(left(deadline) - 5))
    args = ["-q", "-p", "no:cacheprovider", "-m", "gpu", "tests/gpu", "-rs"]
    args += [f"--timeout={timeout}"] if _has_plugin("pytest_timeout") else []
    rec.set(command="pytest " + " ".join(args))
    code = int(pytest.main(args, plugins=[_CaseRecorder(rec)]))
    cases = rec.data.get("cases", [])
    counts = {k: sum(c["outcome"] == k for c in cases) for k in ("passed", "failed", "error", "skipped")}
    rec.set(exit_code=code, passed=counts["passed"], failed=counts["failed"], errors=counts["error"])
    rec.set(skipped=counts["skipped"])
    if code not in (0, 5):  # 5: nothing collected (impossible here unless the marker vanished)
        rec.set(status="error", error=f"pytest exit code {code}")
        raise SystemExit(1)


class _CaseRecorder:
    """pytest plugin: one {name, outcome, seconds, message} per test, written when the test ends."""

    def __init__(self, rec: Recorder) -> None:
        self.rec = rec

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.when == "call" or (report.when != "call" and not report.passed):
            if report.skipped:
                outcome = "skipped"
                longrepr = report.longrepr
                message = str(longrepr[2]) if isinstance(longrepr, tuple) else str(longrepr)
            elif report.failed:
                outcome = "failed" if report.when == "call" else "error"
                message = report.longreprtext[-600:]
            else:
                outcome, message = "passed", ""
            row = {"name": report.nodeid, "outcome": outcome, "seconds": round(report.duration, 2)}
            self.rec.append("cases", row | {"message": message})


def _has_plugin(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


# -- section: train ------------------------------------------------------------------------------
STAGE_KEYS = {
    "mouth_pose": ("source_a", "target_a", "source_b", "target_b", "swap_ab", "swap_ba"),
    "expression": ("source", "target"),
}
STAGE_VARIANT = {"mouth_pose": "lip_pose", "expression": "full"}


@dataclass
class TrainPlan:
    size: int
    batch: int
    warmup: int
    steps: int
    max_batch: int  # the doubling search stops here
    tiny: bool

    @classmethod
    def make(cls, dry_run: bool) -> TrainPlan:
        if dry_run:
            return cls(size=64, batch=2, warmup=0, steps=1, max_batch=4, tiny=True)
        return cls(size=256, batch=16, warmup=2, steps=4, max_batch=4096, tiny=False)


def build_stage(stage: str, plan: TrainPlan, channels_last: bool) -> GANStage:
    """The stage at full width (random weights; the tiny widths of the tests in a dry run)."""
    torch.manual_seed(0)
    variant = STAGE_VARIANT[stage]
    if plan.tiny:
        gen = Generator(GeneratorConfig.tiny(variant, plan.size))  # type: ignore[arg-type]
        disc, vgg = Discriminator(plan.size, 0.125, 16), VGGPyramidLoss(init="random", width=0.125)
    else:
        gen = Generator(GeneratorConfig(size=plan.size, variant=variant))  # type: ignore[arg-type]
        disc, vgg = Discriminator(plan.size), VGGPyramidLoss(init="random")
    cls = stage_class(stage)
    cfg = cls.Config()
    cfg.samples_every_n_steps, cfg.diagnostics_every_n_steps = 0, 0
    cfg.channels_last = channels_last
    return cls(gen, disc, vgg, cfg)


def uint8_batch(stage: str, size: int, batch: int) -> dict[str, torch.Tensor]:
    """Smooth random images as the DataModules deliver them (uint8; the stage converts on the device)."""
    keys = STAGE_KEYS[stage]
    g = torch.Generator().manual_seed(0)
    low = torch.rand(len(keys) * batch, 3, 16, 16, generator=g)
    imgs = F.interpolate(low, size=size, mode="bicubic", align_corners=False).clamp(0, 1)
    return dict(zip(keys, (imgs * 255).round().to(torch.uint8).chunk(len(keys))))


def fit_steps(
    stage: str,
    precision: str,
    channels_last: bool,
    batch: int,
    steps: int,
    plan: TrainPlan,
    device: torch.device,
    autotune: bool = True,
) -> tuple[list[float], float | None]:
    """Seconds of each of `steps` optimisation steps under a real Trainer, and the peak GPU memory (GiB)."""
    free(device)
    module = build_stage(stage, plan, channels_last)
    timer = _Timer(device.type)
    with tempfile.TemporaryDirectory(prefix="edtalk-gpu-") as tmp:
        trainer = L.Trainer(
            accelerator="gpu" if device.type == "cuda" else "cpu",
            devices=1,
            max_steps=steps,
            precision=precision,  # type: ignore[arg-type]
            benchmark=autotune and device.type == "cuda",  # fixed shapes: let cuDNN pick kernels
            default_root_dir=tmp,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            callbacks=[timer],
        )
        loader = torch.utils.data.DataLoader(
            _Repeat(uint8_batch(stage, plan.size, batch), steps), batch_size=None
        )
        trainer.fit(module, train_dataloaders=loader)
    return list(timer.times), peak_gib(device)


def max_batch(
    combo: tuple[str, str, bool],
    plan: TrainPlan,
    device: torch.device,
    measured: tuple[float, float | None],
    until: float,
) -> dict[str, Any]:
    """Largest batch that trains one step: doubling from plan.batch until OOM, the cap or `until`.

    `measured` = (seconds per step, peak GiB) at plan.batch. Once two sizes have fitted, the doubling
    jumps ahead to the largest power-of-two multiple that the linear fit of peak memory against batch
    says still fits (cuDNN autotuning off in these one-step trials: only memory matters here).
    """
    fits: dict[int, float | None] = {plan.batch: measured[1]}
    step_s, oom_at, end = measured[0], None, "cap"
    capacity = (
        0.9 * torch.cuda.get_device_properties(device).total_memory / GIB if device.type == "cuda" else None
    )
    while True:
        best = max(fits)
        size = next_size(fits, oom_at, capacity)
        if size is None or size > plan.max_batch:
            end = "oom" if oom_at is not None else "cap"
            break
        if time.time() + 2 * step_s * size / best + 5 > until:  # linear in batch, x2 for the first step
            end = "time"
            break
        try:
            times, fits[size] = fit_steps(*combo, size, 1, plan, device, autotune=False)
            step_s = times[-1] * best / size
        except Exception as err:
            if not is_oom(err):
                raise
            oom_at = size
    free(device)
    best = max(fits)
    return {"max_batch": best, "max_batch_peak_gib": fits[best], "max_batch_end": end, "oom_at": oom_at}


def next_size(fits: dict[int, float | None], oom_at: int | None, capacity: float | None) -> int | None:
    """The next batch to try (a power-of-two multiple of the largest that fitted), or None when done.

    fits: {batch: peak GiB or None} of the sizes that trained; capacity: usable GiB (None: just double).
    """
    best = max(fits)
    if oom_at is not None:
        return best * 2 if best * 2 < oom_at else None
    peaks = sorted((b, p) for b, p in fits.items() if p is not None)
    if len(peaks) < 2 or capacity is None:
        return best * 2
    (b0, p0), (b1, p1) = peaks[-2], peaks[-1]
    per_item = max((p1 - p0) / (b1 - b0), 1e-6)  # GiB per sample
    predicted = b1 + (capacity - p1) / per_item
    size = best * 2
    while size * 2 <= predicted:
        size *= 2
    return size


def measure_train(
    combo: tuple[str, str, bool], plan: TrainPlan, device: torch.device, until: float
) -> dict[str, Any]:
    stage, precision, cl = combo
    row: dict[str, Any] = {"stage": stage, "precision": precision, "channels_last": cl, "size": plan.size}
    row["batch"] = plan.batch
    try:
        times, peak = fit_steps(stage, precision, cl, plan.batch, plan.warmup + plan.steps, plan, device)
        s = _median(times[plan.warmup :])
        row.update(s_per_step=round(s, 4), images_per_s=round(plan.batch / s, 2), peak_mem_gib=peak)
        row.update(max_batch(combo, plan, device, (s, peak), until))
    except Exception as err:
        row["error"] = error_text(err)
        row["oom"] = is_oom(err)
        free(device)
    return row


def train_section(rec: Recorder, dry_run: bool, deadline: float) -> None:
    """images/s, peak memory and largest batch of mouth_pose and expression, 32-true/bf16-mixed x CL."""
    device = pick_device(dry_run)
    plan = TrainPlan.make(dry_run)
    rec.set(device=device_info(device), plan=plan.__dict__, unit="images_per_s = training samples/s")
    combos = [
        (stage, precision, cl)
        for stage in STAGE_KEYS
        for precision in ("32-true", "bf16-mixed")
        for cl in (False, True)
    ]
    for i, combo in enumerate(combos):
        share = left(deadline) / (len(combos) - i)
        if share < (2 if dry_run else 8):
            rec.append(
                "rows",
                {"stage": combo[0], "precision": combo[1], "channels_last": combo[2], "skipped": "time"},
            )
            continue
        print(f"[train] {combo} ({share:.0f} s)", flush=True)
        # the dry run exercises the doubling search once (against the section's deadline: on a busy CI
        # machine one row's share is too short to predict a fit), then spends its time elsewhere
        rec.append("rows", measure_train(combo, plan, device, deadline if dry_run else time.time() + share))
        if dry_run:
            plan.max_batch = plan.batch


# -- section: inference ----------------------------------------------------------------------------
@dataclass
class InferPlan:
    size: int
    seconds: float  # audio length rendered by our pipeline
    baseline_frames: int  # frames timed for the per-frame way (its cost per frame is constant)
    chunks: tuple[int, ...]
    tiny: bool

    @classmethod
    def make(cls, dry_run: bool) -> InferPlan:
        if dry_run:
            return cls(size=64, seconds=1.0, baseline_frames=3, chunks=(8,), tiny=True)
        return cls(size=256, seconds=20.0, baseline_frames=40, chunks=(32, 128), tiny=False)


def speech(seconds: float) -> np.ndarray:
    """A speech-like 16 kHz signal: ~4 syllables/s on a vowel-like tone (as benchmarks/generate.py)."""
    t = np.arange(int(seconds * 16000)) / 16000
    syllables = 0.5 * (1 + np.sin(2 * np.pi * 4 * t))
    return (0.3 * syllables * np.sin(2 * np.pi * 140 * t) * np.sin(2 * np.pi * 700 * t)).astype(np.float32)


def inference_inputs(folder: Path, plan: InferPlan) -> dict[str, Path]:
    """A pre-cropped photo and two speech files (the timed one and a 1 s warm-up)."""
    from PIL import Image
    from skimage import data

    from edtalk.io import write_wav

    face = Image.fromarray(data.astronaut()[20:220, 140:340]).resize((plan.size, plan.size))
    face.save(folder / "source.png")
    write_wav(folder / "speech.wav", speech(plan.seconds))
    write_wav(folder / "warmup.wav", speech(1.0))
    return {"source": folder / "source.png", "audio": folder / "speech.wav", "warmup": folder / "warmup.wav"}


def autocast(device: torch.device, bf16: bool) -> AbstractContextManager[Any]:
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()


def per_frame_fps(gen: Generator, files: dict[str, Path], plan: InferPlan, bf16: bool) -> float:
    """The original demos' way (benchmarks/render.py UpstreamStyle): batch 1, source re-encoded per frame."""
    from PIL import Image
    from render import UpstreamStyle

    from edtalk.emotions import emotion_weights
    from edtalk.io import from_uint8, read_audio
    from edtalk.mel import mel_windows, smooth_coefficients
    from edtalk.nn.audio2lip import Audio2Lip

    device = next(gen.parameters()).device
    torch.manual_seed(1)
    a2l = Audio2Lip().eval().to(device)
    with torch.no_grad():
        mouth = smooth_coefficients(a2l(torch.from_numpy(mel_windows(read_audio(files["audio"]))).to(device)))
    source = from_uint8(np.array(Image.open(files["source"]).convert("RGB")))[None].to(device)
    exp = emotion_weights("happy").reshape(1, -1).to(device)
    base = UpstreamStyle(gen)
    n = min(plan.baseline_frames, len(mouth))
    with autocast(device, bf16):
        for i in range(2):  # warm-up
            base.frame(source, mouth[i : i + 1], source, exp)
        sync(device)
        start = time.perf_counter()
        for i in range(n):
            base.frame(source, mouth[i : i + 1], source, exp)  # pose driver = the photo (--fix_pose)
        sync(device)
    return n / (time.perf_counter() - start)


def batched_fps(gen: Generator, files: dict[str, Path], chunk: int, bf16: bool) -> tuple[float, int]:
    """Ours: `Pipeline.stream` (audio -> mouth, emotion weights, chunked rendering, frames back on the CPU)."""
    from edtalk.nn.audio2lip import Audio2Lip
    from edtalk.pipeline import Inputs, Pipeline

    device = next(gen.parameters()).device
    torch.manual_seed(1)
    pipe = Pipeline(gen, Audio2Lip(), device=device, chunk_size=chunk, bf16=bf16, crop=False, progress=False)
    for _ in pipe.stream(Inputs(files["source"], audio=files["warmup"], emotion="happy")):
        pass
    sync(device)
    start = time.perf_counter()
    frames = sum(len(c) for c in pipe.stream(Inputs(files["source"], audio=files["audio"], emotion="happy")))
    sync(device)
    return frames / (time.perf_counter() - start), frames


def inference_generator(plan: InferPlan, device: torch.device) -> Generator:
    from render import tame

    torch.manual_seed(0)
    cfg = GeneratorConfig.tiny("full", plan.size) if plan.tiny else GeneratorConfig(size=plan.size)
    return tame(Generator(cfg)).eval().to(device)


def inference_section(rec: Recorder, dry_run: bool, deadline: float) -> None:
    """frames/s at 256^2, audio + emotion: per-frame (original) vs our batched pipeline, fp32 and bf16."""
    device = pick_device(dry_run)
    plan = InferPlan.make(dry_run)
    rec.set(
        device=device_info(device), plan=plan.__dict__, goal={"batched_fps": GOAL_FPS, "ratio": GOAL_RATIO}
    )
    gen = inference_generator(plan, device)
    with tempfile.TemporaryDirectory(prefix="edtalk-gpu-") as tmp:
        files = inference_inputs(Path(tmp), plan)
        for precision in ("fp32", "bf16"):
            rec.append("rows", infer_precision(gen, files, plan, precision, deadline))
        for precision in ("fp32", "bf16"):
            rec.append("stream_rows", stream_row(gen, files, plan, precision, deadline))


def stream_row(
    gen: Generator, files: dict[str, Path], plan: InferPlan, precision: str, deadline: float
) -> dict[str, Any]:
    """`edtalk stream`'s loop on this device: the timed speech paced at real time, frames back on the CPU.

    Reports the JSON line of `edtalk stream` (first-frame latency, real-time factor, frames, dropped)."""
    from PIL import Image

    from edtalk.io import from_uint8
    from edtalk.nn.audio2lip import Audio2Lip
    from edtalk.pipeline.live import LiveSession, LiveStats, PcmReader
    from edtalk.pipeline.render import Renderer

    row: dict[str, Any] = {"precision": precision, "size": plan.size, "seconds": plan.seconds}
    if left(deadline) < plan.seconds + (5 if plan.tiny else 30):
        return row | {"skipped": "time"}
    try:
        device = next(gen.parameters()).device
        torch.manual_seed(1)
        renderer = Renderer(gen, chunk_size=2)
        image = from_uint8(np.array(Image.open(files["source"]).convert("RGB")))[None].to(device)
        stats = LiveStats()
        with torch.inference_mode(), autocast(device, precision == "bf16"):
            session = LiveSession(renderer, Audio2Lip().eval().to(device), renderer.still(image), None)
            session.warm_up()
            with open(files["audio"], "rb") as fh:
                session.run(PcmReader(fh, "speech", realtime=True).start(), lambda f, a: None, stats)
        row |= stats.report()
    except Exception as err:
        row["error"] = error_text(err)
    return row


def infer_precision(
    gen: Generator, files: dict[str, Path], plan: InferPlan, precision: str, deadline: float
) -> dict[str, Any]:
    """One precision: the per-frame fps, our fps per chunk size, and the goal lines."""
    bf16 = precision == "bf16"
    row: dict[str, Any] = {"precision": precision, "size": plan.size}
    if left(deadline) < (3 if plan.tiny else 15):
        return row | {"skipped": "time"}
    try:
        row["per_frame_fps"] = round(per_frame_fps(gen, files, plan, bf16), 2)
        for chunk in plan.chunks:
            fps, frames = batched_fps(gen, files, chunk, bf16)
            row[f"batched_fps_chunk{chunk}"] = round(fps, 2)
            row["frames"] = frames
    except Exception as err:
        row["error"] = error_text(err)
    best = max((v for k, v in row.items() if k.startswith("batched_fps")), default=None)
    if best is not None and row.get("per_frame_fps"):
        row["batched_fps"] = best
        row["ratio"] = round(best / row["per_frame_fps"], 2)
        row["goal_fps_met"] = best >= GOAL_FPS
        row["goal_ratio_met"] = row["ratio"] >= GOAL_RATIO
    return row


# -- section: evaluation ----------------------------------------------------------------------------
@dataclass
class EvalPlan:
    clips: int
    frames: int
    size: int
    fid_feature: str  # "2048": the real FID features; the dry run takes torch-fidelity's 64-d layer
    fid_frames: int  # frames per clip fed to FID (the runner's default protocol: 5)
    dlib: bool  # score CSIM/LMD with dlib when it is installed (a CPU-only judge)

    @classmethod
    def make(cls, dry_run: bool) -> EvalPlan:
        if dry_run:
            return cls(clips=1, frames=12, size=64, fid_feature="64", fid_frames=2, dlib=False)
        return cls(clips=4, frames=100, size=256, fid_feature="2048", fid_frames=5, dlib=True)


def write_random_judges(folder: Path, tiny: bool) -> None:
    """Random judge weights in their real file layouts (benchmarks/evaluate.py), plus an emotion classifier."""
    from evaluate import _random_judges

    from edtalk.nn.emotion import EmotionClassifier, EmotionClassifierConfig
    from edtalk.weights import save_checkpoint
    from metrics.runner import WEIGHT_FILES

    _random_judges(folder)
    cfg = EmotionClassifierConfig.tiny() if tiny else EmotionClassifierConfig()
    save_checkpoint(EmotionClassifier(cfg), "emotion_classifier", folder / WEIGHT_FILES["emotion"])


def load_judges_on(folder: Path, device: torch.device, plan: EvalPlan) -> tuple[Any, dict[str, str]]:
    """The judges from their files, each network moved to `device` (inputs follow, outputs come back).

    The evaluation runner (metrics.runner.MethodScorer) has no device option yet: it feeds CPU tensors.
    Each network's forward is wrapped to move its inputs to `device` and its outputs back, so the
    networks run on the GPU while PSNR/SSIM and the FID statistics stay on the CPU, as in the runner.
    A judge that cannot be built is left out and named in the returned {judge: reason}.
    """
    from metrics.judges import DlibFace, InceptionFID, LPIPSAlex, SyncNetV2
    from metrics.runner import WEIGHT_FILES, Judges, load_emotion_classifier

    loaders: dict[str, Callable[[], Any]] = {
        "syncnet": lambda: SyncNetV2.from_file(folder / WEIGHT_FILES["syncnet"]),
        "inception": lambda: InceptionFID(folder / WEIGHT_FILES["inception"], plan.fid_feature),
        "alexnet": lambda: LPIPSAlex.from_files(folder / WEIGHT_FILES["alexnet"]),
        "emotion": lambda: load_emotion_classifier(folder / WEIGHT_FILES["emotion"]),
    }
    judges, skipped = Judges(), {}
    if plan.dlib:  # CPU only; its models ship in face-recognition-models (too big to carry to the GPU)
        loaders["dlib"] = DlibFace
    else:
        skipped["dlib"] = "left out of the dry run (a slow CPU-only judge)"
    for name, load in loaders.items():
        try:
            setattr(judges, name, load())
        except Exception as err:
            skipped[name] = error_text(err)
    for name in ("syncnet", "inception", "alexnet", "emotion"):
        net = getattr(judges, name)
        if net is None:
            continue
        net.to(device)
        if name != "syncnet":  # metrics.sync already moves its windows to the network's device
            net.forward = _moving(net.forward, device)
    return judges, skipped


def _moving(forward: Callable[..., torch.Tensor], device: torch.device) -> Callable[..., torch.Tensor]:
    def wrapped(*args: torch.Tensor) -> torch.Tensor:
        return forward(*(a.to(device) for a in args)).cpu()

    return wrapped


def synthetic_clips(plan: EvalPlan) -> Iterator[tuple[Any, np.ndarray, np.ndarray]]:
    """(ground truth, prediction = GT + noise, audio) per clip: smooth random frames at 25 fps."""
    from metrics.runner import GroundTruth

    g = torch.Generator().manual_seed(0)
    for i in range(plan.clips):
        low = torch.rand(plan.frames, 3, 8, 8, generator=g)
        frames = F.interpolate(low, size=plan.size, mode="bicubic", align_corners=False).clamp(0, 1)
        gt = (frames * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()  # T x H x W x 3
        noise = torch.randint(-12, 13, gt.shape, generator=g).numpy()
        pred = np.clip(gt.astype(np.int16) + noise, 0, 255).astype(np.uint8)
        wav = speech(plan.frames / 25)
        yield GroundTruth(f"M003#happy#level_3#{i:03d}", gt, wav, {"fps": 25}), pred, wav


def score_seconds(judges: Any, plan: EvalPlan, device: torch.device) -> tuple[float, float, dict[str, float]]:
    """(seconds per clip of the whole suite, seconds of the split's summary, the summary).

    Scoring only: the frames are already in memory (no video decoding). The summary is paid once per
    split (FID's matrix square root on the CPU), so it is timed apart from the per-clip work.
    """
    from metrics.runner import MethodScorer

    clips = list(synthetic_clips(plan))
    if device.type == "cuda":
        MethodScorer(judges, fid_frames=plan.fid_frames).add(*clips[0])  # warm-up: cuDNN, allocator
    scorer = MethodScorer(judges, fid_frames=plan.fid_frames)
    sync(device)
    start = time.perf_counter()
    for gt, pred, wav in clips:
        scorer.add(gt, pred, wav)
    sync(device)
    per_clip = (time.perf_counter() - start) / len(clips)
    start = time.perf_counter()
    summary = scorer.summary()
    return per_clip, time.perf_counter() - start, summary


def evaluation_section(rec: Recorder, dry_run: bool, deadline: float) -> None:
    """Seconds per clip of every metric whose judge is available, the judges on the GPU."""
    device = pick_device(dry_run)
    plan = EvalPlan.make(dry_run)
    rec.set(device=device_info(device), plan=plan.__dict__)
    with tempfile.TemporaryDirectory(prefix="edtalk-gpu-") as tmp:
        write_random_judges(Path(tmp), dry_run)
        judges, skipped = load_judges_on(Path(tmp), device, plan)
        rec.set(skipped=skipped)
        secs, summary_s, summary = score_seconds(judges, plan, device)
        rec.set(s_per_clip=round(secs, 3), summary_s=round(summary_s, 3), metrics=sorted(summary))
        # MEAD test split (2,293 clips) at this clip length (plan.frames); the target is <= 2 h on one GPU
        rec.set(projected_hours_mead_test=round(secs * 2293 / 3600, 2))
        rec.set(summary={k: round(v, 4) for k, v in summary.items()})
        if device.type == "cuda" and left(deadline) > 40:  # the same suite on this machine's CPUs, 1 clip
            cpu_judges, _ = load_judges_on(Path(tmp), torch.device("cpu"), plan)
            one = EvalPlan(**(plan.__dict__ | {"clips": 1}))
            cpu_secs, _, _ = score_seconds(cpu_judges, one, torch.device("cpu"))
            rec.set(cpu_s_per_clip=round(cpu_secs, 3), speedup_vs_cpu=round(cpu_secs / secs, 2))


SECTIONS: dict[str, Callable[[Recorder, bool, float], None]] = {
    "tests": tests_section,
    "train": train_section,
    "inference": inference_section,
    "evaluation": evaluation_section,
}
