"""`edtalk weights status`: every judge / weight file, where to get it, and whether it is present.

`edtalk weights inspect PATH [--kind KIND] [--json]`: what a weight file is (ours, a Lightning stage
checkpoint, or an official release file of a registered kind), its config, and whether it loads strictly.
Exit 0 when it loads, 2 with a one-line reason otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("weights", help="weight files: status, inspect")
    sub = p.add_subparsers(dest="weights_command", metavar="ACTION", required=True)
    s = sub.add_parser(
        "status", help="list every judge / checkpoint file: expected name, source, found or not"
    )
    s.add_argument("--dir", default=None, help="weights folder (default $EDTALK_WEIGHTS or ./weights)")
    s.add_argument("--hash", action="store_true", help="compute sha256 of the files found")
    s.set_defaults(func=run)
    i = sub.add_parser(
        "inspect",
        help="what a weight file is (ours / Lightning stage checkpoint / official), its config, "
        "and whether it loads strictly (exit 0) or not (exit 2)",
    )
    i.add_argument("path", help="the weight file")
    i.add_argument("--kind", default=None, help="the kind expected (default: guessed from the file)")
    i.add_argument("--json", action="store_true", help="print a JSON object (last line)")
    i.set_defaults(func=run_inspect)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def run(args: argparse.Namespace) -> int:
    from metrics.judges import weight_entries

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


def _describe(report: dict[str, Any]) -> str:
    """One line: path, what it is, whether it loads."""
    source = report["source"]
    what = {
        "ours": f"our {report['kind']} checkpoint",
        "lightning": f"Lightning checkpoint of stage {report['stage']} ({report['kind']})",
        "official": f"official {report['kind']} release file",
    }.get(source, "unreadable file")
    if not report["loads"]:
        return f"{report['path']}: does not load as {report['kind'] or 'a known kind'}: {report['reason']}"
    return (
        f"{report['path']}: {what}, {report['n_tensors']} tensors, loads strictly; config {report['config']}"
    )


def run_inspect(args: argparse.Namespace) -> int:
    import metrics.judges  # noqa: F401  (registers the judges' weight kinds: syncnet_v2, alexnet, ...)
    from edtalk import weights

    if args.kind is not None and args.kind not in weights.KINDS:
        print(f"error: unknown --kind {args.kind!r}; known: {', '.join(sorted(weights.KINDS))}")
        return 2
    report = weights.inspect(Path(args.path), args.kind)
    print(json.dumps(report, default=str) if args.json else _describe(report))
    return 0 if report["loads"] else 2
