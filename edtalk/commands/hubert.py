"""`edtalk extract-hubert CHECKPOINT --shards DIR`: HuBERT features (25 fps) beside each shard, for audio2exp."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "extract-hubert",
        help="write <shard>.tar.hubert.npz sidecars with a local HuBERT checkpoint (audio2exp input=hubert)",
        description="Run a local transformers HuBERT checkpoint folder (never downloaded; e.g. "
        "facebook/hubert-large-ls960-ft fetched with huggingface-cli) over every clip's 16 kHz audio and store "
        "T x D features per clip, resampled to the 25 fps video frames, in <shard>.tar.hubert.npz. Shards "
        "that already have one are skipped (resumable) unless --overwrite. Needs the `hubert` extra.",
    )
    p.add_argument("checkpoint", type=Path, help="folder with config.json + weights of a HubertModel")
    p.add_argument(
        "--shards", type=Path, default=None, help="shard directory (default: the built-in dataset)"
    )
    p.add_argument("--splits", nargs="+", default=["train", "test"], choices=["train", "test"])
    p.add_argument("--layer", type=int, default=-1, help="hidden state to store (-1: the last layer)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cuda:0")
    p.add_argument("--overwrite", action="store_true", help="redo shards that already have a sidecar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from datamodules.preprocess.hubert import extract_hubert

    root = args.shards
    if root is None:
        from datamodules.synthetic import ensure_builtin

        root = ensure_builtin()
    try:
        written = extract_hubert(
            args.checkpoint, root, args.splits, args.layer, args.device, args.overwrite, progress=print
        )
    except ModuleNotFoundError as err:  # the optional extra is missing: say how to install it
        print(f"edtalk extract-hubert: error: {err}", file=sys.stderr)
        return 2
    print(f"{len(written)} HuBERT sidecar(s) written under {root}")
    return 0
