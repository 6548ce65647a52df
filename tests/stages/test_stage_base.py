"""The shared stage base (issue 13): one `EDTalkStage` under both families, the named one-step-per-G+D
shim, nested network + loss configs, and network files written before the loss weights left them."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch

from edtalk import weights
from edtalk.nn.audio2exp import Audio2Exp, Audio2ExpConfig
from edtalk.nn.audio2pose import Audio2Pose, Audio2PoseConfig
from edtalk.stages import STAGES, stage_class
from edtalk.stages.base import GANStage, step_without_counting
from edtalk.stages.stage import EDTalkStage, adam_betas, psnr
from edtalk.stages.supervised import SupervisedStage, tie_to_generator
from edtalk.train import compose
from tests.learn import seed_torch


def test_every_registered_stage_is_one_edtalk_stage_under_its_own_name() -> None:
    for name in STAGES:
        cls = stage_class(name)
        assert issubclass(cls, EDTalkStage), name
        assert issubclass(cls, GANStage) != issubclass(cls, SupervisedStage), name  # exactly one family
        assert cls.stage_name == name, f"{name} -> {cls.__name__}.stage_name {cls.stage_name!r}"


def test_psnr_of_known_errors() -> None:
    target = torch.zeros(2, 3, 3, 8, 8)  # B x T x 3 x H x W: one value per frame
    pred = target.clone()
    pred[:, 0] += 0.1  # MSE 0.01 -> 10 log10(4 / 0.01) = 26.0206 dB
    pred[:, 1] += 0.2  # MSE 0.04 -> 20.0000 dB
    pred[:, 2] += 5.0  # clamped to 1 first: MSE 1 -> 6.0206 dB
    expected = (26.0206 + 20.0 + 6.0206) / 3
    assert float(psnr(pred, target)) == pytest.approx(expected, abs=1e-3)
    assert float(psnr(pred[:, 0], target[:, 0])) == pytest.approx(26.0206, abs=1e-3)  # B x 3 x H x W
    assert float(psnr(target, target)) == pytest.approx(10 * torch.log10(torch.tensor(4e10)).item())


def test_adam_betas_name_the_key() -> None:
    assert adam_betas([0.0, 0.99]) == (0.0, 0.99)
    with pytest.raises(ValueError, match=r"model\.optim\.d_betas needs two values.*\[0\.9\]"):
        adam_betas([0.9], "model.optim.d_betas")


def test_the_step_shim_refuses_an_optimizer_without_the_hooks_it_relies_on() -> None:
    class NotLightning:
        def step(self) -> None:
            raise AssertionError("must not step")

    with pytest.raises(RuntimeError, match=r"constraints\.txt"):
        step_without_counting(NotLightning())


def test_lightning_bound_in_constraints() -> None:
    """The shim relies on private Lightning hooks: the installed version stays within the tested bound."""
    import lightning

    root = Path(__file__).resolve().parents[2]
    lines = [x.strip() for x in (root / "constraints.txt").read_text().splitlines()]
    assert "lightning>=2.4,<2.7" in lines
    major, minor = (int(x) for x in lightning.__version__.split(".")[:2])
    assert (2, 4) <= (major, minor) < (2, 7)


def test_frozen_guard_is_shared_and_names_what_changed() -> None:
    """Audio2mouth's frozen generator is guarded by the same base code as the GAN stages."""
    stage = SupervisedStage(torch.nn.Linear(2, 2), {}, SupervisedStage.Config())
    gen = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    assert stage.freeze_except(gen, ["1.*"], what="generator parameters") == ["1.weight", "1.bias"]
    assert stage.frozen_names == ["0.weight", "0.bias"] and not gen[0].weight.requires_grad
    stage.on_train_start()
    stage.verify_frozen()  # unchanged: silent
    with torch.no_grad():
        gen[0].bias[0] += 1e-7
    with pytest.raises(RuntimeError, match=r"frozen generator parameters changed.*0\.bias"):
        stage.verify_frozen()


# -- nested network + loss configs ------------------------------------------------------------------
def test_audio2pose_overrides_reach_the_network_and_the_loss(tmp_path: Path) -> None:
    cfg = compose(
        "audio2pose",
        [
            f"run.root={tmp_path}",
            "model.network.latent_dim=3",
            "model.network.hidden=64",
            "model.loss.kl=0.5",
        ],
        debug=True,
    )
    stage = stage_class("audio2pose").build(cfg)
    width = float(cfg.model.width)
    assert stage.net.cfg.latent_dim == 3 and stage.net.cfg.hidden == max(1, round(64 * width))
    assert stage.net.cfg.pose_dim == int(cfg.generator.pose_dim)
    assert "kl_weight" not in stage.net_config and stage.net_config["latent_dim"] == 3
    seed_torch()
    t = 6
    batch = {"mel": torch.randn(2, t, 1, 80, 16), "pose": torch.randn(2, t, 6)}
    torch.manual_seed(0)
    out = stage.compute(batch, train=True)
    expected = out["recon"] + 1.0 * out["velocity"] + 0.5 * out["kl"]
    torch.testing.assert_close(out["loss"], expected)
    assert float(out["kl"]) > 0  # the weight is visible in the total


def test_audio2exp_emotion_weight_is_a_stage_loss_weight(tmp_path: Path) -> None:
    cfg = compose("audio2exp", [f"run.root={tmp_path}", "model.loss.emotion=2.0"], debug=True)
    stage = stage_class("audio2exp").build(cfg)
    assert stage.cfg.loss.emotion == 2.0 and "emotion_weight" not in stage.net_config
    batch = {
        "mel": torch.randn(3, 4, 1, 80, 16),
        "exp": torch.randn(3, 4, 10),
        "emotion": torch.tensor([0, 3, 7]),
    }
    out = stage.compute(batch, train=True)
    torch.testing.assert_close(out["loss"], out["exp"] + 2.0 * out["emotion"])


def test_old_override_paths_fail_naming_the_key(tmp_path: Path) -> None:
    for old in ("model.kl_weight=0.1", "model.latent_dim=8", "model.hidden=8"):
        with pytest.raises(ValueError, match=old.split("=")[0].split(".")[1]):
            compose("audio2pose", [f"run.root={tmp_path}", old])


def test_network_size_follows_the_generator_and_contradictions_name_both() -> None:
    net = Audio2PoseConfig()
    assert tie_to_generator(net, "pose_dim", 8).pose_dim == 8  # default follows the generator
    assert tie_to_generator(dataclasses.replace(net, pose_dim=8), "pose_dim", 8).pose_dim == 8
    with pytest.raises(ValueError, match=r"model\.network\.pose_dim=7 but generator\.pose_dim=8"):
        tie_to_generator(dataclasses.replace(net, pose_dim=7), "pose_dim", 8)


@pytest.mark.parametrize(
    ("kind", "legacy"),
    [("audio2pose", {"kl_weight": 0.02, "velocity_weight": 2.0}), ("audio2exp", {"emotion_weight": 0.3})],
)
def test_network_files_with_the_old_loss_weights_still_load(tmp_path: Path, kind: str, legacy: dict) -> None:
    """Files written before the loss weights moved to `model.loss` carry them in the network config."""
    seed_torch()
    net = Audio2Pose(Audio2PoseConfig.tiny()) if kind == "audio2pose" else Audio2Exp(Audio2ExpConfig.tiny())
    old_config = net.cfg.to_dict() | legacy
    path = weights.save_checkpoint(net, kind, tmp_path / f"{kind}.pt", config=old_config)
    loaded = weights.load(path, kind)
    assert loaded.cfg == net.cfg
    sd = net.state_dict()
    assert all(torch.equal(v, sd[k]) for k, v in loaded.state_dict().items())
    with pytest.raises(ValueError, match="unknown"):  # other unknown keys stay errors
        type(net.cfg).from_dict(net.cfg.to_dict() | {"hiden": 3})


@pytest.mark.parametrize("stage", ["reconstruct", "mouth_pose", "expression"])
def test_mouth_region_term_needs_the_boxes_and_weighs_only_the_mouth(stage: str) -> None:
    from tests.stages.helpers import make_batch, make_stage

    module = make_stage(stage, with_d=False, **{"loss.mouth": 1.0, "loss.vgg": 0.0})
    batch = make_batch(stage)
    with pytest.raises(ValueError, match="mouth boxes"):
        module.generator_step(batch)
    box = torch.tensor([[16.0, 40.0, 48.0, 56.0]]).repeat(2, 1)
    names = ("box_a", "box_b") if stage == "mouth_pose" else ("target_box",)
    batch |= {name: box for name in names}
    losses = module.generator_step(batch).losses
    assert set(losses) >= {"l1", "mouth"} and torch.isfinite(losses["mouth"])
    module.generator.zero_grad()
    losses["mouth"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.generator.parameters())
    _, target = module.validation_pairs(module.generator, batch)
    val_boxes = module.target_boxes(batch)
    assert val_boxes is not None and val_boxes.shape == (target.shape[0], 4)  # validation weighs it too
    module.cfg.loss.mouth = 0.0
    assert "mouth" not in module.generator_step(batch).losses  # weight 0 (the recipe) skips it


def test_mouth_pose_decorrelation_term_reaches_both_heads() -> None:
    from tests.stages.helpers import make_batch, make_stage

    module = make_stage("mouth_pose", with_d=False, **{"loss.decorrelation": 1.0, "loss.vgg": 0.0})
    losses = module.generator_step(make_batch("mouth_pose", batch=4)).losses
    assert float(losses["decorrelation"]) > 0
    module.generator.zero_grad()
    losses["decorrelation"].backward()
    heads = {name: p.grad for name, p in module.generator.named_parameters() if "_fc." in name}
    for head in ("lip_fc", "pose_fc"):
        grads = [g for name, g in heads.items() if head in name and g is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads), head
    module.cfg.loss.decorrelation = 0.0
    assert "decorrelation" not in module.generator_step(make_batch("mouth_pose", batch=4)).losses


def test_mouth_pose_invariance_term_pairs_the_swapped_drivers() -> None:
    """The term is 0 when every driver's weights equal its unswapped partner's, and its gradient reaches
    both heads; weight 0 (the recipe) skips it."""
    from edtalk.losses import coefficient_invariance
    from tests.stages.helpers import make_batch, make_stage

    module = make_stage("mouth_pose", with_d=False, **{"loss.invariance": 1.0, "loss.vgg": 0.0})
    batch = make_batch("mouth_pose", batch=4)
    losses = module.generator_step(batch).losses
    assert float(losses["invariance"]) > 0
    module.generator.zero_grad()
    losses["invariance"].backward()
    for head in ("lip_fc", "pose_fc"):
        grads = [p.grad for name, p in module.generator.named_parameters() if f"{head}." in name]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), head
    same = dict(batch) | {"swap_ba": batch["target_a"], "swap_ab": batch["target_b"]}  # mouth pairs equal
    mouth_only = module.generator_step(same).losses["invariance"]
    both = dict(batch) | {
        "target_b": batch["target_a"],
        "swap_ab": batch["target_a"],
        "swap_ba": batch["target_a"],
    }
    assert float(module.generator_step(both).losses["invariance"]) < 1e-6  # every pairing equal
    with (
        torch.no_grad()
    ):  # by hand: mouth pairs (swap_ba, t_a), (swap_ab, t_b) are equal here, so only pose counts
        pose = module.generator.coefficients(torch.cat([batch["target_a"], batch["target_b"]]))["pose"]
        p_ta, p_tb = pose.chunk(2)
        expected = coefficient_invariance(torch.cat([p_tb, p_ta]), torch.cat([p_ta, p_tb]))
    assert float(mouth_only) > 0 and float(mouth_only) == pytest.approx(float(expected), rel=1e-4)
    module.cfg.loss.invariance = 0.0
    assert "invariance" not in module.generator_step(batch).losses


def test_mouth_pose_warp_invariance_pairs_each_target_with_its_warped_copy() -> None:
    """0 with every warp amplitude 0 (the warped frame is the frame), positive otherwise, its gradient
    reaches the mouth head; the pose head gets none from it (with `head_only` nothing but the mouth head
    does); weight 0 (the recipe) skips it."""
    from tests.stages.helpers import make_batch, make_stage

    module = make_stage("mouth_pose", with_d=False, **{"loss.warp_invariance": 1.0, "loss.vgg": 0.0})
    batch = make_batch("mouth_pose", batch=4)
    losses = module.generator_step(batch).losses
    assert float(losses["warp_invariance"]) > 0
    module.generator.zero_grad()
    losses["warp_invariance"].backward()
    grads = {
        head: [p.grad for name, p in module.generator.named_parameters() if f"{head}." in name]
        for head in ("lip_fc", "pose_fc")
    }
    assert any(g is not None and g.abs().sum() > 0 for g in grads["lip_fc"])
    assert all(g is None or g.abs().sum() == 0 for g in grads["pose_fc"])
    module.cfg.warp.head_only = True  # the mouth head alone: nothing before it gets the term's gradient
    module.generator.zero_grad()
    module.generator_step(batch).losses["warp_invariance"].backward()
    for name, p in module.generator.named_parameters():
        moved = p.grad is not None and bool(p.grad.abs().sum() > 0)
        assert moved == name.startswith("navigator.lip_fc."), name
    module.cfg.warp.roll = module.cfg.warp.scale = module.cfg.warp.shift = 0.0
    assert float(module.generator_step(batch).losses["warp_invariance"]) < 1e-6
    module.cfg.warp.head_only = False
    assert float(module.generator_step(batch).losses["warp_invariance"]) < 1e-6
    module.cfg.loss.warp_invariance = 0.0
    assert "warp_invariance" not in module.generator_step(batch).losses


def _landmark_term_stage(term: str, landmarks: str, width: int) -> tuple[Any, dict[str, torch.Tensor]]:
    """A mouth_pose stage with `loss.<term>` at 1 and a batch: first checked to refuse the step without
    `data.<landmarks>_landmarks`, then given random "<landmarks>_a" / "_b" of `width` numbers per target."""
    from tests.stages.helpers import make_batch, make_stage

    module = make_stage("mouth_pose", with_d=False, **{f"loss.{term}": 1.0, "loss.vgg": 0.0})
    batch = make_batch("mouth_pose", batch=4)
    with pytest.raises(ValueError, match=rf"data\.{landmarks}_landmarks: true"):
        module.generator_step(batch)
    gen = torch.Generator().manual_seed(0)
    batch |= {f"{landmarks}_{side}": torch.randn(4, width, generator=gen) for side in "ab"}
    return module, batch


def test_mouth_pose_leak_term_reads_the_rigid_landmarks_of_every_driver() -> None:
    """`model.loss.leak`: refused with a one-line fix without the landmarks; with them it is the in-batch
    `linear_leak` of the 4B drivers' mouth weights against [rigid_a, rigid_b, rigid_a, rigid_b] (swap_ab shows
    a's head), its gradient reaches the mouth head and not the pose head (with `leak_head_only` nothing but the
    mouth head); weight 0 skips it. `loss.pose_read` is 1 minus the same R² of the pose weights."""
    from edtalk.losses import linear_leak

    module, batch = _landmark_term_stage("leak", "rigid", 62)
    value = module.generator_step(batch).losses["leak"]
    with torch.no_grad():
        frames = torch.cat([batch["target_a"], batch["target_b"], batch["swap_ab"], batch["swap_ba"]])
        mouth = module.generator.coefficients(frames)["mouth"]
        rigid = torch.cat([batch["rigid_a"], batch["rigid_b"]]).repeat(2, 1)
    assert float(value.detach()) == pytest.approx(
        float(linear_leak(mouth, rigid, module.cfg.leak_ridge)), rel=1e-4
    )
    module.generator.zero_grad()
    value.backward()
    for head, moved in (("lip_fc", True), ("pose_fc", False)):
        grads = [p.grad for name, p in module.generator.named_parameters() if f"{head}." in name]
        assert any(g is not None and g.abs().sum() > 0 for g in grads) == moved, head
    module.cfg.leak_head_only = True  # the mouth head alone: nothing before it gets the term's gradient
    module.generator.zero_grad()
    module.generator_step(batch).losses["leak"].backward()
    for name, p in module.generator.named_parameters():
        moved = p.grad is not None and bool(p.grad.abs().sum() > 0)
        assert moved == name.startswith("navigator.lip_fc."), name
    module.cfg.loss.leak = 0.0
    assert "leak" not in module.generator_step(batch).losses
    module.cfg.loss.pose_read = (
        1.0  # 1 - the same R² for the pose weights: its gradient reaches the pose head
    )
    value = module.generator_step(batch).losses["pose_read"]
    with torch.no_grad():
        pose = module.generator.coefficients(frames)["pose"]
    assert float(value.detach()) == pytest.approx(
        1 - float(linear_leak(pose, rigid, module.cfg.leak_ridge)), rel=1e-4
    )
    module.generator.zero_grad()
    value.backward()
    grads = [p.grad for name, p in module.generator.named_parameters() if "pose_fc." in name]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_mouth_pose_mouth_read_term_asks_the_mouth_weights_for_the_lip_landmarks() -> None:
    """`model.loss.mouth_read`: refused with a one-line fix without the lip landmarks; with them it is 1 minus the
    in-batch `linear_leak` of the 4B drivers' mouth weights against [mouth_a, mouth_b, mouth_b, mouth_a] (swap_ab
    shows b's mouth), and its gradient reaches the mouth head, not the pose head."""
    from edtalk.losses import linear_leak

    module, batch = _landmark_term_stage("mouth_read", "mouth", 8)
    value = module.generator_step(batch).losses["mouth_read"]
    with torch.no_grad():
        frames = torch.cat([batch["target_a"], batch["target_b"], batch["swap_ab"], batch["swap_ba"]])
        mouth = module.generator.coefficients(frames)["mouth"]
        shape = torch.cat([batch["mouth_a"], batch["mouth_b"], batch["mouth_b"], batch["mouth_a"]])
    assert float(value.detach()) == pytest.approx(
        1 - float(linear_leak(mouth, shape, module.cfg.leak_ridge)), rel=1e-4
    )
    assert 0 < float(value.detach()) <= 1
    module.generator.zero_grad()
    value.backward()
    for head, moved in (("lip_fc", True), ("pose_fc", False)):
        grads = [p.grad for name, p in module.generator.named_parameters() if f"{head}." in name]
        assert any(g is not None and g.abs().sum() > 0 for g in grads) == moved, head
    module.cfg.loss.mouth_read = 0.0
    assert "mouth_read" not in module.generator_step(batch).losses


def test_expression_invariance_term_pairs_two_frames_of_the_target_clip() -> None:
    """0 when the second frame equals the target, equal to the by-hand ratio otherwise, its gradient
    reaches the expression head only; a batch without "target2" names the data option to set."""
    from edtalk.losses import coefficient_invariance
    from tests.stages.helpers import make_batch, make_stage

    module = make_stage("expression", with_d=False, **{"loss.invariance": 1.0, "loss.vgg": 0.0})
    batch = make_batch("expression", batch=4)
    target2 = torch.rand_like(batch["target"]) * 2 - 1
    losses = module.generator_step(batch | {"target2": target2}).losses
    with torch.no_grad():
        a1 = module.generator.coefficients(batch["target"])["exp"]
        a2 = module.generator.coefficients(target2)["exp"]
        expected = coefficient_invariance(a2, a1)
    assert float(losses["invariance"]) > 0
    assert float(losses["invariance"]) == pytest.approx(float(expected), rel=1e-4)
    module.generator.zero_grad()
    losses["invariance"].backward()
    grads = {n: p.grad for n, p in module.generator.named_parameters() if p.grad is not None}
    assert any("exp_fc." in n and g.abs().sum() > 0 for n, g in grads.items())
    assert not any(("lip_fc." in n or "pose_fc." in n) and g.abs().sum() > 0 for n, g in grads.items())
    same = module.generator_step(batch | {"target2": batch["target"]}).losses["invariance"]
    assert float(same) < 1e-6
    with pytest.raises(ValueError, match=r"data\.second_target=true"):
        module.generator_step(batch)
    module.cfg.loss.invariance = 0.0
    assert "invariance" not in module.generator_step(batch).losses


def test_fold_mouth_subspace_confines_the_mouth_weights_and_leaves_the_rest() -> None:
    """`model.mouth_subspace`'s fold: the mouth head's last layer maps into mean + span(basis); pose, keys and
    every other parameter stay."""
    from edtalk.stages.mouth_pose import fold_mouth_subspace
    from tests.stages.helpers import make_batch, make_stage

    seed_torch(3)
    gen = make_stage("mouth_pose", with_d=False).generator.eval()
    frames = make_batch("mouth_pose", batch=4)["target_a"]
    frames = torch.cat([frames, frames.flip(-1)])
    before = {k: v.clone() for k, v in gen.state_dict().items()}
    coef = gen.coefficients(frames)
    basis, _ = torch.linalg.qr(torch.randn(20, 3))
    mean = torch.randn(20)
    fold_mouth_subspace(gen, mean, basis)
    after = gen.coefficients(frames)
    assert torch.allclose(after["pose"], coef["pose"])
    off = (after["mouth"] - mean) - (after["mouth"] - mean) @ basis @ basis.T
    assert off.abs().max() < 1e-4 * (after["mouth"] - mean).abs().max()
    inside = mean + (coef["mouth"] - mean) @ basis @ basis.T  # the projection of the old weights
    assert torch.allclose(after["mouth"], inside, atol=1e-4)
    changed = [k for k, v in gen.state_dict().items() if not torch.equal(v, before[k])]
    assert set(gen.state_dict()) == set(before) and changed
    assert all(k.startswith("navigator.lip_fc.") for k in changed)
