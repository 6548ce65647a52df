"""`edtalk ui`: serve the local generation page (needs the `ui` extra: `pip install -e .[ui]`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "ui",
        help="serve a local web page for generation and live streaming (Gradio)",
        description="Serve the generation page (Generate and Live tabs) on http://HOST:PORT until interrupted. "
        "The Live tab streams like `edtalk stream --realtime` and needs --audio2lip with a checkpoint. Without --checkpoint "
        "the page offers a random tiny demo model. Analytics are off; the page makes no network calls.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: local only)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument(
        "--checkpoint",
        type=Path,
        action="append",
        default=[],
        help="generator checkpoint offered on the page (EDTalk.pt, EDTalk_lip_pose.pt or ours); repeatable",
    )
    p.add_argument("--audio2lip", type=Path, help="Audio2Lip.pt (audio drives the mouth)")
    p.add_argument("--audio2pose", type=Path, help="audio2pose checkpoint")
    p.add_argument("--audio2exp", type=Path, help="audio2exp checkpoint")
    p.add_argument("--gfpgan", type=Path, help="GFPGANv1.4.pth for the face super-resolution toggle")
    p.add_argument("--demo", action="store_true", help="also offer the random tiny demo model")
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:1, mps")
    p.add_argument("--out-dir", type=Path, help="folder for rendered videos (default: a temporary folder)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        import gradio  # noqa: F401
    except ModuleNotFoundError:
        print(
            "edtalk ui: error: the page needs the optional 'ui' extra: pip install -c constraints.txt -e '.[ui]'",
            file=sys.stderr,
        )
        return 2
    for path in [*args.checkpoint, args.audio2lip, args.audio2pose, args.audio2exp, args.gfpgan]:
        if path is not None and not path.is_file():
            raise FileNotFoundError(f"{path} not found (given to edtalk ui)")
    from edtalk.apps.ui import Studio, UIConfig, launch
    from edtalk.perf import tune_cpu_allocator

    tune_cpu_allocator()
    cfg = UIConfig(
        checkpoints=tuple(args.checkpoint),
        audio2lip=args.audio2lip,
        audio2pose=args.audio2pose,
        audio2exp=args.audio2exp,
        gfpgan=args.gfpgan,
        device=args.device,
        out_dir=args.out_dir,
        demo=args.demo,
    )
    launch(Studio(cfg), host=args.host, port=args.port)
    return 0
