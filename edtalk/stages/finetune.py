"""Person-specific fine-tuning (spec §5.5): self-reconstruction on frames of one cropped video.

The same objective as `reconstruct` (VGG + L1 + GAN, D updated), starting from any generator
checkpoint (ours, EDTalk.pt or EDTalk_lip_pose.pt; `init.generator_config: checkpoint` takes the
file's architecture). `model.trainable: ["synthesis.*"]` is upstream's `--only_fine_tune_dec`
(decoder incl. EEM); `["*"]` fine-tunes everything. Any number of devices, no hard-coded paths.
"""

from __future__ import annotations

from typing import ClassVar

from edtalk.stages.reconstruct import ReconstructStage


class FinetuneStage(ReconstructStage):
    """Reconstruct objective on one person's frames (PairDataModule over that person's shard)."""

    stage_name: ClassVar[str] = "finetune"
