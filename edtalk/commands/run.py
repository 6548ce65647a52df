"""`edtalk run PLAN.yaml`: run a plan (the stage graph, then its tasks); the main job is the demo plan."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "run",
        help="run a plan: its stages in dependency order, then its tasks (the main job: experiments/demo/plan.yaml)",
        description="Train the stages a plan file lists, in order (each an `edtalk fit` run under OUT/runs/; "
        "a second process where the machine has a second core; finished stages are reused), then run its "
        "tasks. Format: edtalk/apps/plan.py; example: experiments/demo/plan.yaml.",
    )
    p.add_argument("plan", type=Path, help="plan file (YAML)")
    p.add_argument("--out", type=Path, default=Path("outputs/run"), help="output folder")
    p.add_argument("--profile", default=None, help="a profile of the plan (default: its first)")
    p.add_argument("--seed", type=int, default=0, help="seed of every stage and of the tasks")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="STAGE.KEY=VALUE",
        help="a config override for one stage of the plan, repeatable (e.g. the paper's ablations: "
        "expression.model.ablation.no_eem=true)",
    )
    p.add_argument(
        "--graph",
        action="store_true",
        help="print the plan's stage graph under the profile (markdown) and exit",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from edtalk.apps.plan import load_plan
    from edtalk.apps.runner import PlanRun

    plan = load_plan(args.plan).with_overrides(args.set)
    profile = args.profile if args.profile is not None else next(iter(plan.profiles), "")
    plan.layer(profile)  # an unknown profile is an error before anything runs
    if args.graph:
        print(plan.for_profile(profile).graph_table(), end="")
        return 0
    if plan.debug:
        torch.set_num_threads(1)  # tiny CPU networks: a second thread costs more than it gains
    job = PlanRun(plan, args.out, profile, args.seed)
    results = job.run()
    for stage in job.stages:
        print(f"{stage.name}: {stage.run_dir}")
    if "report" in results:
        print(f"report: {results['report']}")
    print(f"out: {args.out}")
    return 0
