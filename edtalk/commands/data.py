"""`edtalk data pairing|neutral-bank`: what the loaders will do with a shard directory, before training.

edtalk data pairing --shards DIR --stage expression --world-size 16 --workers 4 --json
edtalk data neutral-bank --shards DIR              # write neutral-<split>.npz ahead of training
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "data",
        help="inspect shards for training: identity pairing at a world size, the neutral bank",
        description="Shard tools for cluster runs (docs/cluster.md).",
    )
    sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    pairing = sub.add_parser(
        "pairing",
        help="simulate one epoch's identity pairing over ranks and workers; print the same-clip fraction",
        description="Simulate how the training loaders of STAGE pair identity frames with targets over "
        "WORLD_SIZE ranks x WORKERS loader workers (resampled shards, one sample per clip per epoch) and "
        "report how many targets pair within their own clip (docs/recipes.md, pairing).",
    )
    pairing.add_argument("--shards", type=Path, default=None, help="shard directory (default: built-in)")
    pairing.add_argument("--stage", default="expression", help="experiment whose data options apply")
    pairing.add_argument("--world-size", type=int, default=1, help="training processes in all")
    pairing.add_argument("--workers", type=int, default=4, help="loader workers per process")
    pairing.add_argument(
        "--bank",
        default="auto",
        help="auto: the neutral bank beside the shards (written if missing), none: per-stream pools "
        "(data.neutral_bank=null), or a bank file",
    )
    pairing.add_argument("--seed", type=int, default=0, help="seed of the simulated shard draws")
    pairing.add_argument("--json", action="store_true", help="print one JSON object")
    pairing.set_defaults(func=run_pairing)
    bank = sub.add_parser(
        "neutral-bank",
        help="write the per-speaker neutral bank (neutral-<split>.npz) beside the shards",
        description="Write neutral-<split>.npz (a few JPEG frames of every neutral clip, per speaker) that "
        "every loader worker reads, so the neutral -> emotional pairing holds at any world size. "
        "Training writes it on first use; run this ahead when the shard folder is read-only there.",
    )
    bank.add_argument("--shards", type=Path, required=True, help="shard directory (or URL with --out)")
    bank.add_argument("--splits", nargs="+", default=["train", "test"], choices=["train", "test"])
    bank.add_argument("--out", type=Path, default=None, help="file to write (one split; URL roots)")
    bank.set_defaults(func=run_bank)


def _sampler(stage: str) -> Any:
    """The stage's pairing sampler, with the experiment's data options (`data.pairing`, ...)."""
    import dataclasses

    from datamodules.samplers import _SpeakerPairs
    from edtalk.train import _import, compose, plain

    data = plain(compose(stage).data)
    cls = getattr(_import(str(data.pop("module"))), "sampler_class", None)
    if not (isinstance(cls, type) and issubclass(cls, _SpeakerPairs)):
        raise ValueError(
            f"--stage {stage}: its DataModule does not pair identity frames (reconstruct, expression do)"
        )
    names = {f.name for f in dataclasses.fields(cls) if f.init} - {"neutral_bank", "image_size"}
    return cls(**{k: v for k, v in data.items() if k in names})


def run_pairing(args: argparse.Namespace) -> int:
    from datamodules.samplers import simulate_pairing
    from datamodules.shards import NeutralBank, clip_infos, ensure_neutral_bank

    if args.world_size < 1 or args.workers < 0:
        raise ValueError(
            f"--world-size must be >= 1 and --workers >= 0, got {args.world_size}, {args.workers}"
        )
    root = args.shards
    if root is None:
        from datamodules.synthetic import ensure_builtin

        root = ensure_builtin()
    sampler = _sampler(args.stage)
    path = None if args.bank == "none" else args.bank
    if path == "auto":
        path = ensure_neutral_bank(root, "train")
    bank = NeutralBank(path) if path is not None else None
    report = simulate_pairing(
        sampler, clip_infos(root, "train"), args.world_size, args.workers, bank, args.seed
    )
    report = {**report, "stage": args.stage, "bank": None if path is None else str(path)}
    if args.json:
        print(json.dumps(report))
    else:
        print(
            f"{args.stage} at world size {args.world_size} x {args.workers} workers: {report['same_clip']} of "
            f"{report['targets']} targets pair within their own clip ({100 * report['fraction']:.2f} %; "
            f"{report['fallbacks']} fallbacks; bank {report['bank'] or 'none'})"
        )
    return 0


def run_bank(args: argparse.Namespace) -> int:
    from datamodules.shards import write_neutral_bank

    if args.out is not None and len(args.splits) != 1:
        raise ValueError("--out writes one file: give one split, e.g. --splits train")
    for split in args.splits:
        path = write_neutral_bank(args.shards, split, out=args.out)
        print(f"wrote {path}")
    return 0
