"""`edtalk preprocess --input DIR --layout folder|mead|hdtf --out DIR`: raw videos -> webdataset shards."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "preprocess",
        help="crop, resample and landmark raw videos into webdataset shards",
        description="Track the face, crop it to 256² at 25 fps with 16 kHz mono audio, 68 landmarks, mouth boxes "
        "and mel per clip, and write <split>-NNNNNN.tar shards + index.json + skipped.json under --out. "
        "Resumable: a rerun skips finished (and previously skipped) clips.",
    )
    p.add_argument("--input", type=Path, required=True, help="folder with the raw videos")
    p.add_argument("--layout", choices=("folder", "mead", "hdtf"), default="folder")
    p.add_argument("--out", type=Path, required=True, help="shard directory to create or extend")
    p.add_argument("--workers", type=int, default=2, help="parallel processes (default 2)")
    p.add_argument(
        "--backend", choices=("dlib", "face_alignment"), default="dlib", help="face detector/landmarks"
    )
    p.add_argument(
        "--backend-weights",
        type=Path,
        default=None,
        help="face_alignment: folder with s3fd-619a316812.pth and 2DFAN4-cd938726ad.zip "
        "(default: $TORCH_HOME/hub/checkpoints)",
    )
    p.add_argument("--shard-clips", type=int, default=64, help="clips per shard")
    p.add_argument("--min-frames", type=int, default=25, help="shortest clip kept, in 25-fps frames")
    p.add_argument(
        "--test-speakers", nargs="*", default=[], help="extra speakers/videos routed to the test split"
    )
    p.add_argument("--jpeg-quality", type=int, default=90)
    p.add_argument("--retry-skipped", action="store_true", help="process previously skipped inputs again")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from datamodules.preprocess.pipeline import PreprocessConfig, preprocess

    cfg = PreprocessConfig(
        backend=args.backend,
        backend_weights=str(args.backend_weights) if args.backend_weights else None,
        min_frames=args.min_frames,
        jpeg_quality=args.jpeg_quality,
        test_speakers=tuple(args.test_speakers),
        shard_clips=args.shard_clips,
    )
    report = preprocess(
        args.input, args.layout, args.out, cfg, args.workers, not args.no_progress, args.retry_skipped
    )
    reasons: dict[str, int] = {}
    for record in report.skipped:
        reasons[record["reason"]] = reasons.get(record["reason"], 0) + 1
    summary = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items())) or "none"
    print(
        f"wrote {report.written} new clips ({report.already_done} done before, {report.total} in {args.out}); "
        f"skipped {len(report.skipped)}: {summary} (see {args.out / 'skipped.json'})"
    )
    if report.total == 0:
        print(f"edtalk preprocess: no clip could be written from {args.input}", file=sys.stderr)
        return 1
    return 0
