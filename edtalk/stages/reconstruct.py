"""Stage 1, E/G pre-training (spec §5.1): LIA-style self-reconstruction of a target frame from a source.

For a (source, target) pair of one identity the generator encodes the source appearance and drives it
with the target's own motion codes: x = G(E(s); w_a(s) + sum_k alpha_k(t) q_k). Everything is trained
by default. Loss: VGG pyramid + L1 (vs target) + non-saturating GAN; D sees target vs x.
Initialise from scratch or from LIA's vox.pt (`init_from=vox.pt`; heads and banks stay at init).
"""

from __future__ import annotations

from typing import ClassVar

import torch

from edtalk.nn.generator import Generator
from edtalk.stages.base import GANStage, GANStageConfig, StepOutput


def drive(gen: Generator, source: torch.Tensor, driver: torch.Tensor) -> torch.Tensor:
    """Render `source` with every motion component (mouth, pose[, exp]) of `driver`; B x 3 x H x W."""
    enc = gen.encode(source)
    alpha = gen.coefficients(driver)
    w, e = gen.latent(enc.w_a, alpha)
    return gen.render(enc, w, e)


class ReconstructStage(GANStage):
    """Self-reconstruction on same-identity pairs: batches {"source", "target"} (PairDataModule)."""

    Config: ClassVar[type[GANStageConfig]] = GANStageConfig
    stage_name: ClassVar[str] = "reconstruct"

    def generator_step(self, batch: dict[str, torch.Tensor]) -> StepOutput:
        src, tgt = batch["source"], batch["target"]
        fake = drive(self.generator, src, tgt)
        return StepOutput(
            self.reconstruction_losses(fake, tgt), fake=fake, real=tgt, samples=[src, tgt, fake]
        )

    def validation_pairs(
        self, generator: Generator, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return drive(generator, batch["source"], batch["target"]), batch["target"]
