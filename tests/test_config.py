"""Typed composition: every section with a dataclass or signature behind it is checked when composed.

A wrong type, a refused value or an unknown key is one line naming the key, the value and what is
expected, exit code 2 from `edtalk fit`, before anything is built (the run root stays empty).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Literal

import pytest

from edtalk.cli import main
from edtalk.config import ConfigError, GeneratorConfig, check_section, describe, fits

# (experiment, override, words the one error line must hold: the key, the value, what is expected)
CASES = [
    ("reconstruct", "generator.size=abc", ["generator.size", "'abc'", "int"]),
    ("reconstruct", "generator.size=100", ["size", "100", "power of two"]),
    ("reconstruct", "generator.variant=half", ["generator.variant", "'half'", "'lip_pose'"]),
    ("reconstruct", "generator.channel_multiplier=[1]", ["generator.channel_multiplier", "[1]", "float"]),
    ("reconstruct", "generator.sise=64", ["generator.sise"]),
    ("reconstruct", "discriminator.enabled=maybe", ["discriminator.enabled", "'maybe'", "bool"]),
    (
        "reconstruct",
        "discriminator.channel_multiplier=-1",
        ["discriminator", "channel_multiplier", "-1", "> 0"],
    ),
    ("reconstruct", "model.optim.g_lr=-0.1", ["model.optim", "g_lr", "-0.1", "> 0"]),
    ("reconstruct", "model.optim.d_betas=[0.5,1.0]", ["model.optim", "d_betas", "[0.5, 1.0]", "[0, 1)"]),
    ("reconstruct", "model.r1_every=abc", ["model.r1_every", "'abc'", "Integer"]),
    ("reconstruct", "model.loss.vgq=1", ["model.loss.vgq"]),
    ("syncnet", "model.optim.lr=0", ["model.optim", "lr", "0", "> 0"]),
    ("syncnet", "model.optim.betas=[0.9]", ["model.optim", "betas", "[0.9]", "two values"]),
    ("reconstruct", "data.batch_size=x", ["data.batch_size", "'x'", "int"]),
    ("reconstruct", "data.samples_per_epoch=1.5", ["data.samples_per_epoch", "1.5", "int or null"]),
    ("reconstruct", "data.colour=1", ["data.colour", "PairDataModule"]),
    ("mouth_pose", "data.pool_size=many", ["data.pool_size", "'many'", "int"]),
    ("reconstruct", "trainer.max_steps=abc", ["trainer.max_steps", "'abc'", "int"]),
    ("reconstruct", "trainer.precision=31", ["trainer.precision", "31", "'32-true'"]),
    ("reconstruct", "trainer.devicez=2", ["trainer.devicez"]),
    ("reconstruct", "trainer.enable_progress_bar=sometimes", ["trainer.enable_progress_bar", "bool"]),
]


@pytest.mark.parametrize(("experiment", "override", "words"), CASES, ids=[c[1] for c in CASES])
def test_bad_value_is_one_line_exit_2_before_anything_is_built(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], experiment: str, override: str, words: list[str]
) -> None:
    root = tmp_path / "runs"
    assert main(["fit", experiment, override, "--debug", f"run.root={root}"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("edtalk fit: error: ")
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert not root.exists(), "nothing may be built or written before the config is valid"


def test_good_values_still_compose(capsys: pytest.CaptureFixture[str]) -> None:
    """Values of the right type in every checked section pass (ints where floats are expected too)."""
    argv = [
        "fit", "mouth_pose", "--debug", "--print-config", "generator.channel_multiplier=1",
        "discriminator.enabled=false", "model.optim.g_lr=0.01", "data.pool_size=3",
        "trainer.precision=bf16-mixed", "trainer.devices=1", "trainer.limit_train_batches=0.5",
    ]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "pool_size: 3" in out and "g_lr: 0.01" in out and "precision: bf16-mixed" in out


def test_bad_value_in_an_experiment_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exp = tmp_path / "mine.yaml"
    exp.write_text(
        "stage: reconstruct\ngenerator:\n  size: big\ndata:\n  module: datamodules.PairDataModule\n"
    )
    assert main(["fit", str(exp), "--print-config"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "generator.size='big': expected int" in err


def test_subprocess_exit_code_and_single_line(tmp_path: Path) -> None:
    """The installed entry point: exit status 2 and one stderr line, no traceback."""
    cmd = [sys.executable, "-m", "edtalk.cli", "fit", "reconstruct", "generator.size=abc", "--debug"]
    cmd.append(f"run.root={tmp_path / 'runs'}")
    env = {**os.environ, "WANDB_MODE": "disabled"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == "edtalk fit: error: generator.size='abc': expected int"
    assert not (tmp_path / "runs").exists()


def test_check_section_types() -> None:
    assert check_section(GeneratorConfig, {"size": 128, "channel_multiplier": 2}, "g") == GeneratorConfig(
        size=128, channel_multiplier=2
    )
    assert fits(int | None, None) and fits(float, 3) and not fits(int, True) and not fits(int, 2.0)
    assert fits(list[float], [1, 2.5]) and not fits(list[float], [1, "a"]) and not fits(list[float], 1.0)
    assert fits(Literal["a", 1], 1) and not fits(Literal["a", 1], True)
    assert describe(int | None) == "int or null" and describe(list[float]) == "a list of float"
    with pytest.raises(
        ConfigError, match=r"^unknown config key 'g\.stle_dim' \(did you mean 'style_dim'\?\)$"
    ):
        check_section(GeneratorConfig, {"stle_dim": 1}, "g")
