"""Sweeps (issue 5): every sweep file fits its experiment; grid/random trials; `edtalk sweep --local`."""

from __future__ import annotations

import csv
import math
import random
from pathlib import Path

import numpy as np
import pytest
import yaml

from edtalk.apps.sweep import (
    Trial,
    draw,
    grid,
    last_value,
    load_spec,
    markdown,
    override,
    run_metric,
    trials_of,
    validate,
    write_table,
)

SWEEPS = sorted((Path(__file__).resolve().parents[1] / "sweeps").glob("*.yaml"))


def write_spec(path: Path, **changes: object) -> Path:
    spec = {
        "name": "tiny",
        "method": "grid",
        "metric": {"name": "val/accuracy", "goal": "maximize"},
        "parameters": {"model.optim.lr": {"values": [1e-3, 3e-4]}, "model.min_shift": {"values": [3, 4]}},
        "command": ["edtalk", "fit", "syncnet", "${args_no_hyphens}"],
    }
    spec.update(changes)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_the_repository_has_sweeps() -> None:
    names = {p.stem for p in SWEEPS}
    assert {"audio2mouth_lr_sync", "mouth_pose_loss_weights"} <= names


@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_every_sweep_file_validates_against_its_experiment(path: Path) -> None:
    spec = load_spec(path)
    validate(spec)  # composes the experiment with every value: unknown keys / bad types raise
    assert spec.metric.startswith(("val/", "train/"))


def test_unknown_keys_and_bad_types_are_rejected(tmp_path: Path) -> None:
    bad_key = load_spec(write_spec(tmp_path / "a.yaml", parameters={"model.optim.lrr": {"values": [1]}}))
    with pytest.raises(ValueError, match=r"model\.optim\.lrr"):
        validate(bad_key)
    bad_type = load_spec(write_spec(tmp_path / "b.yaml", parameters={"model.min_shift": {"values": ["x"]}}))
    with pytest.raises(ValueError, match="min_shift"):
        validate(bad_type)
    with pytest.raises(ValueError, match="args_no_hyphens"):
        load_spec(write_spec(tmp_path / "c.yaml", command=["edtalk", "fit", "syncnet"]))
    with pytest.raises(ValueError, match="method"):
        load_spec(write_spec(tmp_path / "d.yaml", method="hyperband"))


def test_grid_random_and_overrides(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path / "s.yaml"))
    assert grid(spec) == [
        {"model.optim.lr": 1e-3, "model.min_shift": 3},
        {"model.optim.lr": 1e-3, "model.min_shift": 4},
        {"model.optim.lr": 3e-4, "model.min_shift": 3},
        {"model.optim.lr": 3e-4, "model.min_shift": 4},
    ]
    assert len(trials_of(spec, count=3)) == 3
    rng = random.Random(0)
    logs = [draw({"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-2}, rng) for _ in range(400)]
    assert min(logs) >= 1e-4 and max(logs) <= 1e-2
    assert abs(np.mean(np.log10(logs)) + 3) < 0.15  # uniform in log space
    assert {draw({"min": 1, "max": 3}, rng) for _ in range(50)} == {1, 2, 3}
    rand = load_spec(write_spec(tmp_path / "r.yaml", method="random"))
    with pytest.raises(ValueError, match="--count"):
        trials_of(rand, None)
    assert trials_of(rand, 5, seed=1) == trials_of(rand, 5, seed=1)
    assert override("model.optim.betas", [0.0, 0.99]) == "model.optim.betas=[0.0, 0.99]"
    assert override("model.init", None) == "model.init=null"


def test_table_ranks_by_goal_and_keeps_failures(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path / "s.yaml"))
    params = grid(spec)
    trials = [
        Trial(0, params[0], tmp_path / "0", 0, 0.6),
        Trial(1, params[1], tmp_path / "1", 0, 0.9),
        Trial(2, params[2], tmp_path / "2", 1, None),
    ]
    csv_path, md_path = write_table(spec, trials, tmp_path / "out")
    rows = list(csv.DictReader(csv_path.open()))
    assert [r["trial"] for r in rows] == ["1", "0", "2"]  # maximize: best first, the failure last
    assert rows[2]["status"] == "failed (exit 1)" and rows[2]["rank"] == "-"
    assert "val/accuracy ↑" in md_path.read_text() == markdown(spec, trials)


def test_last_value_reads_lightning_csv(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,step,train/loss,val/accuracy\n0,0,0.7,\n0,5,,0.55\n0,6,0.6,\n0,11,,0.75\n")
    assert last_value(path, "val/accuracy") == 0.75
    assert last_value(path, "val/nothing") is None
    assert last_value(tmp_path / "missing.csv", "val/accuracy") is None
    # a resumed run: one CSV per session, the later session wins
    for n, value in ((0, 0.5), (1, 0.8), (10, None)):
        (tmp_path / "run" / "logs" / f"version_{n}").mkdir(parents=True)
        row = "" if value is None else str(value)
        (tmp_path / "run" / "logs" / f"version_{n}" / "metrics.csv").write_text(
            f"step,val/accuracy\n3,{row}\n"
        )
    assert run_metric(tmp_path / "run", "val/accuracy") == 0.8


def make_shards(root: Path) -> Path:
    """Tiny real shards: 4 train + 2 test clips of 20 frames at 64² with a mouth box and speech-like audio."""
    from datamodules.shards import ClipRecord, ShardWriter

    rng = np.random.default_rng(0)
    with ShardWriter(root, max_clips=2) as writer:
        for i, split in enumerate(["train"] * 4 + ["test"] * 2):
            t = 20
            frames = rng.integers(0, 255, (t, 64, 64, 3), dtype=np.uint8)
            lmk = rng.uniform(16, 48, (t, 68, 2)).astype(np.float32)
            bbox = np.tile(np.array([24, 38, 40, 50], np.float32), (t, 1))
            wav = (0.1 * rng.standard_normal(t * 640)).astype(np.float32)
            meta = {
                "dataset": "test",
                "speaker": f"S{i}",
                "emotion": "happy",
                "emotion_id": 4,
                "level": "level_1",
                "fps": 25,
                "split": split,
            }
            writer.write(ClipRecord(f"S{i}#happy#level_1#{i:03d}", frames, wav, lmk, bbox, meta))
    return root


def test_local_sweep_runs_a_2x2_grid_and_writes_the_table(tmp_path: Path) -> None:
    """`edtalk sweep FILE --local --debug`: four real `edtalk fit` trials, one result table."""
    from edtalk.cli import main

    shards = make_shards(tmp_path / "shards")
    sweep = write_spec(tmp_path / "tiny.yaml")
    overrides = [
        f"run.root={tmp_path / 'runs'}",
        f"data.root={shards}",
        "trainer.max_steps=1",
        "trainer.val_check_interval=1",
        "data.clip_frames=13",
    ]
    assert main(["sweep", str(sweep), *overrides, "--local", "--debug"]) == 0
    out = tmp_path / "runs" / "sweeps" / "tiny"
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows)
    assert {(r["model.optim.lr"], r["model.min_shift"]) for r in rows} == {
        ("0.001", "3"),
        ("0.001", "4"),
        ("0.0003", "3"),
        ("0.0003", "4"),
    }
    for r in rows:
        assert 0.0 <= float(r["val/accuracy"]) <= 1.0 and math.isfinite(float(r["val/accuracy"]))
        cfg = yaml.safe_load((Path(r["run_dir"]) / "config.yaml").read_text())
        assert str(cfg["model"]["optim"]["lr"]) == r["model.optim.lr"]  # each trial ran with its values
        assert str(cfg["model"]["min_shift"]) == r["model.min_shift"]
        assert (Path(r["run_dir"]) / "checkpoints" / "syncnet.pt").is_file()
    md = (out / "results.md").read_text()
    assert md.count("\n| ") == 5 and "val/accuracy ↑" in md


def test_without_a_wandb_server_the_error_points_to_local(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edtalk.apps.sweep import run_wandb, server_configured

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.setenv("NETRC", str(tmp_path / ".netrc"))
    assert not server_configured()
    with pytest.raises(ValueError, match="--local"):
        run_wandb(load_spec(write_spec(tmp_path / "s.yaml")))
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert server_configured()
