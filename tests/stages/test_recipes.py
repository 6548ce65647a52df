"""The training recipes of the original trainers, asserted rule by rule (docs/recipes.md).

Stage 1 -> 2 hand-off with fresh heads/bank, the mouth_pose four-pair loss sums, the expression objective's
defaults, the audio2mouth recipe (Wav2Lip encoder, frozen with moving BatchNorm statistics), schedules.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from edtalk.config import GeneratorConfig
from edtalk.nn.generator import Generator
from edtalk.stages.mouth_pose import MouthPoseStage, cross_reconstruct
from edtalk.train import compose
from edtalk.weights.handoff import MOUTH_POSE_HEADS
from tests.stages.helpers import make_batch, make_stage


# -- stage 1 -> stage 2 ---------------------------------------------------------------------------------
def _is_head(key: str) -> bool:
    return any(re.search(p, key) for p in MOUTH_POSE_HEADS)


def _lightning_file(tmp_path: Path, gen: Generator, stage: str) -> Path:
    """A checkpoint in the layout our stages write (generator. prefix + checkpoint["edtalk"])."""
    path = tmp_path / f"{stage}.ckpt"
    sd = {f"generator.{k}": v.clone() for k, v in gen.state_dict().items()}
    torch.save({"state_dict": sd, "edtalk": {"stage": stage, "generator": gen.cfg.to_dict()}}, path)
    return path


def _mouth_pose(init: Path, seed: int, *extra: str) -> Generator:
    cfg = compose(
        "mouth_pose",
        [f"init_from={init}", "discriminator.enabled=false", "model.loss.vgg=0", *extra],
        debug=True,
    )
    torch.manual_seed(seed)
    return MouthPoseStage.build(cfg).generator


def _stage1(
    tmp_path: Path, stage: str = "reconstruct"
) -> tuple[Path, dict[str, torch.Tensor], GeneratorConfig]:
    cfg = compose("mouth_pose", [], debug=True)
    gcfg = GeneratorConfig.from_dict(dict(cfg.generator))
    torch.manual_seed(1234)
    stage1 = Generator(gcfg)
    with torch.no_grad():  # a "trained" stage 1: every tensor moved away from any init
        for p in stage1.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return _lightning_file(tmp_path, stage1, stage), stage1.state_dict(), gcfg


def test_handoff_gives_fresh_heads_and_bank_and_copies_encoder_decoder(tmp_path: Path) -> None:
    path, stage1, gcfg = _stage1(tmp_path)
    seed = 7
    got = _mouth_pose(path, seed).state_dict()
    torch.manual_seed(seed)
    fresh = Generator(gcfg).state_dict()
    heads = [k for k in got if _is_head(k)]
    assert {k.split(".")[1] for k in heads} >= {"lip_fc", "pose_fc", "mouth_pose"}
    for k, v in got.items():
        if _is_head(k):
            assert torch.equal(v, fresh[k]), k  # a fresh init under the same seed
            assert not torch.equal(v, stage1[k]), k
        else:
            assert torch.equal(v, stage1[k]), k  # encoder, motion MLP, decoder: bit-exact copies
    assert any(k.startswith("encoder.") for k in got) and any(k.startswith("synthesis.") for k in got)
    assert any(k.startswith("navigator.fc.") for k in got)  # the shared motion MLP comes from stage 1


def test_handoff_keep_option_and_mouth_pose_files_keep_heads(tmp_path: Path) -> None:
    path, stage1, _ = _stage1(tmp_path)
    kept = _mouth_pose(path, 7, "model.fresh_heads=false").state_dict()
    assert all(torch.equal(v, stage1[k]) for k, v in kept.items())
    (tmp_path / "mp").mkdir()
    resumed_path, mp, _ = _stage1(tmp_path / "mp", "mouth_pose")
    cont = _mouth_pose(resumed_path, 7).state_dict()  # continuing a mouth_pose run keeps its heads
    assert all(torch.equal(v, mp[k]) for k, v in cont.items())


def test_reconstruct_from_scratch_warns_where_to_get_vox(tmp_path: Path) -> None:
    from edtalk.stages.reconstruct import ReconstructStage

    cfg = compose("reconstruct", ["discriminator.enabled=false", "model.loss.vgg=0"], debug=True)
    assert cfg.init_from is None
    with pytest.warns(UserWarning, match=r"vox\.pt.*github\.com/wyhsirius/LIA"):
        ReconstructStage.build(cfg)


# -- mouth_pose loss balance ------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 3])
def test_mouth_pose_reconstruction_is_the_sum_of_four_pair_means(seed: int) -> None:
    stage = make_stage("mouth_pose", with_d=False)
    batch = make_batch("mouth_pose", batch=2, seed=seed)
    torch.manual_seed(seed)
    losses = stage.generator_step(batch).losses
    with torch.no_grad():
        r = cross_reconstruct(stage.generator, batch)
        pairs = list(zip(r["out"].chunk(4), r["target"].chunk(4)))  # self a, self b, cross a, cross b
        assert stage.perceptual is not None
        l1 = [(o - t).abs().mean() for o, t in pairs]
        vgg = [stage.perceptual(o, t) for o, t in pairs]
    assert len({round(float(v), 6) for v in l1}) == 4  # four different pair terms
    torch.testing.assert_close(losses["l1"].detach(), sum(l1), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(losses["vgg"].detach(), sum(vgg), rtol=1e-4, atol=1e-5)
    mean = make_stage("mouth_pose", with_d=False, pair_losses="mean").generator_step(batch).losses
    torch.testing.assert_close(mean["l1"].detach(), sum(l1) / 4, rtol=1e-5, atol=1e-6)


# -- audio2mouth: Wav2Lip encoder, frozen with moving BatchNorm statistics, frozen-D GAN term ----------
FULL_AUDIO = (32, 64, 128, 256, 512)


def _randomised(net: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every tensor random, BatchNorm running statistics included (a stand-in for trained weights)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for k, v in net.state_dict().items():
            if v.is_floating_point():
                v.copy_(
                    torch.rand(v.shape, generator=g) + 0.5
                    if "running_var" in k
                    else torch.randn(v.shape, generator=g)
                )
    return net


def _wav2lip_file(path: Path, channels: tuple[int, ...], seed: int, prefix: str = "module.") -> Path:
    """A file in the Wav2Lip generator checkpoint layout: top-level state_dict (+ optimizer, steps), keys
    `module.audio_encoder.*` next to face encoder/decoder keys the loader must ignore."""
    from edtalk.nn.audio2lip import Audio2Lip

    ref = _randomised(Audio2Lip(20, channels), seed)
    sd = {f"{prefix}audio_encoder.{k}": v.clone() for k, v in ref.audio_encoder.state_dict().items()}
    sd[f"{prefix}face_encoder_blocks.0.0.conv_block.0.weight"] = torch.randn(16, 6, 7, 7)
    sd[f"{prefix}output_block.1.weight"] = torch.randn(3, 32, 1, 1)
    torch.save({"state_dict": sd, "optimizer": {}, "global_step": 1000, "global_epoch": 3}, path)
    return path


@pytest.mark.parametrize("prefix", ["module.", ""])
def test_wav2lip_file_loads_into_the_audio_encoder_and_nothing_else(tmp_path: Path, prefix: str) -> None:
    from edtalk.nn.audio2lip import Audio2Lip
    from edtalk.stages.audio2mouth import load_wav2lip_audio_encoder

    path = _wav2lip_file(tmp_path / "wav2lip.pth", FULL_AUDIO, seed=5, prefix=prefix)
    file_sd = torch.load(path, weights_only=True)["state_dict"]
    torch.manual_seed(0)
    net = Audio2Lip(20, FULL_AUDIO)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    load_wav2lip_audio_encoder(net, path)
    after = net.state_dict()
    for k, v in after.items():
        if k.startswith("audio_encoder."):
            assert torch.equal(v, file_sd[prefix + k]), k  # every encoder tensor, BN statistics included
            if v.is_floating_point():
                assert not torch.equal(v, before[k]), k
        else:
            assert torch.equal(v, before[k]), k  # mapping untouched
    assert any(k.startswith("mapping.") for k in after)


def test_wav2lip_loader_refuses_wrong_files(tmp_path: Path) -> None:
    from edtalk.nn.audio2lip import Audio2Lip
    from edtalk.stages.audio2mouth import load_wav2lip_audio_encoder
    from edtalk.weights import CheckpointError

    net = Audio2Lip(20, FULL_AUDIO)
    tiny = _wav2lip_file(tmp_path / "tiny.pth", (4, 8, 16, 32, 64), seed=1)
    with pytest.raises(CheckpointError, match=r"shape mismatch.*model\.width=1\.0"):
        load_wav2lip_audio_encoder(net, tiny)
    torch.save({"audio2lip": net.state_dict()}, tmp_path / "a2l.pt")
    with pytest.raises(CheckpointError, match="top-level key 'state_dict'"):
        load_wav2lip_audio_encoder(net, tmp_path / "a2l.pt")
    torch.save({"state_dict": {"module.face_encoder.0.weight": torch.zeros(1)}}, tmp_path / "expert.pth")
    with pytest.raises(CheckpointError, match=r"lacks entry 'audio_encoder.*wav2lip"):
        load_wav2lip_audio_encoder(net, tmp_path / "expert.pth")
    partial = torch.load(tiny, weights_only=True)
    partial["state_dict"].pop("module.audio_encoder.3.conv_block.1.running_mean")
    torch.save(partial, tmp_path / "partial.pth")
    small = Audio2Lip(20, (4, 8, 16, 32, 64))
    with pytest.raises(CheckpointError, match="missing"):
        load_wav2lip_audio_encoder(small, tmp_path / "partial.pth")


def test_wav2lip_is_a_registered_weight_kind(tmp_path: Path) -> None:
    """`edtalk weights inspect PATH --kind wav2lip` reads the layout strictly: exit 0, widths inferred."""
    from edtalk import weights
    from edtalk.cli import main as cli

    path = _wav2lip_file(tmp_path / "wav2lip.pth", FULL_AUDIO, seed=4)
    assert cli(["weights", "inspect", str(path), "--kind", "wav2lip"]) == 0
    assert weights.inspect(path)["kind"] == "wav2lip"  # told apart from the SyncNet expert without --kind
    report = weights.inspect(path, "wav2lip")
    assert report["loads"] and report["kind"] == "wav2lip" and report["source"] == "official"
    assert tuple(report["config"]["channels"]) == FULL_AUDIO
    assert (
        report["n_tensors"] == len(torch.load(path, weights_only=True)["state_dict"]) - 2
    )  # face parts dropped
    tiny = _wav2lip_file(tmp_path / "tiny.pth", (4, 8, 16, 32, 64), seed=4)
    assert tuple(weights.inspect(tiny, "wav2lip")["config"]["channels"]) == (4, 8, 16, 32, 64)
    broken = torch.load(path, weights_only=True)
    broken["state_dict"]["module.audio_encoder.0.conv_block.0.weight"] = torch.zeros(32, 1, 5, 5)
    torch.save(broken, tmp_path / "broken.pth")
    assert cli(["weights", "inspect", str(tmp_path / "broken.pth"), "--kind", "wav2lip"]) != 0
    bad = weights.inspect(tmp_path / "broken.pth", "wav2lip")
    assert not bad["loads"] and "audio_encoder.0.conv_block.0.weight" in bad["reason"]


def _generator_file(tmp_path: Path, cfg) -> Path:  # type: ignore[no-untyped-def]
    """A mouth_pose-stage checkpoint of the debug size, discriminator included."""
    from edtalk.stages.base import build_discriminator

    torch.manual_seed(3)
    gen = Generator(GeneratorConfig.from_dict(dict(cfg.generator)))
    disc = build_discriminator(cfg)
    path = _lightning_file(tmp_path, gen, "mouth_pose")
    obj = torch.load(path, weights_only=True)
    obj["state_dict"].update({f"discriminator.{k}": v for k, v in disc.state_dict().items()})
    torch.save(obj, path)
    return path


def test_audio2mouth_builds_the_upstream_recipe(tmp_path: Path) -> None:
    from edtalk.stages.audio2mouth import Audio2MouthStage

    w2l = _wav2lip_file(tmp_path / "wav2lip.pth", FULL_AUDIO, seed=5)
    base = compose("audio2mouth", [], debug=True)
    gen_path = _generator_file(tmp_path, base)
    over = [
        f"init_from={gen_path}",
        f"model.audio_encoder_init={w2l}",
        "model.width=1.0",
        "model.loss.sync=0",
        "model.loss.vgg=0",
    ]
    stage = Audio2MouthStage.build(compose("audio2mouth", over, debug=True))
    trained = {n for n, p in stage.net.named_parameters() if p.requires_grad}
    assert trained == {"mapping.weight", "mapping.bias"}
    file_sd = torch.load(w2l, weights_only=True)["state_dict"]
    assert all(
        torch.equal(v, file_sd[f"module.audio_encoder.{k}"])
        for k, v in stage.net.audio_encoder.state_dict().items()
    )
    opt = stage.configure_optimizers()
    assert isinstance(opt, torch.optim.Adam)
    assert (
        opt.param_groups[0]["betas"] == (0.0, pytest.approx(0.99 ** (4 / 5)))
        and opt.param_groups[0]["lr"] == 0.0016
    )
    assert stage.discriminator is not None and not any(
        p.requires_grad for p in stage.discriminator.parameters()
    )
    disc_file = torch.load(gen_path, weights_only=True)["state_dict"]
    assert all(
        torch.equal(v, disc_file[f"discriminator.{k}"]) for k, v in stage.discriminator.state_dict().items()
    )


def test_frozen_audio_encoder_keeps_its_bytes_while_batchnorm_statistics_move(tmp_path: Path) -> None:
    from edtalk.nn.audio2lip import Audio2Lip
    from edtalk.nn.discriminator import Discriminator
    from edtalk.stages.audio2mouth import Audio2MouthConfig, Audio2MouthStage, load_wav2lip_audio_encoder
    from edtalk.stages.params import fingerprint
    from tests.stages.helpers import FixedBatchData, LossRecorder, trainer
    from tests.stages.test_audio_stages import talking_batch

    channels = (4, 8, 16, 32, 64)
    w2l = _wav2lip_file(tmp_path / "wav2lip.pth", channels, seed=2)
    torch.manual_seed(0)
    net = Audio2Lip(20, channels)
    load_wav2lip_audio_encoder(net, w2l)
    cfg = Audio2MouthConfig(
        width=0.125, audio_encoder_init=str(w2l), samples_every_n_steps=0, diagnostics_every_n_steps=0
    )
    cfg.loss.vgg = cfg.loss.sync = 0.0
    cfg.optim.lr, cfg.optim.betas = 1e-2, [0.0, 0.99 ** (4 / 5)]
    disc = Discriminator(64, 0.125, 16)
    gen = Generator(GeneratorConfig.tiny("lip_pose"))
    stage = Audio2MouthStage(
        net, {"mouth_dim": 20, "channels": list(channels)}, gen, None, None, cfg, None, disc
    )
    enc_names = [n for n, _ in net.audio_encoder.named_parameters()]
    enc0 = fingerprint(net.audio_encoder, enc_names)
    d0 = fingerprint(disc, [n for n, _ in disc.named_parameters()])
    stats0 = {k: v.clone() for k, v in net.audio_encoder.state_dict().items() if "running_" in k}
    map0 = net.mapping.weight.detach().clone()
    rec = LossRecorder()
    trainer(tmp_path, 4, callbacks=[rec], log_every_n_steps=1).fit(
        stage, datamodule=FixedBatchData(talking_batch(2, 5))
    )
    assert fingerprint(net.audio_encoder, enc_names) == enc0  # frozen weights: byte-identical
    assert fingerprint(disc, list(d0)) == d0  # the discriminator is never updated
    stats = net.audio_encoder.state_dict()
    moved = [k for k, v in stats0.items() if not torch.equal(v, stats[k])]
    assert len(moved) == len(stats0)  # every BatchNorm running mean/var moved (train-mode BN)
    assert not torch.equal(net.mapping.weight.detach(), map0)  # the mapping trains
    assert all(torch.isfinite(torch.tensor(r["train/gan"])) for r in rec.rows if "train/gan" in r)
    assert any("train/gan" in r for r in rec.rows)


# -- expression objective ----------------------------------------------------------------------------
def test_expression_objective_is_plain_by_default_and_extra_terms_are_options() -> None:
    stage = make_stage("expression", with_d=False)
    batch = make_batch("expression", batch=2, seed=1)
    assert set(stage.generator_step(batch).losses) == {"l1", "vgg"}  # + GAN when D is there
    extra = make_stage("expression", with_d=False, **{"loss.complementary": 1.0, "loss.decorrelation": 0.1})
    terms = extra.generator_step(batch).losses
    assert set(terms) == {"l1", "vgg", "complementary", "decorrelation"}
    assert all(torch.isfinite(v) for v in terms.values())


# -- DDP learning-rate policy -------------------------------------------------------------------------
@pytest.mark.parametrize(("flag", "factor"), [(False, 1.0), (True, 4.0)])
def test_scale_lr_with_world_size_policy(flag: bool, factor: float) -> None:
    """Off (default): the original's per-GPU learning rates whatever the world size; on: x world size."""
    from types import SimpleNamespace

    stage = make_stage("mouth_pose", **{"optim.scale_lr_with_world_size": flag})
    stage._trainer = SimpleNamespace(world_size=4)  # type: ignore[assignment]  # only world_size is read
    g_opt, d_opt = stage.configure_optimizers()
    assert g_opt.param_groups[0]["lr"] == pytest.approx(factor * 0.0016)
    assert d_opt.param_groups[0]["lr"] == pytest.approx(factor * 0.002 * 16 / 17)
    stage._trainer = None  # type: ignore[assignment]
    assert stage.configure_optimizers()[0].param_groups[0]["lr"] == pytest.approx(
        0.0016
    )  # no trainer: 1 process


# -- ablation switches --------------------------------------------------------------------------------
def test_no_orthogonality_uses_the_plain_banks_and_is_saved_with_the_generator() -> None:
    from edtalk.stages.expression import ExpressionStage

    stage = ExpressionStage.build(
        compose("expression_no_orthogonality", ["model.loss.vgg=0", "init_from=null"], debug=True)
    )
    gen = stage.generator
    assert gen.cfg.orthogonal_banks is False
    w = torch.cat([gen.banks.mouth_pose, gen.banks.expression], 1)
    assert torch.equal(gen.basis(), w)
    assert not torch.allclose(w.t() @ w, torch.eye(w.shape[1]), atol=1e-2)
    again = Generator(GeneratorConfig.from_dict(gen.cfg.to_dict()))  # what a checkpoint restores
    assert again.cfg.orthogonal_banks is False
    default = make_stage("expression").generator.basis()
    torch.testing.assert_close(default.t() @ default, torch.eye(default.shape[1]), atol=1e-5, rtol=0)


def test_no_eem_leaves_the_decoder_features_unmodulated() -> None:
    from edtalk.stages.expression import ExpressionStage, expression_reconstruct

    cfg = compose("expression_no_eem", ["model.loss.vgg=0", "init_from=null"], debug=True)
    assert cfg.model.ablation.no_eem is True and cfg.model.ablation.no_orthogonality is False
    batch = make_batch("expression", batch=2, seed=2)

    def outputs(gen: Generator) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            before = expression_reconstruct(gen, batch["source"], batch["target"], False)["out"]
            for p in gen.synthesis.fineadainresblock.parameters():
                p.add_(0.5)
            return before, expression_reconstruct(gen, batch["source"], batch["target"], False)["out"]

    ablated = ExpressionStage.build(cfg).generator
    assert ablated.cfg.eem is False
    a, b = outputs(ablated)
    assert torch.equal(a, b)  # EEM has no effect on the render
    full = make_stage("expression").generator
    a, b = outputs(full)
    assert not torch.allclose(a, b)  # ... while it modulates the full model's
    # the expression latent still moves the render through the motion latent
    with torch.no_grad():
        enc = ablated.encode(batch["source"])
        alpha = ablated.coefficients(batch["target"])
        w0, _ = ablated.latent(enc.w_a, {k: v for k, v in alpha.items() if k != "exp"})
        w1, e = ablated.latent(enc.w_a, alpha)
        assert e is not None and not torch.allclose(ablated.render(enc, w0), ablated.render(enc, w1, e))


# -- schedules and stated defaults ------------------------------------------------------------------
def test_experiment_files_carry_the_original_schedules_and_debug_keeps_them_small() -> None:
    expected = {  # experiment: (max_steps, batch per process, G lr)
        "reconstruct": (284200, 12, 0.0016),
        "mouth_pose": (4000, 4, 0.0016),
        "expression": (24000, 4, 0.0016),
    }
    for name, (steps, batch, lr) in expected.items():
        cfg = compose(name)
        assert (cfg.trainer.max_steps, cfg.data.batch_size) == (steps, batch), name
        assert cfg.model.optim.g_lr == pytest.approx(lr) and cfg.model.optim.g_betas[0] == 0.0, name
        small = compose(name, debug=True)
        assert small.trainer.max_steps <= 10 and small.data.batch_size <= 2, name
    a2m = compose("audio2mouth")
    assert a2m.model.optim.lr == 0.0016 and a2m.model.optim.betas == [0.0, pytest.approx(0.99 ** (4 / 5))]
    assert a2m.model.loss.gan == 1.0 and a2m.data.batch_size == 4
    ft = compose("finetune", ["init_from=x.pt"])
    assert list(ft.model.trainable) == ["*"] and ft.data.batch_size == 32  # all of G, batch 32 (original)
    assert compose("mouth_pose").model.pair_losses == "sum" and compose("mouth_pose").model.fresh_heads
    assert (
        compose("expression").data.pairing == "neutral" and compose("reconstruct").data.pairing == "neutral"
    )
