"""Every visual stage trains for real (Lightning manual optimisation) and overfits a fixed batch;
frozen parameters stay bit-identical; EMA, R1 and the checkpoint payload work."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from edtalk.stages.params import fingerprint
from edtalk.weights import load_generator
from tests.learn import below, learn_seed
from tests.stages.helpers import FixedBatchData, LossRecorder, make_batch, make_stage, trainer

STEPS = 15  # 10 left the L1 drop within noise of the 0.9 bound for some seeds


@pytest.mark.learns
@pytest.mark.parametrize("stage", ["reconstruct", "mouth_pose", "expression", "finetune"])
def test_stage_overfits_fixed_batch_and_keeps_frozen_params(stage: str, tmp_path: Path) -> None:
    trainable = {"finetune": ["synthesis.*"]}.get(stage)
    module = make_stage(stage, **({"trainable": trainable} if trainable else {}))
    frozen_before = fingerprint(module.generator, module.frozen_names)
    trainable_before = fingerprint(module.generator, module.trainable_names)
    rec = LossRecorder()
    batch = make_batch(stage, seed=learn_seed(1))
    trainer(tmp_path, STEPS, callbacks=[rec]).fit(module, datamodule=FixedBatchData(batch))

    assert len(rec.rows) == STEPS  # one G and one D update per step: global_step counts batches
    l1 = [r["train/l1"] for r in rec.rows]
    below("l1 last/first", sum(l1[-3:]) / sum(l1[:3]), 0.95)
    assert all("train/d_loss" in r and "train/gan" in r for r in rec.rows)
    if stage == "mouth_pose":
        assert rec.rows[-1]["train/latent"] >= 2 * 2 * torch.exp(torch.tensor(-1.0)).item() - 1e-5
    if stage in ("expression", "finetune"):
        assert module.frozen_names, "these stages freeze part of the generator by default"
        assert fingerprint(module.generator, module.frozen_names) == frozen_before
    after = fingerprint(module.generator, module.trainable_names)
    changed = sum(after[k] != trainable_before[k] for k in after)
    assert changed > 0.9 * len(after)


def test_expression_trains_only_eln_bank_and_eem() -> None:
    module = make_stage("expression")
    assert module.trainable_names
    assert all(
        n.startswith(("navigator.exp_fc.", "banks.expression", "synthesis.fineadainresblock."))
        for n in module.trainable_names
    )
    assert "banks.mouth_pose" in module.frozen_names and "navigator.fc.0.weight" in module.frozen_names


def test_frozen_change_is_detected() -> None:
    module = make_stage("finetune", trainable=["synthesis.*"], with_d=False)
    module.on_train_start()
    with torch.no_grad():
        module.generator.encoder.convs[0][0].weight.view(-1)[0] += 1e-7
    with pytest.raises(RuntimeError, match=r"frozen parameters changed.*encoder\.convs\.0"):
        module.verify_frozen()


def test_trainable_glob_typo_fails_with_groups() -> None:
    with pytest.raises(ValueError, match=r"'synthesys\.\*' matches no parameter.*synthesis\.convs"):
        make_stage("finetune", trainable=["synthesys.*"])


def test_ema_r1_and_checkpoint_payload(tmp_path: Path) -> None:
    module = make_stage("reconstruct", ema_decay=0.5, r1_weight=1.0, r1_every=2)
    rec = LossRecorder()
    t = trainer(tmp_path, 3, callbacks=[rec])
    t.fit(module, datamodule=FixedBatchData(make_batch("reconstruct")))
    assert any("train/r1" in r for r in rec.rows)
    assert module.generator_ema is not None
    ema, live = module.generator_ema.state_dict(), module.generator.state_dict()
    assert any(not torch.equal(ema[k], live[k]) for k in live)
    path = tmp_path / "stage.ckpt"
    t.save_checkpoint(path)
    ckpt = torch.load(path, map_location="cpu", weights_only=True)  # plain types only
    assert ckpt["edtalk"]["stage"] == "reconstruct" and ckpt["edtalk"]["ema"] is True
    assert not any(k.startswith("perceptual.") for k in ckpt["state_dict"])  # the fixed VGG is not saved
    gen = load_generator(path)
    assert all(torch.equal(v, live[k]) for k, v in gen.state_dict().items())


class _Rates(LossRecorder):
    """G's and (with D) D's rate at the start of every training batch."""

    def __init__(self) -> None:
        super().__init__()
        self.rates: list[list[float]] = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
        self.rates.append([opt.param_groups[0]["lr"] for opt in trainer.optimizers])


@pytest.mark.parametrize("with_d", [False, True])
def test_cosine_schedule_anneals_g_and_d_over_max_steps(tmp_path: Path, with_d: bool) -> None:
    """`model.optim.schedule=cosine` on a GAN stage: each batch's rates (G's, and D's with D) are the base rates
    x the cosine of the trainer's step count (one per batch) over `max_steps`; the default keeps the rates."""
    module = make_stage(
        "finetune", with_d=with_d, **{"optim.schedule": "cosine", "loss.gan": 0.1 if with_d else 0.0}
    )
    o = module.cfg.optim
    rates = _Rates()
    trainer(tmp_path, 8, callbacks=[rates]).fit(module, datamodule=FixedBatchData(make_batch("finetune")))
    assert len(rates.rates) == 8
    for k, row in enumerate(rates.rates):
        factor = 0.5 * (1 + math.cos(math.pi * k / 8))
        assert row == pytest.approx([o.g_lr * factor, o.d_lr * factor][: 2 if with_d else 1], rel=1e-6)

    plain = make_stage("finetune", with_d=False)
    rates = _Rates()
    trainer(tmp_path / "plain", 3, callbacks=[rates]).fit(
        plain, datamodule=FixedBatchData(make_batch("finetune"))
    )
    assert rates.rates == [[plain.cfg.optim.g_lr]] * 3


def test_gan_schedule_rejects_an_unknown_name() -> None:
    with pytest.raises(ValueError, match=r"model\.optim\.schedule='linear'"):
        make_stage("finetune", with_d=False, **{"optim.schedule": "linear"}).cfg.optim.__post_init__()
