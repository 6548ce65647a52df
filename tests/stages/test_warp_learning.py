"""`model.loss.warp_invariance` (ours; on in the demo profile) takes the head's roll out of the mouth weights.

This is the first half of what keeps the audio-driven mouth's sign (issue 30): the learning table reads the
opening from the mouth weights with a linear probe, and while those weights also carry the roll, the probe's
read of audio2mouth's predictions followed the seed (experiments/demo/README.md, "The audio paths" and "The
warp term with the reader"). The second half, audio2mouth finding a small opening direction in held-out
speech, is tests/stages/test_audio_mouth_opening.py.

A real Trainer run of the mouth_pose stage (tiny generator, distinct batches each step) with the term and,
from the same initialisation and data, without it; then, on frames neither run saw, how much the mouth
weights move when the frames are rolled by up to 10 degrees, as a fraction of how much they differ between
frames (`coefficient_invariance`, the term's own ratio, with a fixed draw of angles).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from edtalk.losses import coefficient_invariance, random_similarity
from tests.learn import below
from tests.stages.helpers import SeededData, make_batch, make_stage, trainer

STEPS = 60


def roll_ratio(module: object, frames: torch.Tensor) -> float:
    generator = module.generator  # type: ignore[attr-defined]
    generator.eval()
    rolled, _ = random_similarity(frames, 10.0, 0.0, 0.0, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        mouth = generator.coefficients(torch.cat([frames, rolled]))["mouth"]
    own, warped = mouth.chunk(2)
    return float(coefficient_invariance(warped, own))


@pytest.mark.learns
def test_the_warp_term_takes_the_roll_out_of_the_mouth_weights(tmp_path: Path) -> None:
    held_out = make_batch("mouth_pose", batch=8, seed=99)
    frames = torch.cat([held_out["target_a"], held_out["target_b"]])
    ratios = {}
    for weight in (0.0, 1.0):
        module = make_stage("mouth_pose", with_d=False, **{"loss.warp_invariance": weight, "loss.vgg": 0.0})
        trainer(tmp_path / str(weight), STEPS).fit(
            module, datamodule=SeededData("mouth_pose", n=STEPS, batch=4)
        )
        ratios[weight] = roll_ratio(module, frames)
    # the term lowers the ratio it is made of, on frames it never saw, by a fifth or more (0.34-0.63 measured, seeds 0-2)
    below("roll ratio with the term / without", ratios[1.0] / ratios[0.0], 0.8)
