"""`edtalk evaluate` (score methods' result videos or a checkpoint on a split) and `edtalk lse` (one video)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="score result videos (or a checkpoint) on a split: PSNR, SSIM, LPIPS, FID, CSIM, LMD, LSE, emotion",
        description="Writes metrics.json, table.md (methods x metrics, ↑/↓), per_clip.csv and plots/ under --out.",
    )
    p.add_argument(
        "--videos", nargs="+", default=[], metavar="NAME=DIR", help="result folders, <clip id>.mp4 each"
    )
    p.add_argument(
        "--checkpoint", default=None, help="render the split with this generator (self-reconstruction)"
    )
    p.add_argument(
        "--audio2lip",
        default=None,
        help="with --checkpoint: also render audio-driven (mouth from the clip's audio, GT pose/expression)",
    )
    p.add_argument("--split", default="builtin", choices=("builtin", "mead_test", "hdtf_test"))
    p.add_argument(
        "--clips",
        type=Path,
        default=None,
        help="score only the clip ids in this file (JSON list or one per line), e.g. a paper's protocol list",
    )
    p.add_argument(
        "--gt", default=None, help="ground-truth shard directory (default for builtin: built-in data)"
    )
    p.add_argument("--out", default="runs/evaluate", help="output folder")
    p.add_argument(
        "--weights-dir", default=None, help="judge weights folder (default $EDTALK_WEIGHTS or ./weights)"
    )
    p.add_argument("--fid-frames", type=int, default=5, help="frames per clip pooled for FID (0: all frames)")
    p.add_argument(
        "--no-lse-crop", action="store_true", help="LSE: resize whole frames instead of face-cropping"
    )
    p.add_argument("--max-clips", type=int, default=None, help="score only the first N ground-truth clips")
    p.add_argument("--device", default="cpu", help="device for --checkpoint rendering")
    p.set_defaults(func=run)

    q = subparsers.add_parser("lse", help="syncnet_python-style AV offset, LSE-D and LSE-C of one video")
    q.add_argument("video")
    q.add_argument("--audio", default=None, help="audio file (default: the video's own audio)")
    q.add_argument("--weights", required=True, help="syncnet_v2.model (syncnet_python layout)")
    q.add_argument("--json", action="store_true", help="print {offset, lse_d, lse_c} as the last line")
    q.add_argument(
        "--no-crop", action="store_true", help="the video already is a face crop: only resize to 224"
    )
    q.add_argument("--vshift", type=int, default=15)
    q.set_defaults(func=run_lse)


def _parse_methods(items: list[str]) -> dict[str, Path]:
    methods = {}
    for item in items:
        name, sep, folder = item.partition("=")
        if not sep or not name or not folder:
            raise ValueError(f"--videos takes NAME=DIR, got {item!r}")
        if name in methods:
            raise ValueError(f"method name {name!r} given twice in --videos")
        methods[name] = Path(folder)
    return methods


def run(args: argparse.Namespace) -> int:
    from itertools import islice

    from metrics.runner import (
        evaluate,
        ground_truth,
        load_judges,
        markdown_table,
        read_clip_list,
        write_report,
    )

    methods = _parse_methods(args.videos)
    if not methods and not args.checkpoint:
        raise ValueError("give --videos NAME=DIR ... and/or --checkpoint FILE")
    if args.audio2lip and not args.checkpoint:
        raise ValueError("--audio2lip needs --checkpoint (the generator that renders the audio-driven clips)")
    out = Path(args.out)
    listed = read_clip_list(args.clips) if args.clips else None
    extras: dict[str, object] = {}
    if args.checkpoint:
        from metrics.render import render_split

        folders, extras = render_split(
            args.checkpoint, args.split, args.gt, out, args.max_clips, args.device, args.audio2lip, listed
        )
        name = Path(args.checkpoint).stem
        rendered = {name if kind == "video" else f"{name}_audio": f for kind, f in folders.items()}
        methods = {**rendered, **methods}
    judges = load_judges(args.weights_dir)
    for metric, why in judges.skipped().items():
        print(f"skipping {metric}: {why}", file=sys.stderr)
    clips = islice(ground_truth(args.split, args.gt, listed), args.max_clips)
    report = evaluate(methods, clips, judges, args.fid_frames, not args.no_lse_crop, log=lambda s: None)
    report.extras.update(extras)
    for name in methods:
        if report.missing[name]:
            print(
                f"{name}: missing {len(report.missing[name])} clips: {report.missing[name][:5]}",
                file=sys.stderr,
            )
        if report.extra[name]:
            print(
                f"{name}: {len(report.extra[name])} extra videos: {report.extra[name][:5]}", file=sys.stderr
            )
    files = write_report(report, out)
    print(markdown_table(report.summary))
    print(f"wrote {files['json']}, {files['table']}, {files['csv']}")
    return 0


def run_lse(args: argparse.Namespace) -> int:
    from edtalk.io import read_audio, read_video
    from edtalk.nn.judges import DlibFace, SyncNetV2
    from metrics.sync import face_crops_224, score_video

    net = SyncNetV2.from_file(args.weights)
    frames = read_video(args.video)
    wav = read_audio(args.audio or args.video)
    crops = face_crops_224(frames, None if args.no_crop else DlibFace())
    score = score_video(net, crops, wav, vshift=args.vshift)
    if len(wav) / 16000 != len(frames) / 25:
        print(
            f"warning: audio {len(wav) / 16000:.3f}s and video {len(frames) / 25:.3f}s differ",
            file=sys.stderr,
        )
    print(
        f"AV offset: {score.offset}\nMin dist (LSE-D): {score.lse_d:.3f}\nConfidence (LSE-C): {score.lse_c:.3f}"
    )
    if args.json:
        print(json.dumps(score.as_dict()))
    return 0
