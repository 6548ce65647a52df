"""Stage 1, E/G pre-training (spec §5.1): LIA-style self-reconstruction of a target frame from a source.

For a (source, target) pair of one identity the generator encodes the source appearance and drives it
with the target's own motion codes: x = G(E(s); w_a(s) + sum_k alpha_k(t) q_k). Everything is trained
by default. Loss: VGG pyramid + L1 (vs target) + non-saturating GAN; D sees target vs x.
The original stage 1 starts from LIA's `vox.pt` (its default `--resume_ckpt`): `init_from=PATH/vox.pt`
(kind `lia_stage1`; heads and banks stay at init) is the documented recipe. With no `init_from` the stage
trains from scratch and warns, naming where to get the file. `model.loss.emotion` (ours, off) reads the
target's encoder latent (`GANStage.emotion_term`): the encoder learns to see the emotion across speakers.
Pairs (PairDataModule, `datamodules.samplers.PairSampler`): a neutral-clip frame of a MEAD speaker ->
a frame of any clip of that speaker; HDTF: two frames of one clip.
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import torch

from edtalk.nn.generator import Generator
from edtalk.stages.base import GANStage, GANStageConfig, StepOutput, build_gan_stage

SCRATCH_WARNING = (
    "reconstruct starts from scratch: the original stage 1 starts from LIA's vox.pt "
    "(github.com/wyhsirius/LIA, 'Pretrained models'); pass init_from=PATH/vox.pt to follow it"
)


def drive(gen: Generator, source: torch.Tensor, driver: torch.Tensor) -> torch.Tensor:
    """Render `source` with every motion component (mouth, pose[, exp]) of `driver`; B x 3 x H x W."""
    enc = gen.encode(source)
    alpha = gen.coefficients(driver)
    return gen.animate(enc, alpha)


class ReconstructStage(GANStage):
    """Self-reconstruction on same-identity pairs: batches {"source", "target"} (PairDataModule)."""

    Config: ClassVar[type[GANStageConfig]] = GANStageConfig
    stage_name: ClassVar[str] = "reconstruct"
    reads_emotion: ClassVar[bool] = True

    @classmethod
    def build(cls, cfg: Any, resume: bool = False) -> GANStage:
        """As every GAN stage; warns when stage 1 starts from scratch instead of LIA's vox.pt."""
        if cls.stage_name == "reconstruct" and not cfg.init_from and not resume:
            warnings.warn(SCRATCH_WARNING, UserWarning, stacklevel=2)
        return build_gan_stage(cls, cfg, resume)

    def generator_step(self, batch: dict[str, torch.Tensor]) -> StepOutput:
        src, tgt = batch["source"], batch["target"]
        gen = self.generator
        # = `drive`, with the driver's latent kept for the emotion read
        w_t, _ = gen.encoder(tgt, with_features=False)
        fake = gen.animate(gen.encode(src), gen.heads(w_t, tgt))
        return StepOutput(
            self.reconstruction_losses(fake, tgt, boxes=self.target_boxes(batch))
            | self.emotion_term(w_t, batch),
            fake=fake,
            real=tgt,
            samples=[src, tgt, fake],
        )

    def validation_pairs(
        self, generator: Generator, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return drive(generator, batch["source"], batch["target"]), batch["target"]
