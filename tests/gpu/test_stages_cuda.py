"""Training stages on CUDA: real tiny Lightning Trainer runs in 32-true and bf16-mixed, and channels-last
gradients that match the CPU's on the same batch (the CPU variant of that comparison runs in CI)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from edtalk.stages.base import GANStage, to_channels_last
from tests.gpu.common import DEVICES, needs_cuda
from tests.stages.helpers import FixedBatchData, LossRecorder, make_batch, make_stage, trainer

STAGES = ["mouth_pose", "expression"]


class _AutocastProbe:
    """Forward hook: records (autocast on?, its dtype) whenever the generator's encoder runs."""

    def __init__(self) -> None:
        self.seen: list[tuple[bool, torch.dtype]] = []

    def __call__(self, *args: object) -> None:
        self.seen.append((torch.is_autocast_enabled("cuda"), torch.get_autocast_dtype("cuda")))


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
@pytest.mark.parametrize("stage", STAGES)
def test_stage_trains_on_cuda(stage: str, precision: str, channels_last: bool, tmp_path: Path) -> None:
    """Three optimisation steps: finite losses, trainable weights moved, autocast exactly when bf16-mixed."""
    module = make_stage(stage, channels_last=channels_last)
    trainable = {n: p.detach().clone() for n, p in module.generator.named_parameters() if p.requires_grad}
    probe = _AutocastProbe()
    module.generator.encoder.register_forward_hook(probe)
    losses = LossRecorder()
    run = trainer(tmp_path, 3, accelerator="gpu", precision=precision, callbacks=[losses])
    run.fit(module, datamodule=FixedBatchData(make_batch(stage)))

    assert module.device.type == "cuda"
    assert len(losses.rows) == 3
    assert all(math.isfinite(v) for row in losses.rows for v in row.values()), losses.rows
    moved = [
        n
        for n, p in module.generator.named_parameters()
        if n in trainable and not torch.equal(p.cpu(), trainable[n])
    ]
    assert len(moved) > len(trainable) // 2, (
        f"only {len(moved)} of {len(trainable)} trainable tensors changed"
    )
    bf16 = precision == "bf16-mixed"
    assert probe.seen and all(on == bf16 for on, _ in probe.seen), probe.seen[:3]
    if bf16:
        assert all(dtype == torch.bfloat16 for _, dtype in probe.seen)
    if channels_last:
        convs = [p for p in module.generator.parameters() if p.dim() == 4]
        assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)


def _step(
    stage: str, device: str, channels_last: bool
) -> tuple[torch.Tensor, float, dict[str, torch.Tensor]]:
    """(generated images, weighted loss, generator gradients) of one generator step on one fixed batch."""
    module: GANStage = make_stage(stage, with_d=False).to(device)
    batch = {k: v.to(device) for k, v in make_batch(stage).items()}
    if channels_last:
        to_channels_last(module)
        batch = {
            k: v.contiguous(memory_format=torch.channels_last) if v.dim() == 4 else v
            for k, v in batch.items()
        }
    out = module.generator_step(batch)
    loss = sum(module.weight(k) * v for k, v in out.losses.items())
    assert isinstance(loss, torch.Tensor)
    loss.backward()
    grads = {n: p.grad.detach().cpu() for n, p in module.generator.named_parameters() if p.grad is not None}
    return out.fake.detach().float().cpu(), float(loss.detach()), grads


@pytest.mark.filterwarnings("ignore:You are trying to `self.log")
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("stage", STAGES)
def test_channels_last_matches_cpu(stage: str, device: str) -> None:
    """Channels-last on `device` vs the plain CPU layout: same images, loss and gradients (float32)."""
    ref_img, ref_loss, ref_grads = _step(stage, "cpu", channels_last=False)
    img, loss, grads = _step(stage, device, channels_last=True)
    tol = 1e-4 if device == "cpu" else 1e-3
    assert img.shape == ref_img.shape
    assert (img - ref_img).abs().max() < tol
    assert loss == pytest.approx(ref_loss, rel=tol)
    assert grads.keys() == ref_grads.keys() and len(grads) > 10
    # gradients that are zero in exact arithmetic (a bias right before an instance norm) are pure rounding
    # noise, so each tensor's error is measured against at least 1% of the typical gradient norm
    floor = 0.01 * float(torch.stack([g.norm() for g in ref_grads.values()]).mean())
    for name, g in grads.items():
        ref = ref_grads[name]
        err = float((g - ref).norm()) / max(float(ref.norm()), floor)
        assert err < 10 * tol, f"{name}: relative gradient error {err:.2e}"


@pytest.mark.parametrize("stage", STAGES)
def test_channels_last_option_trains(stage: str, tmp_path: Path) -> None:
    """`model.channels_last=true` under a real Trainer (CPU here): the 4-D weights change layout, 5-D stay."""
    module = make_stage(stage, channels_last=True)
    losses = LossRecorder()
    trainer(tmp_path, 1, callbacks=[losses]).fit(module, datamodule=FixedBatchData(make_batch(stage)))
    assert len(losses.rows) == 1 and all(math.isfinite(v) for v in losses.rows[0].values())
    params = list(module.generator.parameters())
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in params if p.dim() == 4)
    assert any(p.dim() == 5 for p in params)  # the modulated convs' weights, which Module.to() rejected
