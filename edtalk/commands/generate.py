"""`edtalk generate`: render a talking-head video from a photo or video and any drivers (every upstream mode).

Examples:
    edtalk generate --source me.jpg --audio speech.wav --emotion happy \\
        --checkpoint EDTalk.pt --audio2lip Audio2Lip.pt --out out.mp4
    edtalk generate --source me.jpg --audio speech.wav --pose head.mp4 --exp-driver smile.mp4 ...
    edtalk generate --source me.jpg --lip talk.mp4 --pose talk.mp4 --exp-driver talk.mp4 --checkpoint EDTalk.pt ...
    edtalk generate --source clip.mp4 --audio new.wav --checkpoint EDTalk_lip_pose.pt --audio2lip Audio2Lip.pt ...
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from edtalk.pipeline import Inputs, Pipeline, Result

EXAMPLES = """modes (who drives what):
  audio + emotion      --audio WAV --audio2lip A2L.pt --emotion happy | happy:0.7,sad:0.3 | auto (--audio2exp)
  audio + expression   --audio WAV --audio2lip A2L.pt --exp-driver IMG_OR_VIDEO [--pose VIDEO]
  lip + pose only      --no-expression (or a lip-pose checkpoint) [--fix-pose | --pose VIDEO]
  pose from audio      --audio2pose A2P.pt [--pose-temperature T] (used when no --pose / --fix-pose)
  lip from a video     --lip VIDEO (length = the lip video; its sound is muxed unless --audio)
  change a video's lip --source VIDEO --audio WAV (identity, pose, expression from each source frame)
  fully video-driven   --lip VIDEO --pose VIDEO --exp-driver VIDEO
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "generate",
        help="render a talking-head video (audio- or video-driven, with emotion)",
        description="Render a 25 fps H.264+AAC video of SOURCE driven by audio and/or videos. Inputs are "
        "face-cropped and resampled to 25 fps; drivers shorter than the clip ping-pong or hold.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    io = p.add_argument_group("inputs")
    io.add_argument("--source", type=Path, help="photo or video of the person (required)")
    io.add_argument("--audio", type=Path, help="speech (wav/mp3/... or a video with sound); sets the length")
    io.add_argument("--lip", type=Path, help="video whose mouth motion is copied")
    io.add_argument("--pose", type=Path, help="video whose head pose is copied")
    io.add_argument("--exp-driver", dest="exp", type=Path, help="image or video whose expression is copied")
    io.add_argument(
        "--emotion",
        help="angry|contempt|disgusted|fear|happy|neutral|sad|surprised, a mix 'happy:0.7,sad:0.3', "
        "'auto' (from the audio, needs --audio2exp) or a .npy file of weights",
    )
    io.add_argument(
        "--emotion-strength",
        type=float,
        default=1.0,
        metavar="K",
        help="multiply --emotion's weights by K (auto included; default 1: as given, 2: a stronger emotion)",
    )
    io.add_argument("--out", type=Path, help="output .mp4 (required)")
    io.add_argument(
        "--write-samples",
        type=Path,
        metavar="DIR",
        help="write built-in sample inputs (photo, speech, talking clip, expression image) to DIR and exit",
    )
    models = p.add_argument_group("checkpoints (official files or ours)")
    models.add_argument("--checkpoint", type=Path, help="EDTalk.pt, EDTalk_lip_pose.pt or ours (required)")
    models.add_argument("--audio2lip", type=Path, help="Audio2Lip.pt (needed when --audio drives the mouth)")
    models.add_argument("--audio2pose", type=Path, help="audio2pose checkpoint: head pose from the audio")
    models.add_argument("--audio2exp", type=Path, help="audio2exp checkpoint: for --emotion auto")
    opts = p.add_argument_group("options")
    opts.add_argument("--fix-pose", action="store_true", help="keep the source's head pose")
    opts.add_argument("--no-expression", action="store_true", help="mouth and pose only (no EEM)")
    opts.add_argument("--extend", choices=("pingpong", "hold"), default="pingpong", help="shorter drivers")
    opts.add_argument("--pose-temperature", type=float, default=1.0, help="audio2pose spread (0 = mean)")
    opts.add_argument("--seed", type=int, default=0, help="seed of audio2pose draws")
    opts.add_argument("--no-crop", action="store_true", help="inputs are already 256^2 face crops")
    opts.add_argument(
        "--face-sr",
        type=Path,
        metavar="GFPGANv1.4.pth",
        help="restore every frame to 512^2 with GFPGAN v1.4 weights from this local file (GFPGAN release v1.3.4)",
    )
    opts.add_argument(
        "--legacy-normalize", action="store_true", help="upstream per-clip min-max pixel stretch"
    )
    perf = p.add_argument_group("performance")
    perf.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:1, mps")
    perf.add_argument("--chunk-size", type=int, help="frames per batch (default 2 on CPU, 32 on GPU)")
    perf.add_argument(
        "--bf16",
        action="store_true",
        help="bfloat16 autocast for encoder, synthesis and EEM (GPU; CPUs with bf16 units); "
        "off by default (it misses the quality bar on the parity weights; README, speed table)",
    )
    perf.add_argument("--threads", type=int, help="CPU threads (default: torch's choice)")
    perf.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _emotion(value: str | None) -> str | torch.Tensor | None:
    """A .npy path becomes its weight vector; names/mixes/auto pass through as text."""
    if value is None or not value.endswith(".npy"):
        return value
    import numpy as np
    import torch

    path = Path(value)
    if not path.is_file():
        raise FileNotFoundError(f"--emotion weights file not found: {path}")
    return torch.from_numpy(np.load(path)).float()


def run(args: argparse.Namespace) -> int:
    import torch

    from edtalk.pipeline import Inputs, Pipeline

    if args.write_samples is not None:
        return _write_samples(args.write_samples)
    missing = [f"--{k}" for k in ("source", "out", "checkpoint") if getattr(args, k) is None]
    if missing:
        raise ValueError(f"missing {', '.join(missing)} (see `edtalk generate --help`)")
    _tune_cpu()
    if args.threads:
        torch.set_num_threads(args.threads)
    inputs = Inputs.from_values(vars(args), emotion=_emotion(args.emotion))  # every field is a flag's dest
    pipe = Pipeline.from_checkpoints(
        args.checkpoint,
        audio2lip=args.audio2lip,
        audio2pose=args.audio2pose,
        audio2exp=args.audio2exp,
        device=args.device,
        chunk_size=args.chunk_size,
        bf16=args.bf16,
        crop=not args.no_crop,
        progress=not args.quiet,
    )
    if args.face_sr is not None:
        result = _render_face_sr(args, pipe, inputs)
    else:
        result = pipe(inputs, args.out, legacy_normalize=args.legacy_normalize)
    drivers = ", ".join(f"{k}: {v}" for k, v in result.sources.items())
    print(
        f"wrote {result.path} ({result.num_frames} frames, {result.num_frames / result.fps:.2f} s at "
        f"{result.fps} fps; {result.fps_rendered:.2f} frames/s on {pipe.device}, {pipe.precision}) [{drivers}]",
        file=sys.stderr,
    )
    return 0


def _write_samples(folder: Path) -> int:
    from edtalk.apps.samples import write_samples

    paths = write_samples(folder)
    for name, path in paths.items():
        print(f"{name:12s} {path}")
    d = folder
    print(
        "try:\n"
        f"  edtalk generate --source {d}/photo.png --audio {d}/speech.wav --emotion happy "
        "--checkpoint EDTalk.pt --audio2lip Audio2Lip.pt --out out.mp4\n"
        f"  edtalk generate --source {d}/photo.png --lip {d}/talk.mp4 --pose {d}/talk.mp4 "
        f"--exp-driver {d}/angry.png --checkpoint EDTalk.pt --out out.mp4"
    )
    return 0


def _render_face_sr(args: argparse.Namespace, pipe: Pipeline, inputs: Inputs) -> Result:
    """--face-sr: frames stream through GFPGAN v1.4 (batched like the render) into a 512^2 video."""
    from edtalk.apps.facesr import FaceRestorer, render_restored

    if args.legacy_normalize:
        raise ValueError("--face-sr restores [-1, 1] frames; it cannot be combined with --legacy-normalize")
    restorer = FaceRestorer(args.face_sr, pipe.device, batch_size=pipe.chunk_size, bf16=args.bf16)
    return render_restored(pipe, inputs, args.out, restorer, progress=not args.quiet)


def _tune_cpu() -> None:
    """glibc keeps freed activation buffers instead of returning them (page faults cost ~40 % on CPU)."""
    from edtalk.perf import tune_cpu_allocator

    tune_cpu_allocator()
