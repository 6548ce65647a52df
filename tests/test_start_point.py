"""Stages that continue from another declare it (`requires:` + `init_from: ???`) and refuse to start without it."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from edtalk.cli import main as cli
from edtalk.train import check_start_point, compose, experiments_dir, start_point

CONTINUING = [
    ("mouth_pose", "reconstruct"),
    ("mouth_pose_no_orthogonality", "reconstruct"),
    ("expression", "mouth_pose"),
    ("expression_no_eem", "mouth_pose"),
    ("expression_no_orthogonality", "mouth_pose_no_orthogonality"),
    ("finetune", "reconstruct"),
]


@pytest.mark.parametrize(("experiment", "requires"), CONTINUING)
def test_fit_without_init_from_exits_2_with_one_line(
    experiment: str, requires: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert start_point(experiment) == (requires, True)
    assert cli(["fit", experiment, f"run.root={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"init_from is not set: experiment {experiment} continues from the {requires} stage" in err
    assert f"e.g. edtalk fit {experiment} init_from=runs/{requires}/<run>/checkpoints/last.ckpt" in err
    assert not (tmp_path / experiment).exists()  # refused before anything was written


def test_every_declared_start_point_names_an_experiment() -> None:
    """The declaration the plan runner's stage graph is checked against: each `requires` exists, and every
    stage that continues a visual stage's generator makes its start point mandatory."""
    names = [p.stem for p in experiments_dir().glob("*.yaml") if p.stem not in ("defaults", "debug")]
    declared = {name: start_point(name) for name in names}
    for name, (requires, _) in declared.items():
        assert requires is None or requires in names, (name, requires)
    mandatory = {name for name, (_, required) in declared.items() if required}
    assert {e for e, _ in CONTINUING} <= mandatory
    assert declared["reconstruct"] == (None, False)


def test_print_config_shows_the_chain_and_the_world_size(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["fit", "expression", "--print-config", "trainer.accelerator=cpu", "trainer.devices=2"]) == 0
    out = capsys.readouterr().out
    notes = [line for line in out.splitlines() if line.startswith("# ")]
    assert notes[0] == (
        "# start point: expression (init_from=???) <- mouth_pose (init_from=???) <- reconstruct (init_from=None)"
    )
    text = "\n".join(notes)
    assert "world_size: 2 " in text and "global_batch: 8 " in text and "strategy: DDPStrategy" in text
    assert "model.optim.g_lr=0.0016 " in text and "not scaled" in text and "trainer.max_steps=24000" in text
    cfg = OmegaConf.create(out)  # still a config: the notes are comments
    assert OmegaConf.is_missing(cfg, "init_from") and cfg.requires == "mouth_pose"


def test_init_from_given_or_resuming_passes() -> None:
    cfg = compose("expression", ["init_from=x.ckpt"])
    check_start_point(cfg, resuming=False)
    assert cfg.init_from == "x.ckpt"
    cfg = compose("expression")
    check_start_point(cfg, resuming=True)  # weights come from the checkpoint resumed
    assert cfg.init_from is None
    # --debug leaves it missing: `debug_dependency` fills it from `requires`
    assert OmegaConf.is_missing(compose("expression", debug=True), "init_from")
