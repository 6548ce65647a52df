"""`edtalk quickstart`: the main job on the built-in data (README's first command, `make demo`)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "quickstart",
        help="run the main job on the built-in data and write a report",
        description="Render a short clip with a random-init tiny generator on the built-in source image "
        "(the full train -> evaluate -> render chain grows here as the stages land).",
    )
    p.add_argument("--out", type=Path, default=Path("outputs/quickstart"), help="output folder")
    p.add_argument("--seconds", type=float, default=2.0, help="length of the demo clip")
    p.add_argument("--size", type=int, default=64, help="image size of the tiny generator")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edtalk.quickstart import render_random_clip

    path = render_random_clip(args.out, seconds=args.seconds, size=args.size)
    print(f"wrote {path}")
    return 0
