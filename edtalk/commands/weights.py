"""`edtalk weights status`: every judge / weight file, where to get it, and whether it is present."""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("weights", help="weight files: status")
    sub = p.add_subparsers(dest="weights_command", metavar="ACTION", required=True)
    s = sub.add_parser(
        "status", help="list every judge / checkpoint file: expected name, source, found or not"
    )
    s.add_argument("--dir", default=None, help="weights folder (default $EDTALK_WEIGHTS or ./weights)")
    s.add_argument("--hash", action="store_true", help="compute sha256 of the files found")
    s.set_defaults(func=run)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def run(args: argparse.Namespace) -> int:
    from metrics.weights_table import weight_entries

    rows = weight_entries(args.dir)
    width = max(len(r.name) for r in rows)
    for r in rows:
        state = "found" if r.path is not None and r.path.is_file() else "MISSING"
        print(f"{state:8s} {r.name:{width}s}  [{r.used_for}]  {r.path}")
        if r.expected:
            print(f"{'':8s} {'':{width}s}  expected: {r.expected}")
        if state == "found" and args.hash and r.path is not None:
            print(f"{'':8s} {'':{width}s}  sha256: {_sha256(r.path)}")
        if state != "found":
            print(f"{'':8s} {'':{width}s}  get it: {r.where}")
    return 0
