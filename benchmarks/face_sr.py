"""Face super-resolution speed: the original's per-frame GFPGAN structure vs our batched restorer.

Same weights (random, v1.4 architecture unless --tiny), same 256² frames, same process:

(a) baseline, the original structure: one frame per call, modulated convolutions as per-sample
    weights in a grouped convolution (as `stylegan2_clean_arch.ModulatedConv2d`). GFPGANer's face
    detection, alignment and paste-back are not counted, so the ratio is a lower bound.
(b) ours: `FaceRestorer` with `--batch` frames per call, modulation on activations and one shared
    convolution per layer.

    python benchmarks/face_sr.py --frames 8 --batch 8 --device cuda [--bf16] [--json]
    python benchmarks/face_sr.py --tiny --frames 8          # quick CPU check (1/16-width model)

Prints frames/s of each and the ratio; with --json the last line is
{"baseline_fps", "ours_fps", "ratio", "max_abs_diff", "device", "model"}.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F

from edtalk.apps.facesr import FaceRestorer
from edtalk.nn.gfpgan import GFPGAN, GFPGANConfig, ModulatedConv2d


def grouped_modconv(self: ModulatedConv2d, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """The original's modulated convolution: per-sample weights, one grouped conv over the batch."""
    b, cin = x.shape[:2]
    weight = self.weight * self.modulation(style).view(b, 1, cin, 1, 1)  # -> B x Cout x Cin x k x k
    if self.demodulate:
        weight = weight * torch.rsqrt(weight.pow(2).sum((2, 3, 4)) + self.eps).view(b, -1, 1, 1, 1)
    if self.upsample:
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    k = weight.shape[-1]
    out = F.conv2d(x.reshape(1, -1, *x.shape[2:]), weight.view(-1, cin, k, k), padding=k // 2, groups=b)
    return out.view(b, -1, *out.shape[2:])


@contextlib.contextmanager
def upstream_modconv() -> Iterator[None]:
    original: Callable = ModulatedConv2d.forward
    ModulatedConv2d.forward = grouped_modconv  # type: ignore[method-assign]
    try:
        yield
    finally:
        ModulatedConv2d.forward = original  # type: ignore[method-assign]


def timed(fn: Callable[[], torch.Tensor], device: torch.device) -> tuple[torch.Tensor, float]:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return out, time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=None, help="default: 8 on GPU, 4 on CPU (3 min on 2 cores)")
    p.add_argument("--batch", type=int, default=None, help="frames per call of ours (default: --frames)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--tiny", action="store_true", help="1/16-width model (CPU smoke run)")
    p.add_argument("--bf16", action="store_true", help="ours under bf16 autocast")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    device = torch.device(args.device)
    args.frames = args.frames or (8 if device.type == "cuda" else 4)
    args.batch = args.batch or args.frames
    torch.manual_seed(0)
    net = GFPGAN(GFPGANConfig.tiny() if args.tiny else GFPGANConfig())
    frames = torch.rand(args.frames, 3, 256, 256) * 2 - 1
    baseline = FaceRestorer.from_module(net, device, batch_size=1)
    ours = FaceRestorer.from_module(net, device, batch_size=args.batch, bf16=args.bf16)
    ours.restore(frames[: min(2, args.frames)])  # warm-up (cuDNN autotune, allocator)
    with upstream_modconv():
        baseline.restore(frames[:1])
        ref, t_base = timed(lambda: baseline.restore(frames), device)
    out, t_ours = timed(lambda: ours.restore(frames), device)
    result = {
        "baseline_fps": args.frames / t_base,
        "ours_fps": args.frames / t_ours,
        "ratio": t_base / t_ours,
        "max_abs_diff": float((out - ref).abs().max()),
        "device": str(device),
        "model": "tiny" if args.tiny else "v1.4",
    }
    print(f"baseline (per frame, grouped modconv): {result['baseline_fps']:.2f} frames/s")
    print(f"ours (batch {args.batch}{', bf16' if args.bf16 else ''}): {result['ours_fps']:.2f} frames/s")
    print(f"ratio {result['ratio']:.2f}x, max |diff| {result['max_abs_diff']:.2e} on {device}")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
