"""`edtalk sweep FILE [key=value ...] [--local] [--debug]`: run a hyper-parameter sweep (sweeps/*.yaml)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "sweep",
        help="run a hyper-parameter sweep over experiment keys (wandb agent, or --local grid/random)",
        description="FILE is a wandb sweep spec whose parameters are dotted experiment keys and whose command "
        "runs `edtalk fit EXPERIMENT`. Without --local: create the wandb sweep (or join --sweep-id) and run "
        "an agent; start agents on more nodes with --sweep-id. With --local: run the grid / random trials "
        "here, each a normal `edtalk fit` run, and write results.csv + results.md (best first). "
        "Example: edtalk sweep sweeps/audio2mouth_lr_sync.yaml trainer.max_steps=2000 --local",
    )
    p.add_argument("file", type=Path, help="sweep YAML (wandb sweep format)")
    p.add_argument(
        "overrides", nargs="*", help="overrides for every trial, e.g. data.root=/data trainer.max_steps=500"
    )
    p.add_argument("--local", action="store_true", help="no wandb server: run grid/random search here")
    p.add_argument(
        "--debug", action="store_true", help="trials as `edtalk fit --debug` (tiny, built-in data)"
    )
    p.add_argument("--count", type=int, default=None, help="trials (random search; caps a grid; agent runs)")
    p.add_argument("--seed", type=int, default=0, help="seed of local random search")
    p.add_argument("--out", type=Path, default=None, help="result folder (default <run.root>/sweeps/<name>)")
    p.add_argument("--sweep-id", default=None, help="join this existing wandb sweep instead of creating one")
    p.add_argument("--project", default=None, help="wandb project (default: the file's `project` or edtalk)")
    p.add_argument("--entity", default=None, help="wandb entity")
    p.add_argument("--check", action="store_true", help="only validate the file against its experiment")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edtalk.apps.sweep import load_spec, markdown, run_local, run_wandb, validate

    spec = load_spec(args.file)
    if args.check:
        validate(spec, args.overrides)
        print(f"{args.file}: {len(spec.parameters)} parameter(s) of experiment {spec.experiment} are valid")
        return 0
    if args.local:
        trials, out = run_local(spec, args.overrides, args.debug, args.count, args.seed, args.out)
        print(markdown(spec, trials), end="")
        print(f"results written to {out / 'results.csv'} and {out / 'results.md'}")
        return 0 if any(t.ok for t in trials) else 1
    if args.debug or args.overrides:
        raise ValueError(
            "--debug and key=value overrides apply to --local sweeps; put them in the file's command"
        )
    sweep_id = run_wandb(spec, args.sweep_id, args.count, args.project, args.entity)
    print(f"sweep {sweep_id} done; more agents: edtalk sweep {args.file} --sweep-id {sweep_id}")
    return 0
