"""Checkpoint hand-off between stages: strict loads, the lip_pose -> full upgrade, clear errors, and the
whole chain reconstruct -> mouth_pose -> expression -> extract-coefficients on the built-in data."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from edtalk.cli import main as cli
from edtalk.config import GeneratorConfig
from edtalk.nn.generator import Generator
from edtalk.weights import CheckpointError, save_checkpoint
from edtalk.weights.handoff import EXPRESSION_KEYS, init_generator
from tests.stages.helpers import smooth_images


def _saved(tmp_path: Path, variant: str, **cfg: object) -> tuple[Path, Generator]:
    gen = Generator(GeneratorConfig(**{**GeneratorConfig.tiny(variant).to_dict(), **cfg}))  # type: ignore[arg-type]
    return save_checkpoint(gen, "generator", tmp_path / f"{variant}.pt"), gen


def test_lip_pose_initialises_full_generator_strictly(tmp_path: Path) -> None:
    path, lip = _saved(tmp_path, "lip_pose")
    full = Generator(GeneratorConfig.tiny("full"))
    fresh = {k: v.clone() for k, v in full.state_dict().items()}
    init_generator(full, path)
    sd, lip_sd = full.state_dict(), lip.state_dict()
    for k, v in sd.items():
        if k in lip_sd:
            assert torch.equal(v, lip_sd[k]), k
        else:
            assert any(__import__("re").search(p, k) for p in EXPRESSION_KEYS), k
            assert torch.equal(v, fresh[k]), k
    x = smooth_images(2, 0)
    with torch.no_grad():  # without an expression latent the full model renders exactly like the lip-pose one
        q_full, q_lip = full.basis(), lip.basis()
        assert torch.allclose(q_full[:, :26], q_lip, atol=1e-6)
        enc_f, enc_l = full.encode(x), lip.encode(x)
        alpha = lip.coefficients(x.flip(0))
        out_f = full.render(enc_f, full.latent(enc_f.w_a, alpha, q_full)[0])
        out_l = lip.render(enc_l, lip.latent(enc_l.w_a, alpha, q_lip)[0])
    assert (out_f - out_l).abs().max() <= 1e-4 * out_l.abs().max(), (out_f - out_l).abs().max()


def test_handoff_errors_name_the_problem(tmp_path: Path) -> None:
    full_path, _ = _saved(tmp_path, "full")
    with pytest.raises(ValueError, match=r"full \(expression\) generator.*generator.variant=full"):
        init_generator(Generator(GeneratorConfig.tiny("lip_pose")), full_path)
    other, _ = _saved(tmp_path / "o", "lip_pose", style_dim=40)
    with pytest.raises(ValueError, match=r"style_dim.*generator.style_dim=40"):
        init_generator(Generator(GeneratorConfig.tiny("lip_pose")), other)
    bad = tmp_path / "bad.ckpt"
    gen = Generator(GeneratorConfig.tiny("lip_pose"))
    sd = {f"generator.{k}": v for k, v in gen.state_dict().items()} | {
        "generator.extra.weight": torch.zeros(1)
    }
    torch.save({"edtalk": {"generator": gen.cfg.to_dict()}, "state_dict": sd}, bad)
    with pytest.raises(CheckpointError, match=r"unexpected \[.extra.weight.\]"):
        init_generator(Generator(GeneratorConfig.tiny("lip_pose")), bad)


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the built-in shards (sidecars written here must not leak into other tests)."""
    from datamodules.synthetic import ensure_builtin

    dst = tmp_path_factory.mktemp("builtin") / "shards"
    shutil.copytree(ensure_builtin(), dst)
    return dst


def _fit(experiment: str, root: Path, shards: Path, *extra: str) -> Path:
    from edtalk.train import compose, fit

    steps = ["trainer.max_steps=2", "trainer.val_check_interval=2", "checkpoint.every_n_steps=2"]
    cfg = compose(experiment, [f"run.root={root}", f"data.root={shards}", *steps, *extra], debug=True)
    run_dir = fit(cfg)
    return run_dir / "checkpoints" / "last.ckpt"


def test_chain_reconstruct_mouth_pose_expression_extract(tmp_path: Path, shards: Path) -> None:
    from datamodules import AudioDataModule

    rec = _fit("reconstruct", tmp_path, shards)
    mp = _fit("mouth_pose", tmp_path, shards, f"init_from={rec}")
    exp = _fit("expression", tmp_path, shards, f"init_from={mp}")
    before = torch.load(mp, map_location="cpu", weights_only=True)["state_dict"]
    after = torch.load(exp, map_location="cpu", weights_only=True)["state_dict"]
    frozen = [
        k for k in before if k.startswith("generator.") and "banks" not in k and "synthesis.fine" not in k
    ]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)  # phase 1 leaves mouth/pose alone

    assert cli(["extract-coefficients", str(exp), "--shards", str(shards), "--splits", "test"]) == 0
    sidecars = sorted(shards.glob("test-*.tar.coeffs.npz"))
    assert sidecars
    data = np.load(sidecars[0])
    assert data["__dims__"].tolist() == [20, 6, 10]
    clips = [k for k in data.files if k != "__dims__"]
    assert clips and all(data[k].shape[1] == 36 and data[k].dtype == np.float32 for k in clips)
    assert np.isfinite(data[clips[0]]).all() and data[clips[0]].std(0).max() > 0

    dm = AudioDataModule(shards, image_size=64, batch_size=2, num_workers=0, coefficients=True)
    dm.setup("validate")
    batch = next(iter(dm.val_dataloader()))
    t = batch["frames"].shape[1]
    assert (
        batch["mouth"].shape == (2, t, 20)
        and batch["pose"].shape == (2, t, 6)
        and batch["exp"].shape == (2, t, 10)
    )
