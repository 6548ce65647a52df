"""`edtalk evaluate` (score methods' result videos or a checkpoint on a split) and `edtalk lse` (one video)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="score result videos (or a checkpoint) on a split: PSNR, SSIM, LPIPS, FID, CSIM, LMD, LSE, emotion",
        description="Writes metrics.json, table.md (methods x metrics, ↑/↓), paper_table.md/.tex (the papers' "
        "columns, best bold, protocol/judges/clip count as caption), per_clip.csv and plots/ under --out. Each "
        "clip's result is kept under --out/clips as it finishes: a rerun skips what is done.",
    )
    p.add_argument(
        "--videos",
        nargs="+",
        action="extend",
        default=[],
        metavar="NAME=DIR",
        help="result folders, <clip id>.mp4 each (repeatable: --videos A=DIR --videos B=DIR)",
    )
    p.add_argument(
        "--checkpoint", default=None, help="render the split with this generator (self-reconstruction)"
    )
    p.add_argument(
        "--audio2lip",
        default=None,
        help="with --checkpoint: also render audio-driven (mouth from the clip's audio, GT pose/expression)",
    )
    p.add_argument("--split", default="builtin", choices=("builtin", "mead_test", "hdtf_test"))
    p.add_argument(
        "--clips",
        type=Path,
        default=None,
        help="score only the clip ids in this file (JSON list or one per line), e.g. a paper's protocol list",
    )
    p.add_argument(
        "--gt", default=None, help="ground-truth shard directory (default for builtin: built-in data)"
    )
    p.add_argument("--out", default="runs/evaluate", help="output folder")
    p.add_argument(
        "--weights-dir", default=None, help="judge weights folder (default $EDTALK_WEIGHTS or ./weights)"
    )
    p.add_argument("--fid-frames", type=int, default=5, help="frames per clip pooled for FID (0: all frames)")
    p.add_argument(
        "--no-lse-crop", action="store_true", help="LSE: resize whole frames instead of face-cropping"
    )
    p.add_argument("--max-clips", type=int, default=None, help="score only the first N ground-truth clips")
    p.add_argument(
        "--protocol",
        choices=("ours", "eat", "syncnet"),
        default="ours",
        help="ours: our suite (default); eat: EAT's MEAD protocol (aligned 128-px crops, its pairing, LMD, "
        "ImageNet-Inception FID, Emotion-FAN, syncnet_python LSE); syncnet: LSE only, syncnet_python's "
        "input preparation. See docs/protocols.md",
    )
    p.add_argument(
        "--emotion-judge",
        default=None,
        metavar="PATH",
        help="Emotion-FAN file (kind emotion_fan, EAT's self_relation-attention_61_84.3655): adds "
        "'acc_emo (Emotion-FAN)' (default under --protocol eat: <weights-dir>/self_relation-attention_61_84.3655)",
    )
    p.add_argument("--device", default="cpu", help="device for --checkpoint rendering")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes scoring clips side by side (each with its own judges)",
    )
    p.add_argument(
        "--shard",
        default=None,
        metavar="I/N",
        help="score only clips I, I+N, I+2N, ... of the split (0 <= I < N, e.g. $SLURM_ARRAY_TASK_ID/4); "
        "then `edtalk evaluate-merge DIR ...` makes the table of the whole split",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument(
        "--unbatched",
        action="store_true",
        help="each metric detects and prepares its own inputs, one frame per detector call (the path "
        "before batching and sharing; the same values to 1e-6, slower; what benchmarks/evaluate.py compares with)",
    )
    p.set_defaults(func=run)

    m = subparsers.add_parser(
        "evaluate-merge",
        help="one table from the shards of `edtalk evaluate --shard I/N` (the same table as one machine)",
        description="Reads each folder's shards/*.json and clips/, folds every clip in the split's order and "
        "writes the files `edtalk evaluate` writes under --out.",
    )
    m.add_argument(
        "folders", nargs="+", type=Path, help="the --out folders of the shards (one may hold several)"
    )
    m.add_argument("--out", required=True, help="output folder of the merged report")
    m.set_defaults(func=run_merge)

    q = subparsers.add_parser("lse", help="syncnet_python-style AV offset, LSE-D and LSE-C of one video")
    q.add_argument("video")
    q.add_argument("--audio", default=None, help="audio file (default: the video's own audio)")
    q.add_argument("--weights", required=True, help="syncnet_v2.model (syncnet_python layout)")
    q.add_argument("--json", action="store_true", help="print {offset, lse_d, lse_c} as the last line")
    q.add_argument(
        "--no-crop", action="store_true", help="the video already is a face crop: only resize to 224"
    )
    q.add_argument(
        "--crop",
        choices=("s3fd", "dlib", "none"),
        default=None,
        help="face crop: s3fd = syncnet_python's S3FD + IoU tracker (the paper protocol; needs --s3fd), "
        "dlib (default), none (= --no-crop)",
    )
    q.add_argument(
        "--s3fd",
        default=None,
        metavar="PATH",
        help="face-alignment's s3fd-619a316812.pth (file or folder) for --crop s3fd "
        "(default: torch hub's checkpoints folder)",
    )
    q.add_argument(
        "--min-track",
        type=int,
        default=100,
        help="--crop s3fd: a face track needs more frames than this (syncnet_python: 100)",
    )
    q.add_argument("--device", default="cpu", help="device for the judge and S3FD")
    q.add_argument("--vshift", type=int, default=15)
    q.set_defaults(func=run_lse)


def _parse_methods(items: list[str]) -> dict[str, Path]:
    methods = {}
    for item in items:
        name, sep, folder = item.partition("=")
        if not sep or not name or not folder:
            raise ValueError(f"--videos takes NAME=DIR, got {item!r}")
        if name in methods:
            raise ValueError(f"method name {name!r} given twice in --videos")
        methods[name] = Path(folder)
    return methods


def run(args: argparse.Namespace) -> int:
    from itertools import islice

    from metrics.runner import Store, evaluate, ground_truth, load_judges, read_clip_list
    from metrics.store import parse_shard

    shard = parse_shard(args.shard)
    if args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    methods = _parse_methods(args.videos)
    if not methods and not args.checkpoint:
        raise ValueError("give --videos NAME=DIR ... and/or --checkpoint FILE")
    if args.audio2lip and not args.checkpoint:
        raise ValueError("--audio2lip needs --checkpoint (the generator that renders the audio-driven clips)")
    out = Path(args.out)
    listed = read_clip_list(args.clips) if args.clips else None
    extras: dict[str, object] = {}
    if args.checkpoint:
        from metrics.render import render_split

        folders, extras = render_split(
            args.checkpoint, args.split, args.gt, out, args.max_clips, args.device, args.audio2lip, listed
        )
        name = Path(args.checkpoint).stem
        rendered = {name if kind == "video" else f"{name}_audio": f for kind, f in folders.items()}
        methods = {**rendered, **methods}
    judges = load_judges(args.weights_dir, protocol=args.protocol, emotion_judge=args.emotion_judge)
    for metric, why in judges.skipped().items():
        print(f"skipping {metric}: {why}", file=sys.stderr)
    total = _clip_count(args.split, args.gt, listed, args.max_clips)
    if args.workers > 1:
        _score_in_workers(args, methods, shard, total)

    report = evaluate(  # with --workers: every clip is on disk already, this folds them in order
        methods,
        islice(ground_truth(args.split, args.gt, listed), args.max_clips),
        judges,
        args.fid_frames,
        not args.no_lse_crop,
        log=lambda s: None,
        protocol=args.protocol,
        store=Store(out, shard),
        total=total,
        progress=not args.no_progress and args.workers == 1,
        fast=not args.unbatched,
    )
    if args.protocol != "ours":
        report.extras["protocol"] = args.protocol
    report.extras.update(extras)
    return _write(report, out)


def _write(report: Any, out: Path) -> int:
    from metrics.runner import markdown_table, write_report

    for name in report.summary:
        if report.missing[name]:
            print(
                f"{name}: missing {len(report.missing[name])} clips: {report.missing[name][:5]}",
                file=sys.stderr,
            )
        if report.extra[name]:
            print(
                f"{name}: {len(report.extra[name])} extra videos: {report.extra[name][:5]}", file=sys.stderr
            )
    for name, bad in report.failed.items():
        for clip, why in list(bad.items())[:5]:
            print(f"{name}: could not score {clip}: {why}", file=sys.stderr)
    files = write_report(report, out)
    print(markdown_table(report.summary))
    print(
        f"wrote {files['json']}, {files['table']}, {files['paper_md']}, {files['paper_tex']}, {files['csv']}"
    )
    return 0


def _clip_count(split: str, gt: str | None, listed: list[str] | None, max_clips: int | None) -> int | None:
    """How many clips the run scores (for the progress bar's ETA), from the shard index; None if unknown."""
    from metrics.clips import clip_ids

    ids = listed if listed is not None else clip_ids(split, gt)
    if ids is None:
        return None
    return min(len(ids), max_clips) if max_clips else len(ids)


def _score_in_workers(
    args: argparse.Namespace, methods: dict[str, Path], shard: tuple[int, int], total: int | None
) -> None:
    """Score the shard's clips in `--workers` spawned processes (their results land under --out/clips)."""
    import multiprocessing as mp
    import os
    import time
    from concurrent.futures import ProcessPoolExecutor

    from metrics.runner import Progress

    threads = max(1, (os.cpu_count() or 1) // args.workers)
    with ProcessPoolExecutor(args.workers, mp_context=mp.get_context("spawn")) as pool:
        jobs = [
            pool.submit(_worker, vars(args) | {"methods": methods}, shard, (k, args.workers), threads)
            for k in range(args.workers)
        ]
        bar = Progress(total if shard == (0, 1) else None, not args.no_progress)
        done = 0
        while not all(j.done() for j in jobs):
            time.sleep(2)
            now = (
                sum(len(list(p.glob("*.npz"))) for p in Path(args.out, "clips").glob("*/*"))
                if Path(args.out, "clips").is_dir()
                else 0
            )
            for _ in range(max(0, now // max(1, len(methods)) - done)):
                bar.step("")
            done = max(done, now // max(1, len(methods)))
        bar.close()
        for job in jobs:
            job.result()  # a worker's error stops the run here, with its traceback


def _worker(options: dict[str, Any], shard: tuple[int, int], worker: tuple[int, int], threads: int) -> None:
    """One worker process: its judges, its share of the clips, results written under --out/clips."""
    from itertools import islice

    import torch

    from metrics.runner import Store, evaluate, ground_truth, load_judges, read_clip_list

    torch.set_num_threads(threads)
    args = argparse.Namespace(**options)
    listed = read_clip_list(args.clips) if args.clips else None
    judges = load_judges(args.weights_dir, protocol=args.protocol, emotion_judge=args.emotion_judge)
    clips = islice(ground_truth(args.split, args.gt, listed), args.max_clips)
    store = Store(Path(args.out), shard, worker)
    evaluate(
        args.methods,
        clips,
        judges,
        args.fid_frames,
        not args.no_lse_crop,
        lambda s: None,
        args.protocol,
        store=store,
        fast=not options.get("unbatched", False),
    )


def run_merge(args: argparse.Namespace) -> int:
    from metrics.runner import merge

    return _write(merge(list(args.folders)), Path(args.out))


def run_lse(args: argparse.Namespace) -> int:
    from metrics.judges import SyncNetV2
    from metrics.sync import prepare_lse_inputs, score_video

    if args.no_crop and args.crop not in (None, "none"):
        raise ValueError(f"--no-crop contradicts --crop {args.crop}; give one of them")
    crop = "none" if args.no_crop else (args.crop or "dlib")
    net = SyncNetV2.from_file(args.weights).to(args.device)
    inputs = prepare_lse_inputs(
        args.video, crop, args.audio, args.s3fd, device=args.device, min_track=args.min_track
    )
    score = score_video(net, inputs.frames, inputs.wav, vshift=args.vshift)
    seconds_audio, seconds_video = len(inputs.wav) / 16000, len(inputs.frames) / 25
    if seconds_audio != seconds_video:
        print(f"warning: audio {seconds_audio:.3f}s and video {seconds_video:.3f}s differ", file=sys.stderr)
    if inputs.tracks > 1:
        print(f"note: {inputs.tracks} face tracks; scored the longest", file=sys.stderr)
    print(
        f"AV offset: {score.offset}\nMin dist (LSE-D): {score.lse_d:.3f}\nConfidence (LSE-C): {score.lse_c:.3f}"
    )
    if args.json:
        print(json.dumps(score.as_dict()))
    return 0
