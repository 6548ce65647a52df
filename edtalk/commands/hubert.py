"""`edtalk extract-hubert CHECKPOINT --shards DIR` (HuBERT features at 25 fps) and `edtalk extract-text CHECKPOINT
--transcripts FILE.json --shards DIR` (one text vector per clip): sidecars beside each shard for audio2exp."""

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

    t = subparsers.add_parser(
        "extract-text",
        help="write <shard>.tar.text.npz sidecars (one vector per clip) with a local text encoder",
        description="Encode each clip's transcript (a JSON file {clip id: text}; shards hold no transcripts) with "
        "a local transformers text-encoder folder (e.g. tae898/emoberta-base, downloaded by you) and store the "
        "first token's final hidden state per clip in <shard>.tar.text.npz, the text input of audio2exp_hubert "
        "(model.network.text_dim=D data.text=true). Existing sidecars are skipped unless --overwrite.",
    )
    t.add_argument("checkpoint", type=Path, help="folder with config.json, weights and tokenizer files")
    t.add_argument("--transcripts", type=Path, required=True, help="JSON file {clip id: transcript}")
    t.add_argument(
        "--shards", type=Path, default=None, help="shard directory (default: the built-in dataset)"
    )
    t.add_argument("--splits", nargs="+", default=["train", "test"], choices=["train", "test"])
    t.add_argument("--device", default="cpu", help="torch device, e.g. cuda:0")
    t.add_argument("--overwrite", action="store_true", help="redo shards that already have a sidecar")
    t.set_defaults(func=run_text)


def _root(shards: Path | None) -> Path:
    if shards is not None:
        return shards
    from datamodules.synthetic import ensure_builtin

    return ensure_builtin()


def run(args: argparse.Namespace) -> int:
    import sys

    from datamodules.preprocess.hubert import extract_hubert

    root = _root(args.shards)
    try:
        written = extract_hubert(
            args.checkpoint, root, args.splits, args.layer, args.device, args.overwrite, progress=print
        )
    except ModuleNotFoundError as err:  # the optional extra is missing: say how to install it
        print(f"edtalk extract-hubert: error: {err}", file=sys.stderr)
        return 2
    print(f"{len(written)} HuBERT sidecar(s) written under {root}")
    return 0


def run_text(args: argparse.Namespace) -> int:
    import json
    import sys

    from datamodules.preprocess.hubert import extract_text

    if not args.transcripts.is_file():
        raise FileNotFoundError(f"{args.transcripts} not found: a JSON file {{clip id: transcript}}")
    transcripts = json.loads(args.transcripts.read_text())
    if not isinstance(transcripts, dict):
        raise ValueError(f"{args.transcripts}: expected a JSON object {{clip id: transcript}}")
    root = _root(args.shards)
    try:
        written = extract_text(
            args.checkpoint, root, transcripts, args.splits, args.device, args.overwrite, progress=print
        )
    except ModuleNotFoundError as err:  # the optional extra is missing: say how to install it
        print(f"edtalk extract-text: error: {err}", file=sys.stderr)
        return 2
    print(f"{len(written)} text sidecar(s) written under {root}")
    return 0
