"""Regression guard: the demo profile learns (a reduced budget of the main job's first stages).

Trains reconstruct with the demo profile (experiments/demo/) through the quickstart's own stage runner,
then scores the trained generator against a random-init generator of the same architecture on the
held-out speaker of the built-in data: video-driven self-reconstruction PSNR, and the out-of-sample
probe table. Thresholds leave head-room under what the budget reaches (see the numbers in the
assertions' messages); they hold for any EDTALK_TEST_SEED.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# a little over the main job's stage 1 (quickstart --steps 200 x the demo scale of reconstruct in experiments/demo/plan.yaml)
STEPS = 1200
# With the demo optimiser (lr 4e-3, betas (0.9, 0.999); session 6), seeds 1 / 2: 19.30 / 20.21 dB.
# Measured with the mouth-region term (the demo profile since 2026-11-30, session 5), seeds 1 / 2: 19.35 / 18.91 dB
# vs random init 10.89 / 9.91 dB, copying the source 15.77 dB (>= +3.1 dB; the assertion asks +1.0). Before it (pure L1, 400 steps; seeds 0/1/2/3): 17.26 / 16.98 / 17.01 / 17.59 dB vs
# random init 11.18 / 10.89 / 9.91 / 9.46 dB, copying the source 15.77 dB.


@pytest.mark.slow
@pytest.mark.timeout(1800)  # timed out at 900 s on 2 cores shared with 7 other jobs; alone: minutes
def test_demo_profile_reconstruction_learns(tmp_path: Path) -> None:
    import torch

    from datamodules.synthetic import ensure_builtin
    from edtalk.apps.learning import clip_psnrs, copy_source_psnr, floor_generator
    from edtalk.apps.quickstart import main_job
    from edtalk.weights import load_generator

    torch.set_num_threads(1)
    root = ensure_builtin()
    seed = int(os.environ.get("EDTALK_TEST_SEED", "0"))
    job = main_job(tmp_path, log=lambda s: None, profile="demo")
    run = job.train("reconstruct", STEPS, [f"seed={seed}"])
    ours = load_generator(run.run_dir / "checkpoints" / "last.ckpt").eval()
    floor = floor_generator(ours, seed)
    psnr_ours, _, _ = clip_psnrs(ours, None, root, 2)
    psnr_floor, _, _ = clip_psnrs(floor, None, root, 2)
    psnr_copy = copy_source_psnr(root, ours.cfg.size, 2)
    said = (
        f"PSNR {psnr_ours:.2f} dB vs random-init {psnr_floor:.2f} dB, copying the source {psnr_copy:.2f} dB"
    )
    print(f"demo reconstruct seed {seed}: {said}")
    assert psnr_ours > psnr_floor + 3.0, said
    assert psnr_ours > psnr_copy + 1.0, said  # the motion path learned to move the source
