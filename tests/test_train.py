"""Config composition (layers, unknown keys), run directories, and `edtalk fit --debug` + `ckpt_path=last`."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from edtalk.cli import main as cli
from edtalk.train import build_datamodule, compose


@pytest.fixture(autouse=True)
def _one_thread(one_thread: None) -> None:
    """Tiny models: one intra-op thread (`one_thread` in tests/conftest.py)."""


def test_layers_and_precedence() -> None:
    cfg = compose("expression", ["model.loss.decorrelation=0.5", "trainer.max_steps=7"], debug=True)
    assert cfg.stage == "expression" and cfg.experiment == "expression"
    assert cfg.generator.variant == "full" and cfg.generator.size == 64 and cfg.data.image_size == 64
    assert (
        cfg.model.loss.decorrelation == 0.5 and cfg.model.loss.complementary == 0.0
    )  # paper objective by default
    assert cfg.trainer.max_steps == 7 and cfg.model.perceptual.init == "random"
    assert list(cfg.model.trainable) == [
        "navigator.exp_fc.*",
        "banks.expression",
        "synthesis.fineadainresblock.*",
    ]
    full = compose("mouth_pose")
    assert full.generator.size == 256 and full.model.optim.g_lr == pytest.approx(0.0016)
    assert full.model.optim.d_betas[1] == pytest.approx(0.99 ** (16 / 17))


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["model.loss.vgq=1"], "model.loss.vgq"),
        (["trainer.devicez=2"], "trainer.devicez"),
        (["foo=1"], "foo"),
    ],
)
def test_unknown_override_names_the_key(overrides: list[str], key: str) -> None:
    with pytest.raises(ValueError, match=rf"unknown config key '{key}' in command-line overrides"):
        compose("reconstruct", overrides)


def test_unknown_key_in_experiment_file_and_data(tmp_path: Path) -> None:
    bad = tmp_path / "mine.yaml"
    bad.write_text(
        "stage: reconstruct\nmodel:\n  los:\n    vgg: 2\ndata:\n  module: datamodules.PairDataModule\n"
    )
    with pytest.raises(ValueError, match=r"unknown config key 'model\.los' in .*mine\.yaml"):
        compose(str(bad))
    cfg = compose("reconstruct", debug=True)
    OmegaConf.set_struct(cfg, False)
    cfg.data.colour = 1
    with pytest.raises(ValueError, match=r"data\.colour.*PairDataModule"):
        build_datamodule(cfg)
    with pytest.raises(FileNotFoundError, match=r"experiment 'nope' not found.*reconstruct"):
        compose("nope")


def test_print_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["fit", "mouth_pose", "--debug", "--print-config", "model.loss.latent=2"]) == 0
    out = OmegaConf.create(capsys.readouterr().out)
    assert out.stage == "mouth_pose" and out.model.loss.latent == 2 and out.requires == "reconstruct"


def test_fit_debug_then_resume_last(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    args = [
        f"run.root={tmp_path}",
        "trainer.val_check_interval=2",
        "checkpoint.every_n_steps=2",
        "logger.wandb=true",
    ]
    assert cli(["fit", "reconstruct", "--debug", "trainer.max_steps=2", *args]) == 0
    run = tmp_path / "reconstruct" / "debug"
    run_id = (run / "wandb_id.txt").read_text()
    saved = OmegaConf.load(run / "config.yaml")
    assert saved.trainer.max_steps == 2 and saved.generator.size == 64
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 2 and ckpt["edtalk"]["config"]["stage"] == "reconstruct"
    assert (run / "checkpoints" / "best.ckpt").is_file() and any((run / "wandb").glob(f"*{run_id}*"))

    assert cli(["fit", "reconstruct", "--debug", "trainer.max_steps=4", "ckpt_path=last", *args]) == 0
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 4 and (run / "wandb_id.txt").read_text() == run_id
    steps = []
    for version in ("version_0", "version_1"):  # one CSV per session
        with (run / "logs" / version / "metrics.csv").open() as f:
            steps.append([int(r["step"]) for r in csv.DictReader(f) if r.get("train/l1")])
    assert len(steps[0]) == len(steps[1]) == 2 and min(steps[1]) > max(steps[0])

    cfg = compose("reconstruct", [f"run.root={tmp_path}", "run.name=debug"], debug=True)
    from edtalk.train import fit

    with pytest.raises(ValueError, match="already holds checkpoints; resume with ckpt_path=last"):
        fit(cfg)


def test_fit_with_the_mouth_region_term_logs_it_in_training_and_validation(tmp_path: Path) -> None:
    args = [f"run.root={tmp_path}", "trainer.val_check_interval=2", "model.loss.mouth=1.0"]
    assert cli(["fit", "reconstruct", "--debug", "trainer.max_steps=2", *args]) == 0
    with (tmp_path / "reconstruct" / "debug" / "logs" / "version_0" / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    train = [float(r["train/mouth"]) for r in rows if r.get("train/mouth")]
    val = [float(r["val/mouth"]) for r in rows if r.get("val/mouth")]
    assert len(train) == 2 and val and all(v > 0 for v in train + val)


def test_fit_closes_its_wandb_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second fit in the same process (sweeps, the main job) must get its own wandb run, not the open one."""
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    ids = []
    for name in ("a", "b"):
        args = [f"run.root={tmp_path}", f"run.name={name}", "logger.wandb=true", "trainer.max_steps=1"]
        assert cli(["fit", "reconstruct", "--debug", *args]) == 0
        assert wandb.run is None
        run = tmp_path / "reconstruct" / name
        ids.append((run / "wandb_id.txt").read_text())
        assert any((run / "wandb").glob(f"*{ids[-1]}*")), f"{run}/wandb holds no run {ids[-1]}"
    assert ids[0] != ids[1]


def test_fit_with_mouth_subspace_saves_the_folded_mouth_head(tmp_path: Path) -> None:
    """`model.mouth_subspace`: the last checkpoint holds the folded head, so every frame's mouth weights (here
    frames the fold never read) lie in a subspace of fewer than 20 directions; the pose head is untouched."""
    from edtalk.stages.mouth_pose import fold_mouth_subspace
    from edtalk.weights import load_generator

    args = [f"run.root={tmp_path}", "trainer.val_check_interval=2", "model.subspace_batches=3"]
    ckpts = tmp_path / "mouth_pose" / "debug" / "checkpoints"
    assert (
        cli(["fit", "mouth_pose", "--debug", "trainer.max_steps=2", "model.mouth_subspace=0.9", *args]) == 0
    )
    gen = load_generator(ckpts / "last.ckpt").eval()
    torch.manual_seed(0)
    frames = torch.rand(40, 3, gen.cfg.size, gen.cfg.size) * 2 - 1
    with torch.no_grad():
        mouth = gen.coefficients(frames)["mouth"].double()
    s = torch.linalg.svdvals(mouth - mouth.mean(0))
    kept = int((s > 1e-4 * s[0]).sum())
    assert 1 <= kept < 20, s
    # the same fold again is a no-op: the saved head already maps into its subspace
    _, _, vh = torch.linalg.svd(mouth - mouth.mean(0), full_matrices=False)
    basis = vh[:kept].T.float()
    again = load_generator(ckpts / "last.ckpt").eval()
    fold_mouth_subspace(again, mouth.mean(0).float(), basis)
    with torch.no_grad():
        assert torch.allclose(again.coefficients(frames)["mouth"], mouth.float(), atol=1e-4)
