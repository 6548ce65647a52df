"""`edtalk quickstart`: the main job on the built-in data (README's first command, `make demo`)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "quickstart",
        help="train every stage briefly on the built-in data, evaluate, render every mode, write a report",
        description="The main job: built-in dataset -> reconstruct -> mouth_pose -> expression -> "
        "coefficients -> syncnet / audio2mouth / audio2pose / audio2exp / emotion_classifier -> "
        "evaluation -> every generation mode -> OUT/report.md. Tiny 64x64 networks on the CPU. "
        "A rerun reuses finished stages. The job is the plan experiments/demo/plan.yaml (`edtalk run`).",
    )
    p.add_argument("--out", type=Path, default=Path("outputs/quickstart"), help="output folder")
    p.add_argument(
        "--steps",
        type=int,
        default=200,
        help="optimisation steps of each visual stage (the demo profile trains reconstruct 5x as many)",
    )
    p.add_argument("--audio-steps", type=int, default=120, help="optimisation steps of each audio stage")
    p.add_argument("--eval-clips", type=int, default=4, help="built-in test clips to evaluate")
    p.add_argument(
        "--profile",
        choices=("demo", "debug"),
        default="demo",
        help="demo: the CPU learning configuration (experiments/demo/); debug: the smoke-test networks",
    )
    p.add_argument(
        "--weights",
        type=Path,
        default=None,
        help="folder with official EDTalk.pt + Audio2Lip.pt: skip training, render the demo with them",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of every stage (and its data sampling), the learning table's floors and the renders",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="STAGE.KEY=VALUE",
        help="a config override for one stage, repeatable (the paper's ablations, experiments/demo/README.md: "
        "expression.model.ablation.no_eem=true)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads of each of the job's two processes (default 1: tiny networks, where a second "
        "thread costs more than it gains; the learning numbers are compared across thread counts in "
        "experiments/demo/README.md)",
    )
    p.add_argument(
        "--random-clip",
        action="store_true",
        help="only render a clip with a random-init tiny generator (seconds; a smoke test)",
    )
    p.set_defaults(func=run)


def oversubscribed(threads: int, cores: int, processes: int) -> str | None:
    """A warning when `threads` per process over the job's `processes` ask for more threads than `cores`,
    else None."""
    if threads * processes <= cores:
        return None
    return (
        f"warning: --threads {threads} x {processes} process{'es' if processes > 1 else ''} = {threads * processes} "
        f"threads on {cores} core{'s' if cores > 1 else ''}: "
        "the processes' threads wait on each other (measured on 2 cores at --threads 2: syncnet 220 steps in "
        f"10 min vs 360 in 2 min at one thread); --threads {max(1, cores // processes)} uses the cores without it"
    )


def run(args: argparse.Namespace) -> int:
    import os
    import sys

    import torch

    from edtalk.apps.quickstart import main_job, render_random_clip

    if args.random_clip:
        print(f"wrote {render_random_clip(args.out, seed=args.seed)}")
        return 0
    from edtalk.apps.runner import second_core

    warning = oversubscribed(args.threads, os.cpu_count() or 1, 2 if second_core() else 1)
    if warning:
        print(warning, file=sys.stderr)
    torch.set_num_threads(args.threads)
    job = main_job(
        args.out,
        args.steps,
        args.audio_steps,
        args.weights,
        args.eval_clips,
        args.profile,
        args.seed,
        settings=args.set,
        threads=args.threads,
    )
    report = job.run()["report"]
    print(f"report: {report}")
    print(f"videos: {args.out / 'videos'}")
    return 0
