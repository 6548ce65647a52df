"""`edtalk check-parity DIR`: compare our networks with reference outputs of the original code."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "check-parity",
        help="run our networks on a parity reference directory and print max abs differences",
        description="Rebuild the recipe weights in DIR, run our networks in float64 and compare every stored "
        "output (exit 1 when any differs by more than --tolerance).",
    )
    p.add_argument("directory", type=Path, help="folder with recipe_<kind>.json + ref_<kind>.pt files")
    p.add_argument("--tolerance", type=float, default=1e-6)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from edtalk.apps.parity import check_directory

    torch.set_num_threads(max(1, torch.get_num_threads()))
    ok, rows = check_directory(args.directory, args.tolerance)
    width = max(len(f"{k}/{n}") for k, n, _ in rows)
    for kind, name, diff in rows:
        flag = "ok" if diff <= args.tolerance else "FAIL"
        print(f"{kind + '/' + name:<{width}}  max_abs_diff={diff:.3e}  {flag}")
    print(f"{'all within' if ok else 'NOT within'} {args.tolerance:g} ({len(rows)} outputs)")
    return 0 if ok else 1
