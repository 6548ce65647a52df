"""`edtalk fit EXPERIMENT [key=value ...] [--debug]`: train one stage from experiments/<EXPERIMENT>.yaml."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "fit",
        help="train a stage (reconstruct, mouth_pose, expression, finetune, ...)",
        description="Compose experiments/defaults.yaml + experiments/EXPERIMENT.yaml + key=value overrides and "
        "train. Runs are written to <run.root>/<experiment>/<run.name>/; resume with ckpt_path=last. "
        "Example: edtalk fit mouth_pose init_from=runs/reconstruct/X/checkpoints/last.ckpt trainer.devices=8",
    )
    p.add_argument(
        "experiment", help="experiment name (experiments/NAME.yaml) or a path to an experiment YAML"
    )
    p.add_argument(
        "overrides",
        nargs=argparse.REMAINDER,
        help="dotlist overrides, e.g. trainer.max_steps=100 data.root=/data (flags may be mixed in)",
    )
    p.add_argument(
        "--debug",
        action="store_true",
        help="tiny 64x64 model, built-in data, a few CPU steps, run dir runs/EXPERIMENT/debug "
        "(builds the earlier stage's debug checkpoint when the stage needs one)",
    )
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.set_defaults(func=run)


FLAGS = {"--debug": "debug", "--print-config": "print_config"}


def _split_flags(args: argparse.Namespace) -> None:
    """Flags written after the experiment name land in `overrides` (argparse REMAINDER): move them out."""
    rest = []
    for item in args.overrides:
        if item in FLAGS:
            setattr(args, FLAGS[item], True)
        elif item.startswith("-"):
            raise ValueError(
                f"unknown option {item!r} for edtalk fit (options: {sorted(FLAGS)}; overrides are key=value)"
            )
        else:
            rest.append(item)
    args.overrides = rest


def run(args: argparse.Namespace) -> int:
    from edtalk.train import compose, debug_dependency, fit, print_config

    _split_flags(args)
    cfg = compose(args.experiment, args.overrides, debug=args.debug)
    if args.print_config:
        print(print_config(cfg), end="")
        return 0
    if args.debug:
        debug_dependency(cfg)
    run_dir = fit(cfg, overwrite=args.debug)
    print(f"run written to {run_dir}")
    return 0
