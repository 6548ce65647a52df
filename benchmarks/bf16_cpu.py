"""Does bf16 autocast buy training steps on this CPU? Generator fwd+bwd+Adam step, fp32 vs bf16.

The demo profile (experiments/demo/) trains 64^2 generators on 2 CPU cores. CPUs with AVX-512 BF16 run
large bf16 convolutions about twice as fast as fp32; whether that survives at the demo's channel
counts (16-64) is what this measures. Same process, same weights and batch, rounds alternate, the
best of each side is kept.

    python benchmarks/bf16_cpu.py [--threads 2] [--batch 4] [--rounds 4]

Prints one line per width: ms per step in fp32 and under `torch.autocast("cpu", torch.bfloat16)`
(what Lightning's `bf16-mixed` does on CPU) and the speed-up.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from edtalk.config import GeneratorConfig
from edtalk.nn.generator import Generator

WIDTHS = ((0.125, 16), (0.25, 32), (0.5, 64))


def step(gen: Generator, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, bf16: bool) -> float:
    """One self-reconstruction step (x drives and is the source, L1 to y); seconds."""
    start = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        enc = gen.encode(x)
        w, e = gen.latent(enc.w_a, gen.coefficients(y))
        loss = (gen.render(enc, w, e).float() - y).abs().mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--rounds", type=int, default=4)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    with open("/proc/cpuinfo") as f:
        print(f"avx512_bf16: {'avx512_bf16' in f.read()}, threads: {args.threads}")
    for mult, cap in WIDTHS:
        torch.manual_seed(0)
        cfg = dataclasses.replace(GeneratorConfig.tiny("lip_pose"), channel_multiplier=mult, max_channels=cap)
        gen = Generator(cfg)
        opt = torch.optim.Adam(gen.parameters(), 1e-4)
        x, y = (torch.rand(args.batch, 3, 64, 64) * 2 - 1 for _ in range(2))
        times: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.rounds + 1):  # the first round warms up and is dropped
            for bf16 in (False, True):
                times[bf16].append(step(gen, opt, x, y, bf16))
        fp32, bf = min(times[False][1:]), min(times[True][1:])
        print(
            f"channel_multiplier={mult} max_channels={cap} batch {args.batch}: fp32 {fp32 * 1e3:.0f} ms, "
            f"bf16 {bf * 1e3:.0f} ms, speed-up x{fp32 / bf:.2f}"
        )


if __name__ == "__main__":
    main()
