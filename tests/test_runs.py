"""`edtalk.runs`: the run directory's layout, read from real files laid out as `edtalk fit` writes them."""

from __future__ import annotations

from pathlib import Path

import torch

from edtalk import runs


def _csv(path: Path, header: str, *rows: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *rows]) + "\n")


def _run(tmp_path: Path) -> Path:
    run_dir = runs.debug_run(tmp_path, "reconstruct")
    header = "epoch,step,train/loss,train/l1_step,val/psnr"
    _csv(run_dir / "logs" / "version_1" / "metrics.csv", header, "0,5,0.5,0.1,", "0,5,,,14.0")
    _csv(run_dir / "logs" / "version_0" / "metrics.csv", header, "0,1,0.9,0.2,", "0,3,0.7,,12.0")
    return run_dir


def test_layout_names_the_files_fit_writes(tmp_path: Path) -> None:
    run_dir = _run(tmp_path)
    assert run_dir == tmp_path / "reconstruct" / "debug"
    assert runs.checkpoint(run_dir) == run_dir / "checkpoints" / "last.ckpt"
    assert runs.config_file(run_dir) == run_dir / "config.yaml"
    assert runs.export(run_dir, "audio2mouth") is None
    (run_dir / "checkpoints").mkdir()
    runs.checkpoint(run_dir, "audio2mouth.pt").write_bytes(b"x")
    assert runs.export(run_dir, "audio2mouth") == run_dir / "checkpoints" / "audio2mouth.pt"
    assert runs.coefficient_data(run_dir) is None
    (run_dir.parent / "debug-data").mkdir()
    assert runs.coefficient_data(run_dir) == run_dir.parent / "debug-data"
    logs = run_dir / "logs"
    assert runs.metric_files(run_dir) == [
        logs / "version_0" / "metrics.csv",
        logs / "version_1" / "metrics.csv",
    ]


def test_logged_values_over_every_session(tmp_path: Path) -> None:
    run_dir = _run(tmp_path)
    # the last value of each train/ and val/ scalar (not the *_step ones), sessions in order
    assert runs.last_metrics(run_dir) == {"train/loss": 0.5, "val/psnr": 14.0}
    assert runs.series(run_dir, "val/psnr") == [(3, 12.0), (5, 14.0)]
    assert runs.train_series(run_dir) == {"train/loss": [(1, 0.9), (3, 0.7), (5, 0.5)]}


def test_finished_needs_the_steps_and_the_same_generator(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    assert not runs.finished(run_dir, 1, {"size": 64})
    runs.checkpoint(run_dir).parent.mkdir(parents=True)
    torch.save({"global_step": 10, "edtalk": {"generator": {"size": 64}}}, runs.checkpoint(run_dir))
    assert runs.finished(run_dir, 10, {"size": 64})
    assert not runs.finished(run_dir, 11, {"size": 64})  # fewer steps than asked
    assert not runs.finished(run_dir, 10, {"size": 128})  # another profile's generator
    torch.save({"global_step": 10}, runs.checkpoint(run_dir))
    assert runs.finished(run_dir, 10, {"size": 128})  # no generator stored (audio stages): steps decide


def test_finished_needs_the_same_recipe_and_inputs_no_newer(tmp_path: Path) -> None:
    """A rerun with another model/data setting or seed trains again, paths filled in at start are not compared
    as text, and a run whose init checkpoint was retrained after it is stale."""
    import os

    run_dir, init = tmp_path / "run", tmp_path / "prev" / "last.ckpt"
    init.parent.mkdir()
    init.write_bytes(b"stage before")
    config = {
        "seed": 0,
        "init_from": str(init),
        "model": {"loss": {"l1": 1.0, "warp_invariance": 0.0}, "syncnet": str(tmp_path / "syncnet.pt")},
        "data": {"batch_size": 4, "root": None},
        "trainer": {"max_steps": 10},
    }
    runs.checkpoint(run_dir).parent.mkdir(parents=True)
    torch.save(
        {"global_step": 10, "edtalk": {"generator": {"size": 64}, "config": config}}, runs.checkpoint(run_dir)
    )
    os.utime(init, (1_000, 1_000))  # the init checkpoint is older than the run
    same = {**config, "model": {**config["model"], "syncnet": None}, "trainer": {"max_steps": 99}}
    assert runs.finished(run_dir, 10, {"size": 64}, same)  # syncnet filled in at start; trainer not compared
    assert runs.finished(run_dir, 10, {"size": 64}, same | {"data": {"batch_size": 4, "root": "/data/x"}})
    other = {**config, "model": {"loss": {"l1": 1.0, "warp_invariance": 1.0}}}
    assert not runs.finished(run_dir, 10, {"size": 64}, other)
    assert runs.recipe_changes(config, other, runs.checkpoint(run_dir)) == [
        "model.loss.warp_invariance: 0.0 -> 1.0"
    ]
    assert not runs.finished(run_dir, 10, {"size": 64}, same | {"seed": 1})
    assert runs.finished(run_dir, 10, {"size": 64})  # no recipe given: steps and generator decide
    later = runs.checkpoint(run_dir).stat().st_mtime + 60
    os.utime(init, (later, later))  # the stage before was retrained after this run
    changes = runs.recipe_changes(config, same, runs.checkpoint(run_dir))
    assert changes == [f"{init} is newer than {runs.checkpoint(run_dir)}"]
    assert not runs.finished(run_dir, 10, {"size": 64}, same)
    torch.save({"global_step": 10, "edtalk": {"generator": {"size": 64}}}, runs.checkpoint(run_dir))
    assert runs.finished(run_dir, 10, {"size": 64}, other)  # no stored config (older runs): not compared


def test_the_writers_paths_are_the_run_layout(tmp_path: Path) -> None:
    """What `edtalk fit` and the stages write, named here only (edtalk.train, edtalk.stages.supervised)."""
    run_dir = runs.run_path(tmp_path, "audio2mouth", "main")
    assert (
        run_dir == runs.experiment_runs(tmp_path, "audio2mouth") / "main" == tmp_path / "audio2mouth" / "main"
    )
    assert runs.export_file(run_dir, "audio2mouth") == run_dir / "checkpoints" / "audio2mouth.pt"
    assert runs.samples_dir(run_dir) == run_dir / "samples"
    assert runs.wandb_id_file(run_dir) == run_dir / "wandb_id.txt"
    assert runs.debug_data(tmp_path, "audio2exp") == tmp_path / "audio2exp" / "debug-data"
    assert runs.extracted_data(runs.debug_run(tmp_path, "extract")) == tmp_path / "extract" / "debug" / "data"
    assert runs.run_of_checkpoint(runs.checkpoint(run_dir)) == run_dir.resolve()
    assert runs.run_of_checkpoint(tmp_path / "vox.pt") is None
    assert runs.resumable(runs.experiment_runs(tmp_path, "audio2mouth")) == []
    runs.checkpoint(run_dir).parent.mkdir(parents=True)
    runs.checkpoint(run_dir).write_bytes(b"")
    assert runs.resumable(runs.experiment_runs(tmp_path, "audio2mouth")) == [run_dir]


def test_a_setting_added_after_a_run_counts_as_its_default(tmp_path: Path) -> None:
    """A run written before a setting existed (its stored config lacks the key) ran with that setting's default:
    a rerun at the default reuses it, a rerun that sets another value trains again."""
    run_dir = tmp_path / "run"
    config = {"seed": 0, "model": {"optim": {"lr": 1e-3}}, "data": {"batch_size": 4}}
    runs.checkpoint(run_dir).parent.mkdir(parents=True)
    torch.save({"global_step": 10, "edtalk": {"config": config}}, runs.checkpoint(run_dir))
    defaults = {"model.optim.lr": 1e-4, "model.optim.schedule": "constant"}
    today = {**config, "model": {"optim": {"lr": 1e-3, "schedule": "constant"}}}
    assert runs.recipe_changes(config, today, runs.checkpoint(run_dir), defaults) == []
    assert runs.finished(run_dir, 10, None, today, defaults)
    assert not runs.finished(run_dir, 10, None, today)  # without the defaults the new key is a change
    cosine = {**config, "model": {"optim": {"lr": 1e-3, "schedule": "cosine"}}}
    assert runs.recipe_changes(config, cosine, runs.checkpoint(run_dir), defaults) == [
        "model.optim.schedule: 'constant' -> 'cosine'"
    ]
    assert not runs.finished(run_dir, 10, None, cosine, defaults)


def test_a_generator_setting_added_after_a_run_counts_as_its_default(tmp_path: Path) -> None:
    """The stored generator config lacks a key added since (e.g. `exp_encoder`): equal at its default,
    stale at another value."""
    run_dir = tmp_path / "run"
    runs.checkpoint(run_dir).parent.mkdir(parents=True)
    torch.save({"global_step": 10, "edtalk": {"generator": {"size": 64}}}, runs.checkpoint(run_dir))
    defaults = {"generator.size": 256, "generator.exp_encoder": "shared"}
    assert runs.finished(run_dir, 10, {"size": 64, "exp_encoder": "shared"}, None, defaults)
    assert not runs.finished(run_dir, 10, {"size": 64, "exp_encoder": "shared"})  # no defaults: a change
    assert not runs.finished(run_dir, 10, {"size": 64, "exp_encoder": "cnn"}, None, defaults)
    assert not runs.finished(run_dir, 10, {"size": 128, "exp_encoder": "shared"}, None, defaults)


def test_setting_defaults_are_each_stage_configs_and_the_generators_defaults() -> None:
    from edtalk.apps.runner import setting_defaults as model_defaults

    assert model_defaults("audio2exp")["model.optim.schedule"] == "constant"
    assert model_defaults("audio2exp")["model.loss.emotion"] == 0.1
    assert model_defaults("reconstruct")["model.optim.g_betas"] == [0.0, 0.99 ** (4 / 5)]
    assert (
        model_defaults("reconstruct")["generator.exp_encoder"] == "shared"
    )  # a generator setting added later
