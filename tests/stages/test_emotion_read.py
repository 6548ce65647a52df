"""`model.loss.emotion` (ours): a linear read of the driver's code trained to name its clip's emotion.

Stage 1 reads the encoder latent of the target, the expression stage its expression weights; the read is
trained with the generator's optimiser and stays out of the generator."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from edtalk.losses import EmotionRead, emotion_cross_entropy
from edtalk.stages.reconstruct import drive
from tests.stages.helpers import FixedBatchData, LossRecorder, make_batch, make_stage, trainer


def test_cross_entropy_ignores_unlabelled_clips() -> None:
    logits = torch.randn(4, 8, generator=torch.Generator().manual_seed(0), requires_grad=True)
    labels = torch.tensor([3, -1, 5, -1])
    expected = F.cross_entropy(logits[[0, 2]], labels[[0, 2]])
    assert torch.allclose(emotion_cross_entropy(logits, labels), expected)
    none = emotion_cross_entropy(logits, torch.full((4,), -1))
    none.backward()  # a batch of HDTF clips: zero, and still a graph
    assert float(none.detach()) == 0.0 and logits.grad is not None and float(logits.grad.abs().sum()) == 0.0
    with pytest.raises(ValueError, match=r"model\.loss\.emotion=0"):
        emotion_cross_entropy(logits, None)


def test_read_standardises_by_running_statistics() -> None:
    code = torch.randn(64, 6, generator=torch.Generator().manual_seed(1)) * 50 + 7
    read, scaled = EmotionRead(6, 8).train(), EmotionRead(6, 8)
    scaled.load_state_dict(read.state_dict())
    first = read(code)  # the first batch sets the statistics: the read sees the standardised code
    expected = read.linear((code - code.mean(0)) / code.std(0, unbiased=False))
    assert torch.allclose(first, expected, atol=1e-4)
    assert torch.allclose(scaled.train()(1000 * code + 3), first, atol=1e-3)  # scale-free
    read.eval()
    before = read.mean.clone()
    assert torch.equal(read(code[:1]), read(code[:1])) and torch.equal(read.mean, before)  # eval: frozen
    read.train()
    read(code[:1] + 100)  # a batch of one updates them: a running average over the first 1 / momentum batches
    assert torch.allclose(read.mean, before + 0.5 * (code[0] + 100 - before), atol=1e-4)
    for _ in range(30):
        read(code)
    now = read.mean.clone()
    read(code[:1] + 100)  # ... then an exponential one with the momentum
    assert torch.allclose(read.mean, now + 0.05 * (code[0] + 100 - now), atol=1e-4)


def test_reconstruct_reads_the_driver_latent_and_renders_as_before() -> None:
    batch = make_batch("reconstruct", batch=3) | {"emotion": torch.tensor([0, 4, -1])}
    plain = make_stage("reconstruct", with_d=False, **{"loss.vgg": 0.0})
    out = plain.generator_step(batch)
    assert "emotion" not in out.losses and plain.emotion_read is None
    with torch.no_grad():  # the step renders exactly what `drive` renders (validation, inference)
        assert torch.equal(out.fake, drive(plain.generator, batch["source"], batch["target"]))
    module = make_stage("reconstruct", with_d=False, **{"loss.vgg": 0.0, "loss.emotion": 1.0})
    assert (
        module.emotion_read is not None
        and module.emotion_read.linear.in_features == module.generator.cfg.style_dim
    )
    losses = module.generator_step(batch).losses
    losses["emotion"].backward()
    enc = [p.grad for p in module.generator.encoder.parameters() if p.grad is not None]
    assert enc and any(float(g.abs().sum()) > 0 for g in enc)  # the encoder learns to see it
    params = {id(p) for group in module.configure_optimizers()[0].param_groups for p in group["params"]}
    assert all(id(p) in params for p in module.emotion_read.parameters())
    assert not any(k.startswith("emotion_read") for k in module.generator.state_dict())


def test_expression_reads_the_expression_weights() -> None:
    module = make_stage("expression", with_d=False, **{"loss.vgg": 0.0, "loss.emotion": 1.0})
    assert module.emotion_read is not None
    assert module.emotion_read.linear.in_features == module.generator.cfg.exp_dim
    losses = module.generator_step(make_batch("expression", batch=4)).losses
    assert float(losses["emotion"]) > 0


def test_reconstruct_learns_to_name_the_emotion(tmp_path: Path) -> None:
    """A real Trainer run on a fixed batch of four labelled frames: the read's cross-entropy falls from about
    ln 8 to a fraction of it (head-room: any seed)."""
    batch = make_batch("reconstruct", batch=4, seed=3) | {"emotion": torch.tensor([0, 4, 5, 6])}
    module = make_stage("reconstruct", with_d=False, **{"loss.vgg": 0.0, "loss.emotion": 1.0})
    rec = LossRecorder()
    trainer(tmp_path, 40, callbacks=[rec]).fit(module, FixedBatchData(batch))
    ce = [r["train/emotion"] for r in rec.rows]
    assert ce[0] > 1.0 and min(ce[-5:]) < 0.3 * ce[0], ce


def test_discriminant_directions_find_the_class_axis() -> None:
    """Two classes apart along one axis of a 6-d code with larger spread elsewhere: the one direction is that
    axis, at unit within-class standard deviation; an unlabelled-only batch is an error naming the option."""
    from edtalk.stages.expression import discriminant_directions

    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 6, generator=g) * torch.tensor([5.0, 5.0, 0.5, 5.0, 5.0, 5.0])
    y = torch.arange(400) % 2
    x[:, 2] += 2.0 * y  # the classes differ on axis 2 only
    dirs, mean = discriminant_directions(x, torch.where(torch.arange(400) < 390, y, -1), shrink=0.0)
    assert dirs.shape == (1, 6) and torch.allclose(mean, x[:390].mean(0), atol=1e-4)
    axis = dirs[0] / dirs[0].norm()
    assert abs(float(axis[2])) > 0.99
    proj = x[:390] @ dirs[0]
    within = torch.cat([proj[:390][y[:390] == c] - proj[:390][y[:390] == c].mean() for c in (0, 1)])
    assert float(within.std()) == pytest.approx(1.0, rel=0.02)
    with pytest.raises(ValueError, match=r"exp_init=discriminant needs labelled targets of at least two"):
        discriminant_directions(x, torch.zeros(400, dtype=torch.long))


def test_discriminant_init_sets_eln_before_the_first_step(tmp_path: Path) -> None:
    """`model.exp_init=discriminant`: in a real Trainer run, ELN reads the discriminant direction of the
    batch's two emotions (opposite signs on the first weight, the other weights zero) before training."""
    batch = make_batch("expression", batch=4, seed=5) | {"emotion": torch.tensor([0, 4, 0, 4])}
    module = make_stage(
        "expression", with_d=False, **{"loss.vgg": 0.0, "exp_init": "discriminant", "exp_init_batches": 3}
    )
    seen: dict[str, torch.Tensor] = {}

    class Probe(L.Callback):
        def on_train_batch_start(
            self, trainer: L.Trainer, pl_module: L.LightningModule, *args: object
        ) -> None:
            with torch.no_grad():
                seen.setdefault("exp", module.generator.coefficients(batch["target"])["exp"])

    trainer(tmp_path, 1, callbacks=[Probe()]).fit(module, FixedBatchData(batch))
    first = seen["exp"][:, 0]
    assert float(first[0]) * float(first[1]) < 0 and float(first[0]) * float(first[2]) > 0
    assert float(seen["exp"][:, 1:].abs().max()) < 1e-4


def test_emotion_anchors_and_teacher_forcing() -> None:
    """`model.exp_anchor` (ours): anchors are scale x one-hot of the MEAD id (neutral and unlabelled: zero);
    the anchor term pulls the labelled targets' expression weights there; with `exp_teacher` the render of a
    labelled target uses its anchor, an unlabelled one its own weights."""
    from edtalk.nn.emotion import EMOTIONS
    from edtalk.stages.expression import emotion_anchors, expression_reconstruct

    labels = torch.tensor([EMOTIONS.index("happy"), EMOTIONS.index("neutral"), -1, EMOTIONS.index("sad")])
    a = emotion_anchors(labels, 10, 3.0)
    assert a is not None and a.shape == (4, 10)
    assert a[0, EMOTIONS.index("happy")] == 3.0 and a[3, EMOTIONS.index("sad")] == 3.0
    assert float(a[1:3].abs().sum()) == 0.0 and float(a.abs().sum()) == 6.0
    assert emotion_anchors(labels, 10, 0.0) is None
    with pytest.raises(ValueError, match=r"exp_dim >= 8"):
        emotion_anchors(labels, 6, 1.0)

    batch = make_batch("expression", batch=4, seed=2) | {"emotion": labels}
    module = make_stage(
        "expression", with_d=False, **{"loss.vgg": 0.0, "exp_anchor": 3.0, "exp_teacher": True}
    )
    out = module.generator_step(batch)
    gen = module.generator
    with torch.no_grad():
        alpha = gen.coefficients(batch["target"])
        expected = ((alpha["exp"] - a) ** 2)[[0, 1, 3]].sum(1).mean()
        assert torch.allclose(out.losses["anchor"], expected, rtol=1e-5)
        forced = torch.where((labels >= 0)[:, None], a, alpha["exp"])
        ref = expression_reconstruct(gen, batch["source"], batch["target"], False, lambda e: forced)["out"]
        assert torch.allclose(out.fake, ref, atol=1e-5)
        free = expression_reconstruct(gen, batch["source"], batch["target"], False)["out"]
        assert not torch.allclose(out.fake[0], free[0], atol=1e-4) and torch.allclose(
            out.fake[2], free[2], atol=1e-5
        )


def test_the_main_job_reads_the_expression_runs_anchor(tmp_path: Path) -> None:
    """The emotion-vector task renders the anchors when the expression run trained with them (its config)."""
    from edtalk.apps.tasks import expression_anchor

    assert expression_anchor(None) == 0.0 and expression_anchor(tmp_path) == 0.0  # no run / no config
    (tmp_path / "config.yaml").write_text("model:\n  exp_anchor: 3.0\n")
    assert expression_anchor(tmp_path) == 3.0
    (tmp_path / "config.yaml").write_text("model:\n  loss:\n    l1: 1.0\n")
    assert expression_anchor(tmp_path) == 0.0


def test_a_stage_without_an_emotion_read_refuses_the_weight() -> None:
    with pytest.raises(ValueError, match=r"mouth_pose stage has no emotion read.*model\.loss\.emotion=0"):
        make_stage("mouth_pose", with_d=False, **{"loss.vgg": 0.0, "loss.emotion": 1.0})


def test_pixel_critic_trains_on_real_frames_and_the_generator_on_renders() -> None:
    """`loss.emotion_pixels` (ours): the critic's parameters get gradient only from the real frames, the
    generator only from the renders (the critic held); the real frames' gradient never reaches G."""
    from edtalk.losses import PixelEmotionCritic, pixel_emotion_terms

    torch.manual_seed(0)
    critic = PixelEmotionCritic(8, width=8)
    real = torch.randn(4, 3, 32, 32)
    labels = torch.tensor([0, 4, 5, -1])
    fake = torch.randn(4, 3, 32, 32, requires_grad=True)
    emotion_cross_entropy(critic(real), labels).backward()
    only_real = [p.grad.clone() for p in critic.parameters()]  # type: ignore[union-attr]
    critic.zero_grad()
    pixel_emotion_terms(critic, real, labels, fake, labels).backward()
    for g, p in zip(only_real, critic.parameters(), strict=True):
        assert torch.equal(g, p.grad)  # the render term adds nothing to the critic
    assert fake.grad is not None and float(fake.grad.abs().sum()) > 0
    assert float(fake.grad[3].abs().sum()) == 0.0  # unlabelled: no emotion asked of it


def test_expression_stage_critic_learns_the_labels(tmp_path: Path) -> None:
    """A real Trainer run on a fixed labelled batch with `loss.emotion_pixels`: the critic is in the G
    optimiser at `model.critic_lr`, and the term (critic on real + renders) falls (head-room: any seed)."""
    batch = make_batch("expression", batch=4, seed=1)
    batch["emotion"] = torch.tensor([0, 4, 5, 6])
    module = make_stage(
        "expression", with_d=False, **{"loss.vgg": 0.0, "loss.emotion_pixels": 1.0, "critic_lr": 3e-3}
    )
    assert module.emotion_critic is not None  # type: ignore[attr-defined]
    rec = LossRecorder()
    trainer(tmp_path, 40, callbacks=[rec]).fit(module, FixedBatchData(batch))
    groups = module.optimizers().optimizer.param_groups  # type: ignore[union-attr]
    assert len(groups) == 2 and groups[1]["lr"] == pytest.approx(3e-3)
    ce = [r["train/emotion_pixels"] for r in rec.rows]
    assert ce[0] > 2.0 and min(ce[-5:]) < 0.5 * ce[0], ce


def test_pixel_critic_without_labels_names_its_key() -> None:
    batch = make_batch("expression", batch=2)
    del batch["emotion"]
    module = make_stage("expression", with_d=False, **{"loss.vgg": 0.0, "loss.emotion_pixels": 1.0})
    with pytest.raises(ValueError, match=r"model\.loss\.emotion_pixels"):
        module.generator_step(batch)
