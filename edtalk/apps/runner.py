"""Execute a plan: build the data, train its stages in order, then run its tasks (`edtalk run PLAN.yaml`).

Each stage is an ordinary `edtalk fit STAGE` run (`--debug` when the plan says so) under
`OUT/runs/<stage>/debug/`, with the plan's step count (or, for a `recipe` budget, the experiment's own
schedule); a rerun reuses the stages that finished with the same generator. Each stage starts from the
checkpoint of the stage its experiment `requires` when this run trained it, and takes the outputs of the
stages it reads: the `extract` step's shards as `data.root`, an export its `model:` names after the stage
(audio2mouth's `model.syncnet`). The `extract` step (`edtalk.apps.extract`) writes coefficient sidecars
with its generator stage's checkpoint under `OUT/runs/extract/debug/`. When the machine has a second core, a second process (`edtalk.apps.side`; one thread
per process: these networks gain nothing from two) trains the plan's `side` stages in the groups
`Plan.side_groups` forms, and runs a task marked `beside` while the task it names runs here.
"""

from __future__ import annotations

import importlib
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edtalk import runs
from edtalk.apps.plan import EXTRACT, Plan, TaskSpec, task_function

if TYPE_CHECKING:
    from edtalk.apps.side import ChainedSide, SideProcess


@dataclass
class StageRun:
    name: str
    run_dir: Path
    steps: int
    seconds: float
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class PlanRun:
    """One execution of a plan under `out`; `results` collects what the tasks return."""

    plan: Plan
    out: Path
    profile: str = "demo"
    seed: int = 0
    budgets: dict[str, int] = field(default_factory=dict)  # over the plan's (`quickstart --steps`)
    eval_clips: int | None = None  # None: the plan's
    log: Callable[[str], None] = print
    started: float = field(default_factory=time.perf_counter)
    stages: list[StageRun] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)
    shards: Path | None = None
    official: dict[str, Path | None] | None = None  # checkpoints to use instead of trained ones
    threads: int = 1  # torch CPU threads of the second process (the caller sets its own)
    early: set[str] = field(default_factory=set)  # `early` tasks handed to the second process during training

    def __post_init__(self) -> None:
        self.plan = self.plan.for_profile(self.profile)  # the profile's changes to the stage graph

    @property
    def clips(self) -> int:
        return self.plan.eval_clips if self.eval_clips is None else self.eval_clips

    def run(self) -> dict[str, Any]:
        """Data, stages (unless `official` checkpoints are given), tasks; returns `results`."""
        self.out.mkdir(parents=True, exist_ok=True)
        self.prepare_data()
        if self.official is None:
            self.train_all()
        self.run_tasks()
        return self.results

    def prepare_data(self) -> None:
        if self.plan.data == "builtin":
            from datamodules.synthetic import ensure_builtin

            self.step("data", "building the built-in dataset (shards) if needed")
            self.shards = ensure_builtin()
        elif self.plan.data is not None:
            self.shards = Path(self.plan.data)

    def step(self, name: str, what: str) -> None:
        elapsed = time.perf_counter() - self.started
        self.log(f"[{elapsed:6.0f}s] {name}: {what}")

    def done(self, run: StageRun) -> None:
        self.step(run.name, "done " + fmt_metrics(run.metrics))

    # -- training --------------------------------------------------------------------------------
    def train_all(self) -> None:
        """Every stage in plan order; with a second core the `side` groups beside the main line."""
        order = self.plan.order
        groups = self.plan.side_groups() if second_core() else {}
        elsewhere = {stage for group in groups.values() for stage in group}
        side: SideProcess | ChainedSide | None = self._start_side(groups[None]) if None in groups else None
        for i, stage in enumerate(order, 1):
            if stage in elsewhere:
                continue
            if side is not None and set(self.plan.upstream_of(stage)) & set(side.names):
                self.stages += side.join()  # this stage reads one that is still training there
                side = None
            self.stages.append(self.run_stage(stage, f"{i}/{len(order)}"))
            self.done(self.stages[-1])
            # a group waiting for this stage starts once the group before it is done (audio2mouth reads its
            # syncnet): a thread waits for that one, so the main line goes on meanwhile
            if stage in groups:
                tasks = self._early_tasks()
                side = (
                    self._start_side(groups[stage], tasks=tasks)
                    if side is None
                    else self._chain_side(side, groups[stage], tasks)
                )
        if side is not None:
            self.stages += side.join()
        rank = {stage: i for i, stage in enumerate(order)}
        self.stages.sort(key=lambda run: rank.get(run.name, len(order)))  # the report lists them in order

    def _early_tasks(self) -> tuple[str, ...]:
        """The plan's `early` tasks whose needs the main line has trained, not yet handed out (now they are)."""
        trained = set(self.run_dirs())
        ready = tuple(
            t.name
            for t in self.plan.tasks
            if t.early and t.name not in self.early and set(t.needs) <= trained
        )
        self.early.update(ready)
        return ready

    def _start_side(
        self, stages: tuple[str, ...], done: Sequence[StageRun] = (), tasks: tuple[str, ...] = ()
    ) -> SideProcess:
        from edtalk.apps.side import SideProcess

        steps = {stage: self.stage_steps(stage) for stage in stages}
        then = f", then the task{'s' * (len(tasks) > 1)} {', '.join(tasks)}" if tasks else ""
        self.step("+".join(stages), f"training in a second process ({steps}){then}")
        return SideProcess.start(self, steps, done, tasks)

    def _chain_side(
        self, before: SideProcess | ChainedSide, stages: tuple[str, ...], tasks: tuple[str, ...] = ()
    ) -> ChainedSide:
        """`stages` (then the early `tasks`) in a second process once `before` is done (it knows `before`'s
        runs)."""
        from edtalk.apps.side import ChainedSide

        return ChainedSide.after(before, stages, lambda done: self._start_side(stages, done, tasks))

    def stage_steps(self, stage: str) -> int | None:
        return self.plan.steps(stage, self.profile, self.budgets)

    def run_stage(self, stage: str, place: str) -> StageRun:
        """Train one stage here, or run the `extract` step (`place`: "i/n" for the log)."""
        if stage == EXTRACT:
            (source,) = self.plan.upstream_of(EXTRACT)
            self.step(stage, f"coefficients of {source}'s generator over the plan's shards ({place})")
            return self.extract(source)
        steps = self.stage_steps(stage)
        self.step(stage, f"training ({place}, {steps if steps is not None else 'the recipe'} steps)")
        return self.train(stage, steps)

    def train(self, stage: str, steps: int | None, extra: list[str] | None = None) -> StageRun:
        """One stage run (`steps` None: the experiment's own; `extra`: dotlist overrides applied last)."""
        from edtalk.train import debug_dependency, fit, runs_of

        cfg = self.stage_config(stage, steps, extra)
        steps = int(cfg.trainer.max_steps) if steps is None else steps
        prepared_here = not self.plan.debug or self._reads_extract(stage)
        if prepared_here:  # else `--debug` prepares the stage's inputs itself (`debug_dependency`)
            self._hand_exports(stage, cfg)
        run_dir = runs_of(cfg) / runs.DEBUG_RUN
        start = time.perf_counter()
        if not _finished(run_dir, steps, cfg):
            if not prepared_here:
                debug_dependency(cfg)
            run_dir = fit(cfg, overwrite=True)
        return StageRun(stage, run_dir, steps, time.perf_counter() - start, runs.last_metrics(run_dir))

    def stage_config(self, stage: str, steps: int | None, extra: list[str] | None = None) -> Any:
        """The run config `train` composes for a stage (its profile layer, inputs, steps, seed)."""
        from edtalk.train import compose

        overrides = [
            *profile_overrides(stage, self.plan.layer(self.profile)),
            *self._init_from(stage),
            f"run.root={self.out / 'runs'}",
            *schedule(steps),
            *([] if self.plan.debug else [f"run.name={runs.DEBUG_RUN}"]),
            *self._data(stage),
            *(self.plan.stage(stage).overrides if stage in self.plan.order else ()),
            *(extra or []),
        ]
        cfg = compose(stage, overrides, debug=self.plan.debug)
        seed_config(cfg, self.seed)
        if steps is not None and "samples_every_n_steps" in cfg.model:
            cfg.model.samples_every_n_steps = max(1, steps // 2)
        return cfg

    def extract(self, source: str) -> StageRun:
        """The `extract` step: sidecars of `source`'s checkpoint (this run trained it) over the plan's shards."""
        import torch

        from edtalk.apps.extract import extract_step

        done = self.run_dirs()
        if source not in done or self.shards is None:
            raise ValueError(
                f"{self.plan.path}: extract needs {source!r} trained first and the plan's shards"
            )
        device = "cuda" if torch.cuda.is_available() and not self.plan.debug else "cpu"
        run_dir = runs.debug_run(self.out / "runs", EXTRACT)
        start = time.perf_counter()
        extract_step(run_dir, runs.checkpoint(done[source]), self.shards, device)
        return StageRun(EXTRACT, run_dir, 0, time.perf_counter() - start)

    def _reads_extract(self, stage: str) -> bool:
        return stage in self.plan.order and EXTRACT in self.plan.upstream_of(stage)

    def _data(self, stage: str) -> list[str]:
        """`data.root=`: the `extract` step's shards for a stage that reads it, else the plan's shards when
        `data:` names a folder or URL ([]: the stage's own, e.g. the built-in dataset)."""
        done = self.run_dirs()
        if self._reads_extract(stage) and EXTRACT in done:
            return [f"data.root={runs.extracted_data(done[EXTRACT])}"]
        if self.plan.data not in (None, "builtin"):
            return [f"data.root={self.plan.data}"]
        return []

    def _hand_exports(self, stage: str, cfg: Any) -> None:
        """A stage whose `model:` has a key named after a stage it reads, unset, gets that stage's export
        there (audio2mouth's `model.syncnet`)."""
        done = self.run_dirs()
        for name in self.plan.upstream_of(stage) if stage in self.plan.order else ():
            path = runs.export(done[name], name) if name in done else None
            if path is not None and name in cfg.model and cfg.model[name] is None:
                cfg.model[name] = str(path)

    def _init_from(self, stage: str) -> list[str]:
        """`init_from=` the finished checkpoint of the stage this one requires, when this run trained it."""
        from omegaconf import DictConfig, OmegaConf

        from edtalk.train import experiment_file

        exp = OmegaConf.load(experiment_file(stage))
        requires = exp.get("requires") if isinstance(exp, DictConfig) else None
        done = self.run_dirs()
        if not requires or requires not in done:
            return []
        return [f"init_from={runs.checkpoint(done[requires])}"]

    def run_dirs(self) -> dict[str, Path]:
        """The run directory of each stage this run trained."""
        return {s.name: s.run_dir for s in self.stages}

    def checkpoints(self) -> dict[str, Path | None]:
        """The generator (the plan's `generator` stage, last.ckpt) and each trained stage's export; or the
        `official` checkpoints."""
        if self.official is not None:
            return self.official
        done = self.run_dirs()
        out: dict[str, Path | None] = {}
        if self.plan.generator in done:
            out["generator"] = runs.checkpoint(done[self.plan.generator])
        for stage in ("audio2mouth", "audio2pose", "audio2exp"):  # what the renderer reads
            out[stage] = runs.export(done[stage], stage) if stage in done else None
        return out

    # -- tasks -----------------------------------------------------------------------------------
    def run_tasks(self) -> None:
        """The plan's tasks in order; a task `beside: X` runs in a second process while the main one runs the
        tasks after it up to and including X, and is joined then."""
        from edtalk.apps.side import SideProcess

        trained = set(self.run_dirs())
        side: tuple[TaskSpec, SideProcess] | None = None
        for task in self.plan.tasks:
            if task.name in self.early:  # ran in the second process during training
                continue
            runs = set(task.needs) <= trained
            # one task at a time in the second process: join it before another starts, or when its partner
            # is skipped (it then does not wait for a later task it was not meant to overlap)
            if side is not None and (task.beside is not None or (not runs and side[0].beside == task.name)):
                merge_results(self.results, side[1].join())
                side = None
            if not runs:
                continue
            if task.beside is not None and second_core():
                side = (task, SideProcess.start_task(self, task.name))
                continue
            merge_results(self.results, self.task(task.name))
            if side is not None and side[0].beside == task.name:
                merge_results(self.results, side[1].join())
                side = None
        if side is not None:
            merge_results(self.results, side[1].join())

    def task(self, name: str) -> dict[str, Any]:
        """Run one task (a name of `TASKS` or `module:function`) with its plan entry's `options`; returns what it
        adds to `results`."""
        options = next((dict(t.options) for t in self.plan.tasks if t.name == name), {})
        result: dict[str, Any] = task_function(name)(self, **options)
        return result


def merge_results(results: dict[str, Any], new: dict[str, Any]) -> None:
    """`results.update(new)`, but a dict under a key both have is merged one level deep: a task run in the
    second process (which starts with no results) adds its entry to `learning` without dropping the rest."""
    for key, value in new.items():
        old = results.get(key)
        results[key] = {**old, **value} if isinstance(old, dict) and isinstance(value, dict) else value


def schedule(steps: int | None) -> list[str]:
    """Dotlist of a stage's step budget: max_steps, 4 validations, 2 checkpoints ([]: the experiment's own)."""
    if steps is None:
        return []
    return [
        f"trainer.max_steps={steps}",
        f"trainer.val_check_interval={max(1, steps // 4)}",  # 4 points of the PSNR curve per stage
        f"checkpoint.every_n_steps={max(1, steps // 2)}",
    ]


def second_core() -> bool:
    """Whether the job uses a second process: the machine has more than one core."""
    return (os.cpu_count() or 1) > 1


def seed_config(cfg: Any, seed: int) -> None:
    """The job's seed as the stage's `seed` and, where its DataModule takes one, `data.seed`."""
    import inspect

    from omegaconf import open_dict

    cfg.seed = seed
    module, _, name = str(cfg.data.module).rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    if seed != 0 and "seed" in inspect.signature(cls).parameters:  # 0: the DataModules' default
        with open_dict(cfg.data):
            cfg.data.seed = seed


def profile_overrides(stage: str, layer: str | None) -> list[str]:
    """Dotlist of `experiments/<layer>/<stage>.yaml` ([] without a layer or a file)."""
    import json

    from omegaconf import OmegaConf

    from edtalk.train import experiments_dir

    path = experiments_dir() / layer / f"{stage}.yaml" if layer else None
    if path is None or not path.is_file():
        return []
    return _dotlist(OmegaConf.to_container(OmegaConf.load(path), resolve=False), "", json.dumps)


def _dotlist(node: Any, prefix: str, dumps: Callable[[Any], str]) -> list[str]:
    if isinstance(node, dict):
        return [item for k, v in node.items() for item in _dotlist(v, f"{prefix}{k}.", dumps)]
    value = dumps(node) if isinstance(node, list | str) else ("null" if node is None else str(node))
    return [f"{prefix[:-1]}={value}"]


def _finished(run_dir: Path, steps: int, cfg: Any) -> bool:
    """A checkpoint of a run that reached `steps`, with the generator `cfg` builds (same profile), the same
    seed, model and data settings, and no input newer than itself (`runs.recipe_changes`)."""
    from omegaconf import OmegaConf

    container: Any = OmegaConf.to_container(cfg, resolve=True)
    recipe = {k: container.get(k) for k in (*runs.RECIPE_SECTIONS, "init_from")}
    return runs.finished(run_dir, steps, container.get("generator"), recipe, setting_defaults(str(cfg.stage)))


def setting_defaults(stage: str) -> dict[str, Any]:
    """Today's default of each `model.` setting of a stage and of each `generator.` setting (dotted keys):
    a run trained before a setting existed ran with its default, so adding a setting does not make
    finished stages stale."""
    import dataclasses

    from edtalk.config import GeneratorConfig
    from edtalk.stages import stage_class

    config = stage_class(stage).Config()
    return {
        **{f"model.{k}": v for k, v in runs.leaves(dataclasses.asdict(config)).items()},
        **{f"generator.{k}": v for k, v in runs.leaves(dataclasses.asdict(GeneratorConfig())).items()},
    }


def fmt_metrics(metrics: dict[str, float], keys: int = 4) -> str:
    items = [(k, v) for k, v in metrics.items() if k.startswith("val/") or k in ("PSNR", "SSIM", "F-LMD")]
    items = items or list(metrics.items())
    return ", ".join(f"{k}={v:.4g}" for k, v in items[:keys] if math.isfinite(v))
