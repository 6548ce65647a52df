"""Plans: the main job's stage graph, the plan file checks, and the runner's order, groups and reuse."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from edtalk.apps import runner as runner_mod
from edtalk.apps.plan import Plan, load_plan, main_plan, upstream_of
from edtalk.apps.runner import PlanRun, StageRun
from edtalk.cli import main
from edtalk.train import experiment_file

ORDER = ("reconstruct", "mouth_pose", "expression", "syncnet", "audio2mouth", "audio2pose", "audio2exp", "emotion_classifier")  # fmt: skip


def test_the_main_plan_declares_the_stage_graph_once() -> None:
    plan = load_plan(main_plan())
    assert plan.order == ORDER and plan.generator == "expression"
    assert upstream_of("audio2mouth") == ("mouth_pose", "syncnet") and upstream_of("syncnet") == ()
    assert upstream_of("no_such_stage") == ()
    # with a second core: the side stages by the main-line stage they wait for (None: from the start)
    assert plan.side_groups() == {
        None: ("syncnet", "emotion_classifier"),
        "mouth_pose": ("audio2mouth", "audio2pose"),
    }
    assert plan.lineage("expression") == ("reconstruct", "mouth_pose", "expression")
    for stage in plan.order:  # each stage's start point (its experiment's `requires`) is an edge of the graph
        requires = OmegaConf.load(experiment_file(stage)).get("requires")
        assert requires is None or requires in plan.upstream_of(stage), stage


def test_a_profile_changes_the_graph_where_its_layer_makes_a_stage_read_less() -> None:
    """The demo's audio2exp regresses the emotions' anchors alone (its layer: data.coefficients=false, requires
    null), so under `demo` it reads no generator and trains from the start beside the visual stages; other
    profiles keep the plan's graph."""
    plan = load_plan(main_plan())
    demo = plan.for_profile("demo")
    assert demo.upstream_of("audio2exp") == () and plan.upstream_of("audio2exp") == ("expression",)
    assert demo.side_groups() == {
        None: ("syncnet", "audio2exp", "emotion_classifier"),
        "mouth_pose": ("audio2mouth", "audio2pose"),
    }
    assert plan.for_profile("debug") is plan and demo.order == plan.order
    layer = OmegaConf.load(main_plan().parent / "audio2exp.yaml")
    assert layer.data.coefficients is False and layer.requires is None and layer.model.exp_anchor > 0
    job = PlanRun(plan, Path("unused"), profile="demo", log=lambda s: None)
    assert job.plan.upstream_of("audio2exp") == ()


@pytest.mark.parametrize(
    ("stages", "error"),
    [
        ("{nope: {side: true}}", r"profiles: p: stages: nope"),
        ("{audio2exp: {budget: 3}}", r"profiles: p: stages: audio2exp"),
        (
            "{audio2exp: {after: [audio2pose]}}",
            r"stage 'audio2exp' reads \['audio2pose'\], which the plan does not list",
        ),
    ],
)
def test_a_profile_graph_change_is_checked(tmp_path: Path, stages: str, error: str) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(
        f"stages: [syncnet, audio2exp, audio2pose]\nbudgets: {{visual: 1}}\nprofiles: {{p: {{stages: {stages}}}}}\n"
    )
    with pytest.raises(ValueError, match=error):
        load_plan(path).for_profile("p")


def test_the_demo_readme_shows_the_plan_graph(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(main_plan()), "--graph"]) == 0
    table = capsys.readouterr().out
    assert "| audio2mouth | mouth_pose, syncnet | second process, after mouth_pose | audio |" in table
    readme = (main_plan().parent / "README.md").read_text()
    assert table in readme, (
        "experiments/demo/README.md's stage graph is stale: paste `edtalk run ... --graph`"
    )


def test_steps_are_the_budget_times_the_profile_scale() -> None:
    plan = load_plan(main_plan())
    demo = {s: plan.steps(s, "demo", {"visual": 4, "audio": 3}) for s in plan.order}
    assert demo == {
        "reconstruct": 20,
        "mouth_pose": 12,
        "expression": 24,
        "syncnet": 9,
    } | {"audio2exp": 4, "emotion_classifier": 5} | {s: 3 for s in ("audio2mouth", "audio2pose")}
    assert plan.steps("reconstruct", "demo") == 1000 and plan.steps("reconstruct", "debug") == 200
    assert plan.layer("demo") == "demo" and plan.layer("debug") is None
    with pytest.raises(ValueError, match=r"--profile must be one of \('demo', 'debug'\), got 'nope'"):
        plan.layer("nope")


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("stages: [{name: b, after: [a]}, {name: a}]\nbudgets: {visual: 1}\n", r"stage 'b' reads \['a'\], which the plan does not list before it"),
        ("stages: [a]\nbudgets: {visual: 1}\nsteps: 3\n", r"unknown key\(s\) \['steps'\]"),
        ("stages: [a]\n", r"stage 'a' budget 'visual' is not in `budgets:`"),
        ("stages: [a]\nbudgets: {visual: 1}\ntasks: [paint]\n", r"unknown task 'paint'"),
        ("stages: [a]\nbudgets: {visual: 1}\ntasks: [{name: report, beside: render}]\n", r"runs beside 'render', which is no later task"),
        ("stages: [a]\nbudgets: {visual: 1}\ntasks: [{name: evaluate, beside: render}, {name: report, beside: render}, render]\n", r"runs beside the tasks up to 'render', and so would 'report'"),
        ("tasks: [report]\n", r"a plan needs a `stages:` list"),
        ("stages: [recon]\nbudgets: {visual: 1}\n", r"stages: 'recon': experiment 'recon' not found"),
        ("stages: [{name: extract}, reconstruct]\nbudgets: {visual: 1}\n", r"stages: extract reads \[\]; it needs `after: \[<one generator stage listed before it>\]`"),
        ("stages: [{name: extract, after: [reconstruct]}, reconstruct]\nbudgets: {visual: 1}\n", r"stages: extract reads \['reconstruct'\]; it needs `after: \[<one generator"),
        ("stages: [syncnet, {name: extract, after: [syncnet]}]\nbudgets: {visual: 1}\n", r"extract reads 'syncnet' \(stage syncnet\), which trains no generator"),
        ("stages: [reconstruct, {name: extract, after: [reconstruct], budget: 3}]\nbudgets: {visual: 1}\n", r"extract takes only `after: \[<generator stage>\]`"),
        ("data: null\nstages: [reconstruct, {name: extract, after: [reconstruct]}]\nbudgets: {visual: 1}\n", r"extract runs over the plan's shards: set `data:`"),
        ("stages: [{name: reconstruct, budget: all}]\n", r"budget 'all' is not in `budgets:` \(or 'recipe'\)"),
    ],
)  # fmt: skip
def test_plan_file_mistakes_name_the_file_and_the_key(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=error) as info:
        load_plan(path)
    assert str(path) in str(info.value)


class Recorder(PlanRun):
    """A PlanRun whose stages are recorded instead of trained (no Lightning): order, steps, init_from."""

    def train(self, stage: str, steps: int, extra: list[str] | None = None) -> StageRun:
        time.sleep(0.01)
        return StageRun(stage, self.out / stage, steps, 0.0, {"init": float(len(self._init_from(stage)))})


def record(job: PlanRun) -> dict[str, Any]:
    """A task: what it saw of the run."""
    return {"seen": [s.name for s in job.stages], "where": __import__("os").getpid()}


def _plan(tmp_path: Path) -> Plan:
    path = tmp_path / "plan.yaml"
    path.write_text(
        "data: null\nbudgets: {visual: 4, audio: 2}\n"
        "stages: [{name: reconstruct}, {name: syncnet, budget: audio, side: true},\n"
        "  {name: mouth_pose, after: [reconstruct]}, {name: audio2pose, budget: 3, after: [mouth_pose], side: true}]\n"
        "tasks: [{name: 'tests.test_plan:record', needs: [mouth_pose], beside: 'tests.test_plan:other'},\n"
        "  {name: 'tests.test_plan:other', needs: [not_a_stage]}]\n"
    )
    with pytest.raises(ValueError, match=r"task 'tests.test_plan:other' needs \['not_a_stage'\]"):
        load_plan(path)  # a task may only need stages of the plan
    path.write_text(path.read_text().replace("not_a_stage", "audio2pose"))
    return load_plan(path)


def other(job: PlanRun) -> dict[str, Any]:
    return {"other": True}


@pytest.mark.parametrize("parallel", [False, True])
def test_runner_order_groups_and_tasks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parallel: bool
) -> None:
    import os

    monkeypatch.setattr(runner_mod, "second_core", lambda: parallel)
    lines: list[str] = []
    job = Recorder(_plan(tmp_path), tmp_path, profile="", log=lines.append)
    results = job.run()
    assert [(s.name, s.steps) for s in job.stages] == [
        ("reconstruct", 4),
        ("syncnet", 2),
        ("mouth_pose", 4),
        ("audio2pose", 3),
    ]
    # mouth_pose starts from this run's reconstruct (its experiment requires it); reconstruct from nothing
    assert {s.name: s.metrics["init"] for s in job.stages} == {
        "reconstruct": 0,
        "syncnet": 0,
        "mouth_pose": 1,
        "audio2pose": 1,
    }
    assert results["other"] is True and results["seen"] == [
        "reconstruct",
        "syncnet",
        "mouth_pose",
        "audio2pose",
    ]
    assert (results["where"] != os.getpid()) == parallel  # `beside`: in the second process
    text = "\n".join(lines)
    assert ("syncnet: training in a second process ({'syncnet': 2})" in text) == parallel
    assert ("audio2pose: training in a second process ({'audio2pose': 3})" in text) == parallel
    assert ("syncnet: training (2/4, 2 steps)" in text) == (not parallel)


def test_tasks_that_need_untrained_stages_are_skipped(tmp_path: Path) -> None:
    """With given checkpoints (`quickstart --weights`) nothing trains: tasks that need stages are skipped."""
    job = Recorder(_plan(tmp_path), tmp_path, profile="", log=lambda s: None, official={"generator": None})
    assert job.run() == {} and job.stages == []


def test_edtalk_run_trains_a_plan_and_reuses_finished_stages(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real one-stage plan through the CLI (a Lightning run, `--debug`), then again: the rerun reuses it;
    a rerun with another setting of the stage trains it again."""
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "budgets: {audio: 2}\nstages: [{name: emotion_classifier, budget: audio}]\ntasks: ['tests.test_plan:other']\n"
    )
    out = tmp_path / "out"
    assert main(["run", str(plan), "--out", str(out)]) == 0
    ckpt = out / "runs" / "emotion_classifier" / "debug" / "checkpoints" / "last.ckpt"
    assert f"emotion_classifier: {ckpt.parents[1]}" in capsys.readouterr().out
    stamp = ckpt.stat().st_mtime_ns
    assert main(["run", str(plan), "--out", str(out)]) == 0
    assert ckpt.stat().st_mtime_ns == stamp  # finished with the same steps: not trained again
    assert main(["run", str(plan), "--out", str(out), "--profile", "demo"]) == 2  # the plan has no profiles
    setting = ["--set", "emotion_classifier.model.optim.lr=0.001"]
    assert main(["run", str(plan), "--out", str(out), *setting]) == 0
    assert ckpt.stat().st_mtime_ns != stamp  # another recipe: trained again, not silently reused
    stamp = ckpt.stat().st_mtime_ns
    assert main(["run", str(plan), "--out", str(out), *setting]) == 0
    assert ckpt.stat().st_mtime_ns == stamp


# -- the extract step and a cluster plan (debug: false) -------------------------------------------------
CLUSTER_PLAN = main_plan().parents[1] / "cluster" / "plan.yaml"


def test_the_cluster_plan_runs_the_whole_recipe_and_prints_its_graph(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """stage 1 -> 2 -> expression -> extract -> audio stages -> evaluate, each experiment as written."""
    from edtalk.apps.plan import GENERATOR_STAGES
    from edtalk.stages import STAGES, stage_class
    from edtalk.stages.base import GANStage

    plan = load_plan(CLUSTER_PLAN)
    assert not plan.debug and plan.order[:4] == ("reconstruct", "mouth_pose", "expression", "extract")
    assert [t.name for t in plan.tasks] == ["evaluate"]
    for stage in plan.order:
        if stage != "extract":  # each experiment's start point is an edge; every audio stage reads extract
            requires = OmegaConf.load(experiment_file(stage)).get("requires")
            assert requires is None or requires in plan.upstream_of(stage), stage
            assert ("extract" in plan.upstream_of(stage)) == stage.startswith("audio2"), stage
            assert plan.steps(stage, "") is None  # budget: recipe
    assert set(GENERATOR_STAGES) == {s for s in STAGES if issubclass(stage_class(s), GANStage)}
    assert main(["run", str(CLUSTER_PLAN), "--graph"]) == 0
    table = capsys.readouterr().out
    assert "| extract | expression | main process | – |\n" in table
    assert "| audio2mouth | mouth_pose, syncnet, extract | main process | recipe |\n" in table


def test_a_cluster_plan_hands_each_stage_its_inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cluster plan's configs as the runner composes them (full-size, nothing trained): the recipe's
    schedule, the plan's shards, init_from, the extract step's shards and the syncnet export."""
    import edtalk.apps.extract
    import edtalk.train
    from edtalk import runs

    composed: dict[str, Any] = {}

    def fake_fit(cfg: Any, overwrite: bool = False) -> Path:
        run_dir = runs.debug_run(Path(cfg.run.root), str(cfg.experiment))
        runs.checkpoint_dir(run_dir).mkdir(parents=True)
        runs.export_file(run_dir, str(cfg.experiment)).write_bytes(b"")
        composed[str(cfg.experiment)] = cfg
        return run_dir

    extracted: list[tuple[Path, Path, Path]] = []
    monkeypatch.setattr(edtalk.train, "fit", fake_fit)
    monkeypatch.setattr(
        edtalk.apps.extract, "extract_step", lambda *a, **k: extracted.append(a[:3]) or a[0] / "data"
    )
    monkeypatch.setattr(runner_mod, "_finished", lambda *a: False)
    job = PlanRun(load_plan(CLUSTER_PLAN), tmp_path, profile="", log=lambda s: None)
    job.prepare_data()
    job.train_all()
    root = tmp_path / "runs"
    assert [s.name for s in job.stages] == list(job.plan.order)
    assert extracted == [
        (root / "extract" / "debug", root / "expression" / "debug" / "checkpoints" / "last.ckpt", Path("/shared/shards/mead"))
    ]  # fmt: skip
    data = str(root / "extract" / "debug" / "data")
    assert {k: cfg.data.root for k, cfg in composed.items()} == {
        k: (data if k.startswith("audio2") else "/shared/shards/mead") for k in composed
    }
    mouth = composed["audio2mouth"]
    assert mouth.init_from == str(root / "mouth_pose" / "debug" / "checkpoints" / "last.ckpt")
    assert mouth.model.syncnet == str(root / "syncnet" / "debug" / "checkpoints" / "syncnet.pt")
    assert mouth.trainer.max_steps == OmegaConf.load(experiment_file("audio2mouth")).trainer.max_steps
    assert mouth.generator.size == 256 and mouth.run.name == "debug"  # full size; the plan's run folder
    assert composed["expression"].init_from.endswith("mouth_pose/debug/checkpoints/last.ckpt")


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the built-in shards (a plan's `data:` folder, which the extract step leaves as it is)."""
    import shutil

    from datamodules.synthetic import ensure_builtin

    dst = tmp_path_factory.mktemp("builtin") / "shards"
    shutil.copytree(ensure_builtin(), dst)
    return dst


def test_a_plan_with_the_extract_step_runs_end_to_end(
    tmp_path: Path, shards: Path, one_thread: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tiny stages through `edtalk run`: stage 1 -> 2 -> extract -> audio2pose (the debug recipe's steps)
    on the extract step's sidecars; a rerun reuses the sidecars and the stages."""
    import numpy as np

    from edtalk import runs

    monkeypatch.setattr(runner_mod, "second_core", lambda: False)
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        f"data: {shards}\nbudgets: {{visual: 2}}\ngenerator: mouth_pose\n"
        "stages: [reconstruct, {name: mouth_pose, after: [reconstruct]}, {name: extract, after: [mouth_pose]},\n"
        "  {name: audio2pose, budget: recipe, after: [mouth_pose, extract]}]\n"
    )
    out = tmp_path / "out"
    assert main(["run", str(plan), "--out", str(out)]) == 0
    step = runs.debug_run(out / "runs", "extract")
    sidecars = sorted(runs.extracted_data(step).glob("*.tar.coeffs.npz"))
    assert {p.name.removesuffix(".coeffs.npz") for p in sidecars} == {p.name for p in shards.glob("*.tar")}
    assert np.load(sidecars[0])["__dims__"].tolist() == [20, 6, 0]  # mouth_pose's lip-pose generator
    assert not list(shards.glob("*.coeffs.npz"))  # the plan's shard folder stays as it was
    audio = runs.debug_run(out / "runs", "audio2pose")
    cfg = OmegaConf.load(runs.config_file(audio))
    assert cfg.data.root == str(runs.extracted_data(step)) and cfg.trainer.max_steps == 6
    assert runs.coefficient_data(audio) is None  # no `--debug` extraction of its own
    assert runs.last_metrics(audio)["val/loss"] > 0 and runs.export(audio, "audio2pose") is not None
    stamps = [p.stat().st_mtime_ns for p in [*sidecars, runs.checkpoint(audio)]]
    assert main(["run", str(plan), "--out", str(out)]) == 0
    assert [p.stat().st_mtime_ns for p in [*sidecars, runs.checkpoint(audio)]] == stamps


def test_set_appends_overrides_to_one_stage_and_names_mistakes() -> None:
    """`edtalk run/quickstart --set STAGE.KEY=VALUE` (the ablation runs): only the named stage changes, after
    the plan's own overrides; a wrong stage or a missing `=` is a one-line error naming the form."""
    plan = load_plan(main_plan())
    ablated = plan.with_overrides(["expression.model.ablation.no_eem=true", "expression.model.loss.l1=2"])
    assert ablated.stage("expression").overrides[-2:] == ("model.ablation.no_eem=true", "model.loss.l1=2")
    assert all(ablated.stage(s).overrides == plan.stage(s).overrides for s in plan.order if s != "expression")
    assert plan.with_overrides([]) == plan
    for bad in ("expresion.model.x=1", "expression.model.x", "expression"):
        with pytest.raises(ValueError, match=r"STAGE\.KEY=VALUE with STAGE one of reconstruct"):
            plan.with_overrides([bad])
    from edtalk.train import compose

    cfg = compose("expression", [*ablated.stage("expression").overrides, "init_from=x.ckpt"], debug=True)
    assert cfg.model.ablation.no_eem is True and cfg.model.loss.l1 == 2


def test_results_of_a_second_process_task_merge_into_a_dict_entry() -> None:
    """The fine-tuning task runs beside the learning table and adds `learning["finetune"]`: merged one level
    deep, whichever finishes first; other keys are replaced."""
    from edtalk.apps.runner import merge_results

    results: dict[str, Any] = {"learning": {"psnr_video": 24.2}, "evaluation": {"old": 1}, "x": 1}
    merge_results(results, {"learning": {"finetune": {"psnr_after": 23.1}}, "x": 2})
    assert results == {
        "learning": {"psnr_video": 24.2, "finetune": {"psnr_after": 23.1}},
        "evaluation": {"old": 1},
        "x": 2,
    }
    merge_results(results, {"learning": {"psnr_video": 25.0}, "evaluation": None})
    assert results["learning"] == {"psnr_video": 25.0, "finetune": {"psnr_after": 23.1}}
    assert results["evaluation"] is None


def _two_core_plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> Plan:
    """The plan `text` (written under tmp_path), run as on a machine with a second core."""
    monkeypatch.setattr(runner_mod, "second_core", lambda: True)
    path = tmp_path / "plan.yaml"
    path.write_text(text)
    return load_plan(path)


def wait_for_last(job: PlanRun) -> dict[str, Any]:
    """A side task that ends when the main process's last partner task has started (30 s at most)."""
    marker = job.out / "last-started"
    deadline = time.monotonic() + 30
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return {"learning": {"side_saw_last": marker.exists()}}


def middle(job: PlanRun) -> dict[str, Any]:
    return {"learning": {"middle": True}}


def last(job: PlanRun) -> dict[str, Any]:
    (job.out / "last-started").touch()
    return {"learning": {"last": True}}


def test_a_side_task_spans_the_main_tasks_up_to_its_partner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`beside: X` keeps the second process's task running while the main one runs every task up to X:
    the fine-tuning task of the demo plan overlaps the learning table, the renders and the evaluation."""
    plan = _two_core_plan(
        tmp_path,
        monkeypatch,
        "data: null\nbudgets: {visual: 1}\nstages: [reconstruct]\n"
        "tasks: [{name: 'tests.test_plan:wait_for_last', beside: 'tests.test_plan:last'},\n"
        "  'tests.test_plan:middle', 'tests.test_plan:last']\n",
    )
    results = Recorder(plan, tmp_path, profile="", log=lambda s: None).run()
    assert results["learning"] == {"middle": True, "last": True, "side_saw_last": True}


class SlowSyncnet(Recorder):
    """A Recorder whose syncnet takes 3 s; every stage records when it started and ended."""

    def train(self, stage: str, steps: int, extra: list[str] | None = None) -> StageRun:
        start = time.time()
        time.sleep(3.0 if stage == "syncnet" else 0.01)
        return StageRun(stage, self.out / stage, steps, 0.0, {"start": start, "end": time.time()})


def test_the_next_side_group_waits_for_the_last_one_and_the_main_line_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """audio2pose (second process, after mouth_pose) starts when syncnet (second process, from the start)
    is done, but expression (main line, after mouth_pose) starts at once: before syncnet ends."""
    plan = _two_core_plan(
        tmp_path,
        monkeypatch,
        "data: null\nbudgets: {visual: 1, audio: 1}\n"
        "stages: [{name: reconstruct}, {name: syncnet, budget: audio, side: true},\n"
        "  {name: mouth_pose, after: [reconstruct]}, {name: audio2pose, after: [mouth_pose], side: true},\n"
        "  {name: expression, after: [mouth_pose]}]\n",
    )
    job = SlowSyncnet(plan, tmp_path, profile="", log=lambda s: None)
    job.run()
    at = {s.name: s.metrics for s in job.stages}
    assert [s.name for s in job.stages] == [
        "reconstruct",
        "syncnet",
        "mouth_pose",
        "audio2pose",
        "expression",
    ]
    assert at["audio2pose"]["start"] >= at["syncnet"]["end"]
    assert at["expression"]["end"] < at["syncnet"]["end"]


def early_files(job: PlanRun) -> dict[str, Any]:
    """An early task: a file naming its process and the stages it saw (it returns nothing)."""
    import json
    import os

    seen = [s.name for s in job.stages]
    (job.out / f"early-{os.getpid()}.json").write_text(json.dumps(seen))
    return {}


EARLY_PLAN = (
    "data: null\nbudgets: {visual: 1, audio: 1}\n"
    "stages: [{name: reconstruct}, {name: mouth_pose, after: [reconstruct]},\n"
    "  {name: audio2pose, after: [mouth_pose], side: true}, {name: expression, after: [mouth_pose]}]\n"
    "tasks: ['tests.test_plan:record', {name: 'tests.test_plan:early_files', needs: [mouth_pose], early: true}]\n"
)


@pytest.mark.parametrize("parallel", [False, True])
def test_an_early_task_runs_in_the_second_process_after_its_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parallel: bool
) -> None:
    """`early: true`: with a second core the task runs there once the group that starts after its needs is
    trained (audio2pose after mouth_pose), beside expression, and not again among the tasks; without one it
    runs where it is listed, after training."""
    import json
    import os

    monkeypatch.setattr(runner_mod, "second_core", lambda: parallel)
    path = tmp_path / "plan.yaml"
    path.write_text(EARLY_PLAN)
    lines: list[str] = []
    job = Recorder(load_plan(path), tmp_path, profile="", log=lines.append)
    results = job.run()
    files = sorted(tmp_path.glob("early-*.json"))
    assert len(files) == 1  # once
    pid, seen = int(files[0].stem.split("-")[1]), json.loads(files[0].read_text())
    assert (pid != os.getpid()) == parallel and results["where"] == os.getpid()
    if parallel:  # after its group's audio2pose, without expression (main line)
        assert seen == ["reconstruct", "mouth_pose", "audio2pose"]
        assert any("audio2pose: training in a second process" in x and "early_files" in x for x in lines)
    else:
        assert seen == ["reconstruct", "mouth_pose", "audio2pose", "expression"]


@pytest.mark.parametrize(
    ("entry", "error"),
    [
        ("{name: learning, early: true}", "early task 'learning' needs the stages it reads"),
        ("{name: learning, needs: [reconstruct], early: true, beside: report}", "and no `beside`"),
        ("{name: learning, needs: [reconstruct], early: yes please}", "early must be true or false"),
    ],
)
def test_a_bad_early_task_is_refused(tmp_path: Path, entry: str, error: str) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(f"budgets: {{visual: 1}}\nstages: [reconstruct]\ntasks: [{entry}, report]\n")
    with pytest.raises(ValueError, match=re.escape(error)):
        load_plan(path)


def scaled(job: PlanRun, *, factor: float = 1.0) -> dict[str, Any]:
    """A task with an option: where it ran and the factor it was given."""
    import os

    return {"learning": {"factor": factor, "pid": os.getpid()}}


@pytest.mark.parametrize("parallel", [False, True])
def test_task_options_reach_the_task_in_either_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parallel: bool
) -> None:
    """`options: {K: V}` are the task function's keyword arguments, in the main and in the second process."""
    import os

    monkeypatch.setattr(runner_mod, "second_core", lambda: parallel)
    path = tmp_path / "plan.yaml"
    path.write_text(
        "data: null\nbudgets: {visual: 1}\nstages: [reconstruct]\n"
        "tasks: [{name: 'tests.test_plan:scaled', options: {factor: 2.5}, beside: 'tests.test_plan:last'},\n"
        "  'tests.test_plan:last']\n"
    )
    results = Recorder(load_plan(path), tmp_path, profile="", log=lambda s: None).run()
    learning = results["learning"]
    assert learning["factor"] == 2.5 and learning["last"] is True
    assert (learning["pid"] != os.getpid()) == parallel


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ("{factr: 2}", "task 'tests.test_plan:scaled': unknown option(s) ['factr']; it takes ['factor']"),
        ("[2]", "options must map names to values"),
    ],
)
def test_a_task_option_it_does_not_take_is_refused(tmp_path: Path, options: str, error: str) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(
        f"budgets: {{visual: 1}}\nstages: [reconstruct]\ntasks: [{{name: 'tests.test_plan:scaled', options: {options}}}]\n"
    )
    with pytest.raises(ValueError, match=re.escape(error)):
        load_plan(path)
