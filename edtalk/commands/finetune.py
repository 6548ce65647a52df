"""`edtalk finetune --video ME.mp4 --checkpoint GEN --out DIR [key=value ...]`: one person's video -> a
fine-tuned generator (`edtalk.apps.finetune`: check, preprocess, `fit finetune`, export)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "finetune",
        help="fine-tune a generator on one person's video (prepare + fit finetune)",
        description="Crop the person's video to 256² at 25 fps (edtalk preprocess), fine-tune a copy of the "
        "generator on it (experiments/finetune.yaml: the first 80 %% of the frames train, the last 20 %% "
        "validate; val/psnr in the run's logs is the validation curve) and write DIR/finetuned.pt for "
        "`edtalk generate --checkpoint`. The input checkpoint is only read.",
    )
    p.add_argument("--video", type=Path, required=True, help="the person's video (any fps >= 20, with sound)")
    p.add_argument(
        "--checkpoint", type=Path, required=True, help="generator to start from (ours or EDTalk.pt)"
    )
    p.add_argument("--out", type=Path, required=True, help="folder for shards/, runs/ and finetuned.pt")
    p.add_argument("--debug", action="store_true", help="experiments/debug.yaml's CPU smoke-test settings")
    p.add_argument("--workers", type=int, default=1, help="preprocessing processes (default 1)")
    p.add_argument("overrides", nargs="*", help="dotlist overrides of the fit, e.g. trainer.max_steps=2000")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edtalk.apps.finetune import finetune_video

    path = finetune_video(args.video, args.checkpoint, args.out, args.overrides, args.debug, args.workers)
    print(f"render with: edtalk generate --checkpoint {path} --source <photo or video> --audio <speech> ...")
    return 0
