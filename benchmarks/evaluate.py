"""Seconds per clip of the whole evaluation suite on CPU, and the projection for MEAD's 2,293 test clips.

Run: .venv/bin/python benchmarks/evaluate.py [--clips 2] [--weights-dir DIR] [--protocol ours|eat] [--json]

Scores the built-in test clips against themselves (a result folder of re-encoded ground truth) with
every metric. Judges whose real weights are absent get random weights of the right architecture, so
the cost is the real cost (speed does not depend on the weight values). Prints the time per clip of
each metric group and the total, and the baseline (decode + PSNR/SSIM only) measured in the same run.
`--protocol eat`: the same for EAT's protocol (`metrics/eat.py`: re-encode, aligned crops, PSNR/SSIM,
LMD; + ImageNet-Inception FID, Emotion-FAN, syncnet_python LSE = S3FD detection + SyncNet scoring), with
the projection for MEAD's test split and EAT's 985-video list.

`--json`: `metrics.runner.evaluate` (the shared, batched path: one dlib detection per result video for
CSIM, LMD and the LSE crop, CSIM's descriptors batched in PyTorch, S3FD batched and loaded once,
channels-last judges, SSIM by scikit-image on the uint8 frames, the ground truth's side cached on disk) against
the unbatched path (`fast=False`, `edtalk evaluate --unbatched`: what `evaluate` did before), in one
process, CPU seconds per clip. tests/metrics/test_evaluate_fast.py checks both give the same values.
`--json --workers N`: also the `edtalk evaluate --workers N` path (N spawned processes, each scoring every
N-th clip into the per-clip store, threads = cores / N), cold then with the ground truth cached: wall
seconds per clip from the moment all N have loaded their judges, and their CPU seconds, under "workers".
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import tempfile
import time
from itertools import islice
from pathlib import Path
from typing import Any

import torch

MEAD_TEST_CLIPS = 2293
EAT_LIST_CLIPS = 985


def _random_judges(folder: Path) -> None:
    from torch_fidelity import feature_extractor_inceptionv3 as fe
    from torchvision.models import alexnet

    from metrics.judges import SyncNetV2
    from metrics.runner import WEIGHT_FILES

    torch.save(alexnet(weights=None).state_dict(), folder / WEIGHT_FILES["alexnet"])
    torch.save(SyncNetV2().state_dict(), folder / WEIGHT_FILES["syncnet"])
    load = fe.FeatureExtractorInceptionV3.load_state_dict
    url = fe.load_state_dict_from_url
    try:  # build the architecture without its download, keep the random initialisation
        fe.FeatureExtractorInceptionV3.load_state_dict = lambda self, sd: None  # type: ignore[assignment,method-assign]
        fe.load_state_dict_from_url = lambda *a, **k: {}  # type: ignore[assignment]
        net = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    finally:
        fe.FeatureExtractorInceptionV3.load_state_dict = load  # type: ignore[method-assign]
        fe.load_state_dict_from_url = url
    torch.save(net.state_dict(), folder / WEIGHT_FILES["inception"])


def main() -> None:
    from edtalk.io import write_video
    from metrics.runner import Judges, MethodScorer, ground_truth, load_judges, load_result

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=2)
    ap.add_argument("--weights-dir", default=None)
    ap.add_argument("--protocol", choices=("ours", "eat"), default="ours")
    ap.add_argument(
        "--json",
        action="store_true",
        help="only the runner against today's path (cold, then a second method with the ground truth "
        "cached on disk); the last line is {seconds_per_clip, seconds_per_clip_cached_gt, "
        "baseline_seconds_per_clip, ratio, projected_hours}",
    )
    ap.add_argument(
        "--workers",
        type=int,
        default=1,
        help="with --json and N > 1: also time `edtalk evaluate --workers N` (JSON key 'workers')",
    )
    args = ap.parse_args()
    if args.workers < 1 or (args.workers > 1 and not args.json):
        ap.error("--workers N takes N >= 1, and N > 1 only with --json")
    if args.json:
        print(json.dumps(runner_vs_baseline(args.protocol, args.clips, args.weights_dir, args.workers)))
        return
    if args.protocol == "eat":
        eat_main(args.clips, args.weights_dir)
        return
    tmp = Path(tempfile.mkdtemp(prefix="edtalk-bench-"))
    if args.weights_dir is None:
        _random_judges(tmp)
    judges = load_judges(args.weights_dir or tmp)
    clips = list(islice(ground_truth("builtin"), args.clips))
    paths = [write_video(tmp / f"{c.clip_id}.mp4", c.frames, audio=c.wav) for c in clips]
    frames = sum(len(c.frames) for c in clips)

    def timed(j: Judges) -> float:
        scorer = MethodScorer(j)
        start = time.perf_counter()
        for gt, path in zip(clips, paths):
            pred, wav = load_result(path, gt)
            scorer.add(gt, pred, wav)
        scorer.summary()
        return (time.perf_counter() - start) / len(clips)

    base = timed(Judges())
    parts = {
        "lpips": Judges(alexnet=judges.alexnet),
        "fid": Judges(inception=judges.inception),
        "csim+lmd (dlib)": Judges(dlib=judges.dlib),
        "lse": Judges(syncnet=judges.syncnet),
    }
    per = {name: timed(j) - base for name, j in parts.items()}
    total = base + sum(per.values())
    print(
        f"{len(clips)} built-in clips, {frames / len(clips):.0f} frames each (256^2, 25 fps), "
        f"{torch.get_num_threads()} threads"
    )
    print(f"baseline (decode + PSNR + SSIM): {base:.2f} s/clip")
    for name, sec in per.items():
        print(f"  + {name:16s} {sec:6.2f} s/clip  ({sec / base:.1f}x baseline)")
    print(f"whole suite: {total:.2f} s/clip = {total / base:.1f}x baseline")
    print(
        f"MEAD test ({MEAD_TEST_CLIPS} clips, frames scale by their length): "
        f"{total * MEAD_TEST_CLIPS / 3600:.1f} h at this clip length"
    )


def _random_eat_judges(folder: Path) -> None:
    from face_alignment.detection.sfd.net_s3fd import s3fd

    from metrics.judges import InceptionImageNet
    from metrics.judges.emotion_fan import EmotionFAN
    from metrics.runner import WEIGHT_FILES

    _random_judges(folder)
    state = {f"module.{k}": v for k, v in EmotionFAN().state_dict().items()}
    torch.save(
        {"epoch": 0, "state_dict": state, "accuracy": 0.0, "name": "random"},
        folder / WEIGHT_FILES["emotion_fan"],
    )
    torch.save(InceptionImageNet().net.state_dict(), folder / WEIGHT_FILES["inception_imagenet"])
    torch.save(s3fd().state_dict(), folder / WEIGHT_FILES["s3fd"])


def eat_main(n_clips: int, weights_dir: str | None) -> None:
    """Seconds per clip of `--protocol eat`, per step, and the projections."""
    from edtalk.io import read_video, write_video
    from metrics.eat import EatAligner, EatJudges, EatScorer, EmotionFANInputs
    from metrics.runner import PaperLSE, ground_truth, load_judges
    from metrics.sync import face_crops_224, score_video

    tmp = Path(tempfile.mkdtemp(prefix="edtalk-bench-eat-"))
    if weights_dir is None:
        _random_eat_judges(tmp)
    judges = load_judges(weights_dir or tmp, protocol="eat")
    clips = list(islice(ground_truth("builtin"), n_clips))
    paths = [write_video(tmp / f"{c.clip_id}.mp4", c.frames, audio=c.wav) for c in clips]
    aligner = EatAligner()

    def timed(make: Any) -> float:
        start = time.perf_counter()
        for gt, path in zip(clips, paths):
            gt.cache.clear()
            make(gt, path)
        return (time.perf_counter() - start) / len(clips)

    image = EatScorer(EatJudges(aligner))
    base = timed(image.add)  # re-encode + crops (result and ground truth) + MP4V + PSNR/SSIM + LMD
    fid = EatScorer(EatJudges(aligner, judges.inception_imagenet))
    per = {"fid (ImageNet Inception)": timed(fid.add) - base}
    fan = EatScorer(EatJudges(aligner, None, judges.emotion_fan, EmotionFANInputs()))
    per["acc_emo (Emotion-FAN)"] = timed(fan.add) - base
    assert judges.syncnet is not None and judges.s3fd is not None
    lse = PaperLSE(judges.syncnet, judges.s3fd)
    per["lse: S3FD tracks"] = timed(lambda gt, path: lse.add(path, gt))
    per["lse: SyncNet scoring"] = timed(
        lambda gt, path: score_video(judges.syncnet, face_crops_224(read_video(path)), gt.wav)
    )
    total = base + sum(per.values())
    frames = sum(len(c.frames) for c in clips) / len(clips)
    print(
        f"--protocol eat: {len(clips)} built-in clips, {frames:.0f} frames each, {torch.get_num_threads()} threads"
    )
    print(f"image steps (re-encode, align+crop both sides, MP4V, PSNR/SSIM, LMD): {base:.2f} s/clip")
    for name, sec in per.items():
        print(f"  + {name:26s} {sec:6.2f} s/clip  ({sec / base:.2f}x image steps)")
    print(f"whole suite: {total:.2f} s/clip ({total / frames:.3f} s/frame)")
    for name, n in (("MEAD test split", MEAD_TEST_CLIPS), ("EAT's 985-video list", EAT_LIST_CLIPS)):
        print(f"{name} ({n} clips): {total * n / 3600:.1f} h at this clip length on this CPU")


HDTF_TEST_VIDEOS = 77


def _clocks() -> tuple[float, float]:
    return time.process_time(), time.perf_counter()


def _per_clip(start: tuple[float, float], n: int) -> tuple[float, float]:
    """(CPU, wall) seconds per clip since `start`."""
    cpu, wall = _clocks()
    return (cpu - start[0]) / n, (wall - start[1]) / n


def runner_vs_baseline(
    protocol: str, n_clips: int, weights_dir: str | None, workers: int = 1
) -> dict[str, Any]:
    """Seconds per clip of `metrics.runner.evaluate` (per-clip store, the ground truth's side cached on
    disk) for a first method (cold caches) and a second one (the ground truth's side read back), against
    today's path (one scorer, nothing cached: what `evaluate` did before), all in this process.

    Every judge runs (random weights where the real files are absent); the results are the ground truth
    re-encoded. The projections scale the cold time by clip count (MEAD test 2,293 clips, EAT's list 985)
    and, for HDTF's 77 test videos, by frames (hours per minute of video). `workers` > 1: also the
    `--workers` path (`in_workers`).
    """
    from metrics.runner import MethodScorer, PresetScorer, Store, evaluate, load_judges

    tmp, weights, clips, methods = _bench_inputs(protocol, n_clips, weights_dir)
    judges = load_judges(weights, protocol=protocol)

    def fresh() -> None:  # an empty ground-truth disk cache, nothing kept in the clips
        os.environ["EDTALK_CACHE"] = tempfile.mkdtemp(prefix="cache-", dir=tmp)
        for c in clips:
            c.cache.clear()
            c.lmk = None

    def today() -> tuple[float, float]:
        fresh()
        scorer = (
            MethodScorer(judges, fast=False)
            if protocol == "ours"
            else PresetScorer(judges, protocol, fast=False)
        )
        start = _clocks()
        for gt in clips:
            scorer.add_video(gt, methods["a"] / f"{gt.clip_id}.mp4")
            gt.cache.clear()
        scorer.summary()
        return _per_clip(start, len(clips))

    def runner(name: str) -> tuple[float, float]:
        for c in clips:
            c.cache.clear()
            c.lmk = None
        start = _clocks()
        evaluate({name: methods[name]}, iter(clips), judges, log=lambda s: None, protocol=protocol,
                 store=Store(tmp / f"out-{name}"))  # fmt: skip
        return _per_clip(start, len(clips))

    (base, base_wall), _ = today(), fresh()
    cold, cold_wall = runner("a")
    cached, cached_wall = runner("b")  # the same split, a second method: the ground truth's side from disk
    frames = sum(len(c.frames) for c in clips) / len(clips)
    out = _result(protocol, len(clips), frames, (base, cold, cached), (base_wall, cold_wall, cached_wall))
    if workers > 1:
        out["workers"] = in_workers(protocol, n_clips, weights, methods, workers, tmp)
    return out


def _bench_inputs(
    protocol: str, n_clips: int, weights_dir: str | None
) -> tuple[Path, Path, list[Any], dict[str, Path]]:
    """A temporary folder, the judges' folder (random weights written there unless `weights_dir`), the
    first `n_clips` built-in clips, and two result folders ("a", "b") holding them re-encoded."""
    from edtalk.io import write_video
    from metrics.runner import ground_truth

    tmp = Path(tempfile.mkdtemp(prefix="edtalk-bench-json-"))
    if weights_dir is None:
        (_random_eat_judges if protocol == "eat" else _random_judges)(tmp)
    clips = list(islice(ground_truth("builtin"), n_clips))
    methods = {}
    for name in ("a", "b"):
        for c in clips:
            write_video(tmp / name / f"{c.clip_id}.mp4", c.frames, audio=c.wav)
        methods[name] = tmp / name
    return tmp, Path(weights_dir) if weights_dir else tmp, clips, methods


def in_workers(
    protocol: str, n_clips: int, weights: Path, methods: dict[str, Path], workers: int, tmp: Path
) -> dict[str, Any]:
    """Seconds per clip of `edtalk evaluate --workers N`'s scoring: N spawned processes, each with
    cores / N threads, its own judges, every N-th clip and the shared ground-truth disk cache (as
    `edtalk.commands.evaluate._worker`). Method "a" from an empty cache (cold), then "b" (the ground
    truth's side read back). The clock starts when all N have loaded their judges and decoded the
    clips (that start-up, once per run, is `startup_seconds`); wall seconds per clip are what N cores
    give, CPU seconds the workers' sum."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(workers + 1), ctx.Queue()
    cache = tempfile.mkdtemp(prefix="cache-workers-", dir=tmp)
    args = (protocol, n_clips, str(weights), {k: str(v) for k, v in methods.items()}, str(tmp), cache)
    start = time.perf_counter()
    procs = [
        ctx.Process(target=_bench_worker, args=(*args, (k, workers), threads, barrier, results))
        for k in range(workers)
    ]
    for p in procs:
        p.start()
    marks = []
    for _ in range(3):  # judges loaded, cold scored, cached scored
        barrier.wait(timeout=3600)
        marks.append(time.perf_counter())
    cpu = [results.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
        if p.exitcode:
            raise RuntimeError(f"benchmark worker exited with {p.exitcode}")
    n = min(n_clips, len(list(methods["a"].glob("*.mp4"))))
    return {
        "n": workers,
        "threads_per_worker": threads,
        "startup_seconds": round(marks[0] - start, 3),
        "wall_seconds_per_clip": round((marks[1] - marks[0]) / n, 3),
        "wall_seconds_per_clip_cached_gt": round((marks[2] - marks[1]) / n, 3),
        "cpu_seconds_per_clip": round(sum(c[0] for c in cpu) / n, 3),
        "cpu_seconds_per_clip_cached_gt": round(sum(c[1] for c in cpu) / n, 3),
        "how": "edtalk evaluate --workers N's scoring (spawned processes, every N-th clip each, per-clip "
        "store, shared ground-truth cache), timed from when all have loaded their judges: wall time over "
        "clips is the throughput on N free cores (not on a shared machine); fewer clips than workers "
        "leave workers idle",
    }


def _bench_worker(
    protocol: str,
    n_clips: int,
    weights: str,
    methods: dict[str, str],
    tmp: str,
    cache: str,
    worker: tuple[int, int],
    threads: int,
    barrier: Any,
    results: Any,
) -> None:
    """One `--workers` process of `in_workers`: its judges and clips, then its share of "a" and "b"."""
    from metrics.runner import Store, evaluate, ground_truth, load_judges

    torch.set_num_threads(threads)
    os.environ["EDTALK_CACHE"] = cache
    judges = load_judges(weights, protocol=protocol)
    clips = list(islice(ground_truth("builtin"), n_clips))
    barrier.wait(timeout=3600)
    cpu = []
    for name in ("a", "b"):
        for c in clips:
            c.cache.clear()
            c.lmk = None
        start = time.process_time()
        evaluate({name: Path(methods[name])}, iter(clips), judges, log=lambda s: None, protocol=protocol,
                 store=Store(Path(tmp) / f"out-workers-{name}", worker=worker))  # fmt: skip
        cpu.append(time.process_time() - start)
        barrier.wait(timeout=3600)
    results.put(cpu)


def _result(
    protocol: str, n: int, frames: float, cpu: tuple[float, float, float], wall: tuple[float, float, float]
) -> dict[str, Any]:
    """The --json line: CPU seconds per clip (baseline, runner cold, runner with the ground truth cached)."""
    (base, cold, cached), (base_wall, cold_wall, cached_wall) = cpu, wall
    return {
        "protocol": protocol,
        "clips": n,
        "frames_per_clip": frames,
        "threads": torch.get_num_threads(),
        "seconds_per_clip": round(cold, 3),
        "seconds_per_clip_cached_gt": round(cached, 3),
        "baseline_seconds_per_clip": round(base, 3),
        "ratio": round(base / cold, 3),
        "ratio_cached_gt": round(base / cached, 3),
        "projected_hours": {
            "mead_test_2293_clips": round(cold * MEAD_TEST_CLIPS / 3600, 2),
            "mead_test_second_method": round(cached * MEAD_TEST_CLIPS / 3600, 2),
            "eat_list_985_clips": round(cold * EAT_LIST_CLIPS / 3600, 2),
            "hdtf_test_77_videos_per_minute_of_video": round(
                cold / frames * 25 * 60 * HDTF_TEST_VIDEOS / 3600, 2
            ),
        },
        "clock": "CPU seconds of this process (time.process_time): the machine is shared, wall time is not comparable",
        "wall_seconds_per_clip": {
            "baseline": round(base_wall, 3),
            "runner": round(cold_wall, 3),
            "cached_gt": round(cached_wall, 3),
        },
        "note": "CPU shared with other jobs: compare the ratios, measured in this one process",
        "two_workers_seconds_per_clip": {  # a projection, not a measurement
            "cold": round(cold / 2, 3),
            "cached_gt": round(cached / 2, 3),
            "how": "CPU seconds / 2: `--workers 2` on 2 free cores (one process per core, each "
            "single-threaded, no shared state), if they scale linearly",
        },
        **({"eat_lse": EAT_LSE_NOTE} if protocol == "eat" else {}),
    }


EAT_LSE_NOTE = (
    "random S3FD weights find no face, so syncnet_python's LSE stops after detection: S3FD is timed, "
    "SyncNet scoring is not (as in --protocol ours: ~2 s per 75 frames); with real weights it runs on "
    "clips whose face track is over min_track = 100 frames"
)


if __name__ == "__main__":
    main()
