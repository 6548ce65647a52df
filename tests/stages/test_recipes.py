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
from edtalk.stages.handoff import MOUTH_POSE_HEADS
from edtalk.stages.mouth_pose import MouthPoseStage, cross_reconstruct
from edtalk.train import compose
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
