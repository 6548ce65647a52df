"""`edtalk extract-coefficients CHECKPOINT --shards DIR`: per-frame mouth/pose/exp weights beside each shard."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "extract-coefficients",
        aliases=["extract"],
        help="write <shard>.tar.coeffs.npz sidecars with a trained generator's per-frame bank weights",
        description="Run a generator (our stage checkpoint, an edtalk file, or official EDTalk.pt / "
        "EDTalk_lip_pose.pt) over every clip of a shard directory and store T x (20+6[+10]) weights per "
        "clip (mouth|pose|exp, plus __dims__) in <shard>.tar.coeffs.npz, as the audio stages read them.",
    )
    p.add_argument("checkpoint", type=Path, help="generator checkpoint")
    p.add_argument(
        "--shards", type=Path, default=None, help="shard directory (default: the built-in dataset)"
    )
    p.add_argument("--splits", nargs="+", default=["train", "test"], choices=["train", "test"])
    p.add_argument("--batch-size", type=int, default=64, help="frames per generator call")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cuda:0")
    p.add_argument(
        "--ema", action="store_true", help="use the EMA weights of a stage checkpoint when present"
    )
    p.add_argument("--overwrite", action="store_true", help="redo shards that already have a sidecar")
    p.set_defaults(func=run)

    e = subparsers.add_parser(
        "emotion-vectors",
        help="per-emotion expression weights of your generator (for generate --emotion FILE.npy)",
        description="Average the expression weights in a shard directory's coefficient sidecars per MEAD "
        "emotion (clip ids <speaker>#<emotion>#level_<k>#<nnn>) and write <emotion>.npy (1 x 10) files, "
        "the counterpart of the original release's eight vectors for a generator you trained.",
    )
    e.add_argument(
        "--shards", type=Path, default=None, help="shard directory (default: the built-in dataset)"
    )
    e.add_argument("--splits", nargs="+", default=["train"], choices=["train", "test"])
    e.add_argument("--levels", nargs="+", type=int, default=None, help="MEAD intensity levels (default: all)")
    e.add_argument(
        "--out", type=Path, required=True, help="folder for <emotion>.npy and emotion_vectors.json"
    )
    e.set_defaults(func=run_emotion_vectors)


def run(args: argparse.Namespace) -> int:
    import torch

    from edtalk.coefficients import extract_coefficients
    from edtalk.nn.generator import Generator
    from edtalk.weights.handoff import read_generator

    cfg, sd, _ = read_generator(args.checkpoint, use_ema=args.ema)
    gen = Generator(cfg)
    gen.load_state_dict(sd, strict=True)
    gen.to(torch.device(args.device))
    root = args.shards
    if root is None:
        from datamodules.synthetic import ensure_builtin

        root = ensure_builtin()
    written = extract_coefficients(gen, root, args.splits, args.batch_size, args.overwrite, progress=print)
    print(f"{len(written)} sidecar(s) written under {root}")
    return 0


def run_emotion_vectors(args: argparse.Namespace) -> int:
    import json

    import numpy as np

    from edtalk.coefficients import emotion_vectors

    root = args.shards
    if root is None:
        from datamodules.synthetic import ensure_builtin

        root = ensure_builtin()
    table = emotion_vectors(root, args.splits, args.levels)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, entry in table.items():
        np.save(args.out / f"{name}.npy", entry["weights"])
    summary = {n: {"clips": e["clips"], "values": e["weights"][0].tolist()} for n, e in table.items()}
    (args.out / "emotion_vectors.json").write_text(
        json.dumps({"shards": str(root), "emotions": summary}, indent=1)
    )
    for name, entry in table.items():
        print(f"{name:10s} {entry['clips']:5d} clips -> {args.out / (name + '.npy')}")
    return 0
