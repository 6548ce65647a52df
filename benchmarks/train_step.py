"""Seconds per `mouth_pose` optimisation step: our Lightning stage vs a plain eager loop of the same maths.

The baseline follows the upstream trainer's structure (spec §5.2): each of the four reconstructions is a
separate generator call that encodes its identity frame and its driving frames again (ten encoder passes
per step), VGG/L1/GAN per reconstruction, two plain Adam optimisers. Ours: `MouthPoseStage` under a
Lightning Trainer (manual optimisation), sources encoded once, the four drivers in one encoder batch and
the four renders in one synthesis call. Same networks, same sizes, same losses, random weights.

    python benchmarks/train_step.py                      # CPU default: 64^2, batch 2, widths / 4, 2 steps
    python benchmarks/train_step.py --size 256 --batch 4 --width 1   # the paper-size networks (GPU default)
    python benchmarks/train_step.py --json               # last line: one JSON object

On 2 CPU cores a paper-size 256^2 step takes minutes per side, so the CPU default is a smaller problem of
the same structure (the ratio compares structures; `--size/--batch/--width` give the full problem).

On a GPU: --device cuda [--bf16 --channels-last] (Lightning precision bf16-mixed / channels_last option).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lightning as L
import torch
import torch.nn.functional as F

from edtalk.config import GeneratorConfig
from edtalk.losses import VGGPyramidLoss, d_nonsaturating, g_nonsaturating, latent_consistency
from edtalk.nn.discriminator import Discriminator
from edtalk.nn.generator import Generator
from edtalk.stages.base import OptimConfig
from edtalk.stages.mouth_pose import MouthPoseConfig, MouthPoseStage

KEYS = ("source_a", "target_a", "source_b", "target_b", "swap_ab", "swap_ba")


def make_batch(size: int, batch: int, device: str) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    low = torch.rand(len(KEYS) * batch, 3, 16, 16, generator=g) * 2 - 1
    imgs = F.interpolate(low, size=size, mode="bicubic", align_corners=False).clamp(-1, 1).to(device)
    return dict(zip(KEYS, imgs.chunk(len(KEYS))))


def networks(size: int, device: str, width: float = 1.0) -> tuple[Generator, Discriminator, VGGPyramidLoss]:
    """Random generator, discriminator and VGG; `width` scales every channel cap (1 = the paper's)."""
    torch.manual_seed(0)
    cap = max(8, round(512 * width))
    gen = Generator(GeneratorConfig(size=size, variant="lip_pose", max_channels=cap)).to(device)
    disc = Discriminator(size, width, cap).to(device)
    return gen, disc, VGGPyramidLoss(init="random", width=width).to(device)


# -- baseline: the upstream trainer's structure -------------------------------------------------
def _component(gen: Generator, driver: torch.Tensor, part: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(alpha_part, d_part) of one driver: a full encoder pass per call, as upstream."""
    alpha = gen.coefficients(driver)[part]
    return alpha, gen.component_latents({part: alpha})[part]


def _recon(gen: Generator, source: torch.Tensor, lip: torch.Tensor, pose: torch.Tensor) -> tuple[Any, ...]:
    enc = gen.encode(source)
    a_m, d_m = _component(gen, lip, "mouth")
    a_p, d_p = _component(gen, pose, "pose")
    w, _ = gen.latent(enc.w_a, {"mouth": a_m, "pose": a_p})
    return gen.render(enc, w), d_m, d_p


def eager_step(nets: tuple[Any, ...], opts: tuple[Any, ...], b: dict[str, torch.Tensor]) -> None:
    gen, disc, vgg = nets
    g_opt, d_opt = opts
    self_a, dm_sa, dp_sa = _recon(gen, b["source_a"], b["target_a"], b["target_a"])
    self_b, dm_sb, dp_sb = _recon(gen, b["source_b"], b["target_b"], b["target_b"])
    cross_a, dm_ca, dp_ca = _recon(gen, b["source_a"], b["swap_ba"], b["swap_ab"])
    cross_b, dm_cb, dp_cb = _recon(gen, b["source_b"], b["swap_ab"], b["swap_ba"])
    loss = torch.zeros((), device=self_a.device)
    for out, tgt in (
        (self_a, b["target_a"]),
        (self_b, b["target_b"]),
        (cross_a, b["target_a"]),
        (cross_b, b["target_b"]),
    ):
        loss = loss + vgg(out, tgt) + (out - tgt).abs().mean() + g_nonsaturating(disc(out))
    loss = loss + latent_consistency(dm_ca, dm_sa) + latent_consistency(dp_ca, dp_sa)
    loss = loss + latent_consistency(dm_cb, dm_sb) + latent_consistency(dp_cb, dp_sb)
    g_opt.zero_grad(set_to_none=True)
    loss.backward()
    g_opt.step()
    real = torch.cat([b["target_a"], b["target_b"]])
    fake = torch.cat([cross_a, cross_b]).detach()
    d_loss = d_nonsaturating(disc(real), disc(fake))
    d_opt.zero_grad(set_to_none=True)
    d_loss.backward()
    d_opt.step()


def time_eager(args: argparse.Namespace, batch: dict[str, torch.Tensor]) -> float:
    gen, disc, vgg = networks(args.size, args.device, args.width)
    o = OptimConfig()
    opts = (
        torch.optim.Adam(gen.parameters(), lr=o.g_lr, betas=tuple(o.g_betas)),  # type: ignore[arg-type]
        torch.optim.Adam(disc.parameters(), lr=o.d_lr, betas=tuple(o.d_betas)),  # type: ignore[arg-type]
    )
    times = []
    for _ in range(args.warmup + args.steps):
        _sync(args.device)
        t = time.perf_counter()
        eager_step((gen, disc, vgg), opts, batch)
        _sync(args.device)
        times.append(time.perf_counter() - t)
    return _median(times[args.warmup :])


# -- ours: the Lightning stage -------------------------------------------------------------------
class _Timer(L.Callback):
    def __init__(self, device: str) -> None:
        self.device, self.times, self._t = device, [], 0.0  # type: ignore[var-annotated]

    def on_train_batch_start(self, *args: Any) -> None:
        _sync(self.device)
        self._t = time.perf_counter()

    def on_train_batch_end(self, *args: Any) -> None:
        _sync(self.device)
        self.times.append(time.perf_counter() - self._t)


class _Repeat(torch.utils.data.IterableDataset):  # type: ignore[type-arg]
    def __init__(self, batch: dict[str, torch.Tensor], n: int) -> None:
        self.batch, self.n = {k: v.cpu() for k, v in batch.items()}, n

    def __iter__(self) -> Any:
        return iter([self.batch] * self.n)


def time_stage(args: argparse.Namespace, batch: dict[str, torch.Tensor]) -> float:
    gen, disc, vgg = networks(args.size, "cpu", args.width)
    cfg = MouthPoseConfig(
        samples_every_n_steps=0, diagnostics_every_n_steps=0, channels_last=args.channels_last
    )
    module = MouthPoseStage(gen, disc, vgg, cfg)
    timer = _Timer(args.device)
    steps = args.warmup + args.steps
    trainer = L.Trainer(
        accelerator="gpu" if args.device.startswith("cuda") else "cpu",
        devices=1,
        max_steps=steps,
        precision="bf16-mixed" if args.bf16 else "32-true",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[timer],
    )
    loader = torch.utils.data.DataLoader(_Repeat(batch, steps), batch_size=None)
    trainer.fit(module, train_dataloaders=loader)
    return _median(timer.times[args.warmup :])


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _median(xs: list[float]) -> float:
    return sorted(xs)[len(xs) // 2]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=None, help="image side (default: 256 on GPU, 64 on CPU)")
    p.add_argument("--batch", type=int, default=None, help="default: 4 on GPU, 2 on CPU")
    p.add_argument(
        "--width", type=float, default=None, help="channel-cap scale (default: 1 on GPU, 0.25 on CPU)"
    )
    p.add_argument(
        "--steps", type=int, default=None, help="timed steps, median reported (default: 3 GPU, 2 CPU)"
    )
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (CPU)")
    p.add_argument("--bf16", action="store_true", help="ours under bf16-mixed (GPU)")
    p.add_argument("--channels-last", action="store_true", help="ours with channels_last (GPU)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    gpu = args.device.startswith("cuda")
    args.size = args.size or (256 if gpu else 64)
    args.batch = args.batch or (4 if gpu else 2)
    args.width = args.width or (1.0 if gpu else 0.25)
    args.steps = args.steps or (3 if gpu else 2)
    if args.threads:
        torch.set_num_threads(args.threads)
    batch = make_batch(args.size, args.batch, args.device)
    eager = time_eager(args, batch)
    ours = time_stage(args, batch)
    result = {
        "size": args.size,
        "batch": args.batch,
        "width": args.width,
        "device": args.device,
        "threads": torch.get_num_threads(),
        "eager_s_per_step": round(eager, 3),
        "ours_s_per_step": round(ours, 3),
        "ratio": round(eager / ours, 3),
        "ours_it_per_s": round(1 / ours, 3),
    }
    print(
        f"mouth_pose {args.size}^2 batch {args.batch} width {args.width:g} on {args.device}: eager {eager:.3f} s/step, "
        f"ours {ours:.3f} s/step -> {eager / ours:.2f}x (rerun: python benchmarks/train_step.py)"
    )
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
