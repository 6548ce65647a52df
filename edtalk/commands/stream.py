"""`edtalk stream`: a photo driven by speech as it arrives (stdin, a pipe, or a file paced at real time).

Examples:
    arecord -r 16000 -c 1 -f S16_LE -t wav - | edtalk stream --source me.jpg --audio - --realtime \\
        --checkpoint EDTalk.pt --audio2lip Audio2Lip.pt --emotion happy --out live.mp4
    edtalk stream --source me.jpg --audio speech.wav --realtime --checkpoint EDTalk.pt \\
        --audio2lip Audio2Lip.pt --out live.mp4

The last stderr line is JSON: {"first_frame_latency_s", "rtf", "frames", "dropped"}.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    import torch

    from edtalk.pipeline.live import LiveSession, LiveStats, PcmReader

RAW_SUFFIXES = (".pcm", ".raw", ".s16")
DESCRIPTION = (
    "Render SOURCE driven by 16 kHz mono speech as it arrives: a WAV or raw s16le stream on stdin "
    "(--audio -) or from a file (paced at real time with --realtime). Frame t is rendered once audio "
    "through frame t + LOOKAHEAD is in; with the default look-ahead (4 frames, 160 ms) the video equals "
    "`edtalk generate --fix-pose` on the same audio. Frames go to a fragmented mp4 as they are rendered "
    "(playable at any moment). Pose: the photo's; mouth: Audio2Lip; expression: --emotion or the photo's."
)


def register(subparsers: argparse._SubParsersAction) -> None:
    from edtalk.pipeline.live import EXACT_LOOKAHEAD

    p = subparsers.add_parser("stream", help="live rendering from streaming speech", description=DESCRIPTION)
    p.add_argument("--source", type=Path, required=True, help="photo of the person")
    p.add_argument("--audio", required=True, help="'-' (stdin) or a .wav/.pcm file; 16 kHz mono")
    p.add_argument("--out", type=Path, required=True, help="output .mp4 (fragmented; a named pipe works)")
    p.add_argument("--emotion", help="emotion name or mix ('happy:0.7,sad:0.3'), as `edtalk generate`")
    p.add_argument("--checkpoint", type=Path, required=True, help="EDTalk.pt, EDTalk_lip_pose.pt or ours")
    p.add_argument("--audio2lip", type=Path, required=True, help="Audio2Lip.pt")
    p.add_argument("--realtime", action="store_true", help="pace a file at real time; drop frames when late")
    p.add_argument(
        "--lookahead",
        type=int,
        default=EXACT_LOOKAHEAD,
        help=f"frames of audio past a frame before it renders (default {EXACT_LOOKAHEAD} = exact; less: lower "
        "latency, the last frames' mouths see less audio)",
    )
    p.add_argument("--max-lag", type=float, default=1.0, help="with --realtime: seconds late before dropping")
    p.add_argument("--no-crop", action="store_true", help="the photo is already a square face crop")
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, ...")
    p.add_argument("--chunk-size", type=int, default=None, help="frames per render call (default 2 on CPU)")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast (as `edtalk generate --bf16`)")
    p.add_argument("--threads", type=int, help="CPU threads")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from edtalk.perf import tune_cpu_allocator
    from edtalk.pipeline.live import LiveStats, PcmReader
    from edtalk.pipeline.render import autocast

    tune_cpu_allocator()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.lookahead < 0:
        raise ValueError(f"--lookahead must be >= 0 frames, got {args.lookahead}")
    if args.emotion is not None and args.emotion.strip().lower() == "auto":
        raise ValueError("--emotion auto needs the whole audio (Audio2Exp); give an emotion name or mix")
    with _open_audio(args.audio) as fh:
        reader = PcmReader(fh, "stdin" if args.audio == "-" else args.audio, realtime=args.realtime)
        if reader.raw and args.audio != "-" and Path(args.audio).suffix.lower() not in RAW_SUFFIXES:
            raise ValueError(
                f"--audio {args.audio} is not a WAV file; give a 16 kHz mono WAV (`ffmpeg -i IN -ar 16000 "
                "-ac 1 OUT.wav`) or raw s16le named .pcm/.raw"
            )
        session, device, precision = _session(args)
        stats = LiveStats()
        with autocast(device, args.bf16):
            session.warm_up()
        code = _render(args, session, reader, stats, device)
    print(
        f"{'wrote' if stats.frames else 'no frames for'} {args.out} ({stats.frames} frames, "
        f"{stats.frames / 25:.2f} s; {stats.dropped} dropped; on {device}, {precision})",
        file=sys.stderr,
    )
    print(json.dumps(stats.report()), file=sys.stderr)
    return code


@contextlib.contextmanager
def _open_audio(name: str) -> Iterator[BinaryIO]:
    if name == "-":
        yield sys.stdin.buffer
        return
    path = Path(name)
    if not path.is_file():
        raise FileNotFoundError(f"--audio file not found: {path}")
    with open(path, "rb") as fh:
        yield fh


def _session(args: argparse.Namespace) -> tuple[LiveSession, torch.device, str]:
    from edtalk.pipeline import load_models, pick_device, precision_note
    from edtalk.pipeline.live import photo_session

    device = pick_device(args.device)
    gen, a2l, _, _ = load_models(args.checkpoint, args.audio2lip)
    assert a2l is not None
    session = photo_session(
        gen,
        a2l,
        args.source,
        device=device,
        emotion=args.emotion,
        name=str(args.checkpoint),
        chunk_size=args.chunk_size,
        crop=not args.no_crop,
        lookahead=args.lookahead,
        max_lag=args.max_lag if args.realtime else None,
        bf16=args.bf16,
    )
    return session, device, precision_note(device, args.bf16)


def _render(
    args: argparse.Namespace, session: LiveSession, reader: PcmReader, stats: LiveStats, device: torch.device
) -> int:
    """Run the session into a fragmented mp4; one line for each way the stream can end early."""
    from edtalk.pipeline.render import autocast
    from edtalk.pipeline.writer import LiveWriter

    writer = LiveWriter(args.out)
    wav = None
    try:
        with autocast(device, args.bf16):
            wav = session.run(reader.start(), writer.write, stats)
    except BrokenPipeError:
        _note(f"the reader of {args.out} closed the pipe after {stats.frames} frames; stopped")
    finally:
        with contextlib.suppress(BrokenPipeError):
            writer.close()
    if reader.error is not None:
        _note(
            f"audio stream broke after {stats.frames / 25:.2f} s ({reader.error}); kept {stats.frames} frames"
        )
    if stats.frames == 0:
        Path(args.out).unlink(missing_ok=True)
        _note("no audio arrived (or less than one 40 ms frame): nothing rendered")
        return 2
    if reader.announced is not None and wav is not None and len(wav) + 640 <= reader.announced:
        _note(
            f"audio stream truncated: {reader.announced / 16000:.2f} s announced by the WAV header, "
            f"{stats.frames / 25:.2f} s arrived; the video holds what arrived"
        )
    if wav is not None and float(abs(wav).max()) < 1e-4:
        _note("the audio is silent (peak below 1e-4): the mouth stays at rest")
    return 0


def _note(message: str) -> None:
    print(f"edtalk stream: {message}", file=sys.stderr)
