"""End-to-end speed of `edtalk generate` vs the original demos' per-frame way, same files, same process.

Job: 10 s of speech + a predefined emotion on a pre-cropped 256^2 photo, head pose kept from the photo,
full generator at 256^2 with random weights (official-layout files written first, not timed).
Both sides are timed from reading the checkpoint files to a finished mp4 with sound.

(a) baseline, the original `demo_*` structure: Audio2Lip on all mel windows, then per frame at batch 1
    re-encode the source, encode the pose driver (= the photo, as `--fix_pose` does), QR, synthesis with
    grouped modulated convs, EEM's discarded branch and per-call sampling grids (`benchmarks/render.py`'s
    `UpstreamStyle`); every frame kept in memory, one global min-max stretch, then the video is written.
    glibc's default allocator (as users run it).
(b) ours: `Pipeline` (the code behind `edtalk generate`): source encoded once, Q once, chunks of frames,
    streamed to the writer, the tuned allocator that `edtalk generate` sets.

    python benchmarks/generate.py [--seconds 10] [--baseline-frames N] [--baseline-tuned] [--chunk-size 4]
                                  [--bf16] [--json]

`--baseline-frames N` times the baseline's per-frame loop on the first N frames only and extrapolates
(its cost per frame is constant); the default runs the whole clip. rtf = wall seconds / audio seconds
of (b) (< 1: faster than real time). `--baseline-tuned` also times (a) after the allocator is tuned,
separating the allocator's share from the structural one. With --json the last line is
{"baseline_fps", "ours_fps", "ratio", "rtf", ...}. On a shared machine, quote the load average too.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from render import UpstreamStyle, tame  # the faithful per-frame baseline, shared with the render benchmark

from edtalk.config import GeneratorConfig
from edtalk.emotions import emotion_weights
from edtalk.io import from_uint8, legacy_to_uint8, read_audio, write_video, write_wav
from edtalk.mel import mel_windows, smooth_coefficients
from edtalk.nn.audio2lip import Audio2Lip
from edtalk.nn.generator import Generator
from edtalk.perf import tune_cpu_allocator
from edtalk.pipeline import Pipeline
from edtalk.weights import load_official, save_official


def make_inputs(d: Path, seconds: float, size: int) -> dict[str, Path]:
    """Official-layout checkpoints (random, tamed), a pre-cropped photo and a speech-like wav."""
    from PIL import Image
    from skimage import data

    torch.manual_seed(0)
    save_official(tame(Generator(GeneratorConfig(size=size))), "edtalk_full", d / "EDTalk.pt")
    save_official(Audio2Lip(), "audio2lip", d / "Audio2Lip.pt")
    face = Image.fromarray(data.astronaut()[20:220, 140:340]).resize((size, size), Image.Resampling.BICUBIC)
    face.save(d / "source.png")
    t = np.arange(int(seconds * 16000)) / 16000
    syllables = 0.5 * (1 + np.sin(2 * np.pi * 4 * t))  # ~4 syllables/s envelope on a vowel-like tone
    write_wav(d / "speech.wav", 0.3 * syllables * np.sin(2 * np.pi * 140 * t) * np.sin(2 * np.pi * 700 * t))
    return {
        "checkpoint": d / "EDTalk.pt",
        "audio2lip": d / "Audio2Lip.pt",
        "source": d / "source.png",
        "audio": d / "speech.wav",
    }


@torch.no_grad()
def run_baseline(files: dict[str, Path], out: Path, max_frames: int | None) -> tuple[float, int, int]:
    """The original way: (seconds for the whole clip, frames actually rendered, clip frames).

    With `max_frames` only that many frames are rendered and written; the per-frame loop is scaled to
    the whole clip, loading, audio and writing are counted once (in the baseline's favour).
    """
    from PIL import Image

    start = time.perf_counter()
    gen = load_official(files["checkpoint"], "edtalk_full")
    a2l = load_official(files["audio2lip"], "audio2lip")
    with Image.open(files["source"]) as img:
        image = img.convert("RGB").resize((gen.cfg.size, gen.cfg.size), Image.Resampling.BICUBIC)
    source = from_uint8(np.array(image))[None]
    wav = read_audio(files["audio"])
    mouth = smooth_coefficients(a2l(torch.from_numpy(mel_windows(wav))))  # all windows at once, as upstream
    exp = emotion_weights("happy")
    base = UpstreamStyle(gen)
    total = len(mouth)
    n = total if not max_frames else min(max_frames, total)
    fixed = time.perf_counter() - start
    start = time.perf_counter()
    frames = [base.frame(source, mouth[i : i + 1], source, exp) for i in range(n)]  # pose driver = the photo
    loop = time.perf_counter() - start
    start = time.perf_counter()
    video = legacy_to_uint8(torch.cat(frames))  # whole clip in memory, global min-max stretch
    write_video(out, video, audio=wav[: n * 640])
    write = time.perf_counter() - start  # not scaled: in the baseline's favour when n < total
    return fixed + loop * total / n + write, n, total


def run_ours(files: dict[str, Path], out: Path, chunk_size: int | None, bf16: bool) -> tuple[float, int]:
    start = time.perf_counter()
    pipe = Pipeline.from_checkpoints(
        files["checkpoint"],
        files["audio2lip"],
        device="cpu",
        chunk_size=chunk_size,
        bf16=bf16,
        crop=False,
        progress=False,
    )
    result = pipe(files["source"], out, audio=files["audio"], emotion="happy")
    return time.perf_counter() - start, result.num_frames


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=4.0, help="audio length (4 s = 100 frames)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument(
        "--baseline-frames",
        type=int,
        default=12,
        help="time the baseline on this many frames, scaled (0: all)",
    )
    parser.add_argument("--chunk-size", type=int, help="ours: frames per batch (default: the pipeline's)")
    parser.add_argument("--bf16", action="store_true", help="ours: bfloat16 autocast")
    parser.add_argument("--threads", type=int)
    parser.add_argument(
        "--baseline-tuned", action="store_true", help="also time the baseline with the tuned allocator"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="edtalk-bench-") as tmp:
        d = Path(tmp)
        files = make_inputs(d, args.seconds, args.size)
        base_s, base_n, total = run_baseline(files, d / "baseline.mp4", args.baseline_frames)
        tuned = tune_cpu_allocator()  # what `edtalk generate` does first
        if args.baseline_tuned:
            base_tuned_s, _, _ = run_baseline(files, d / "baseline_tuned.mp4", args.baseline_frames)
        ours_s, ours_n = run_ours(files, d / "ours.mp4", args.chunk_size, args.bf16)
    baseline_fps, ours_fps = total / base_s, ours_n / ours_s
    result = {
        "baseline_fps": round(baseline_fps, 3),
        "ours_fps": round(ours_fps, 3),
        "ratio": round(ours_fps / baseline_fps, 2),
        "rtf": round(ours_s / args.seconds, 3),
        "frames": ours_n,
        "baseline_frames_timed": base_n,
        "size": args.size,
        "threads": torch.get_num_threads(),
        "allocator_tuned": tuned,
        "bf16": args.bf16,
    }
    if args.baseline_tuned:
        result["baseline_tuned_fps"] = round(total / base_tuned_s, 3)
        result["ratio_tuned"] = round(ours_fps * base_tuned_s / total, 2)
    assert ours_n == total, f"frame counts differ: ours {ours_n}, baseline clip {total}"
    print(
        f"job: {args.seconds:g} s audio -> {total} frames at {args.size}^2, threads={torch.get_num_threads()}"
    )
    scaled = f", {base_n} rendered and scaled" if base_n < total else ""
    print(
        f"(a) original per-frame way: {baseline_fps:.2f} frames/s ({total} frames in {base_s:.1f} s{scaled})"
    )
    if args.baseline_tuned:
        print(f"(a') same, tuned allocator: {result['baseline_tuned_fps']:.2f} frames/s")
    print(f"(b) edtalk generate:        {ours_fps:.2f} frames/s ({ours_n} frames in {ours_s:.1f} s)")
    tuned_ratio = f" ({result['ratio_tuned']:.2f}x vs the tuned baseline)" if args.baseline_tuned else ""
    print(f"ratio {result['ratio']:.2f}x{tuned_ratio}, real-time factor {result['rtf']:.2f}")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
