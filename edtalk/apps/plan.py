"""A plan: the stage graph to run (which stage reads which stage's output, which can run beside which).

A plan file (YAML; `experiments/demo/plan.yaml` is the main job, `edtalk quickstart`) declares

    data: builtin                  # build the built-in dataset first (null: the stages' own data.root;
                                   # a shard directory or URL: every stage's data.root)
    debug: true                    # compose each stage with experiments/debug.yaml (`edtalk fit --debug`)
    generator: expression          # the stage whose generator the tasks evaluate and render
    budgets: {visual: 200, audio: 120}        # named step counts (`quickstart --steps/--audio-steps`)
    profiles:                      # config layers: experiments/<layer>/<stage>.yaml + step scales
      demo: {layer: demo, scale: {reconstruct: 5.0}}   # + stages: {STAGE: {after: [...], side: true}}
    stages:                        # in order; `after`: stages whose outputs it reads (init_from, exports)
      - {name: reconstruct, budget: visual}   # budget: recipe = the experiment's own steps and intervals
      - {name: syncnet, budget: audio, side: true}       # side: may run in a second process
      - {name: extract, after: [expression]}  # coefficient sidecars of that generator over the plan's shards
      - {name: audio2mouth, budget: audio, after: [mouth_pose, syncnet, extract], side: true}
    tasks:                         # after training, in order; `needs`: skipped unless these stages ran
      - {name: evaluate, needs: [expression], beside: learning}   # beside: in a second process while the
                                                                   # main one runs the tasks up to `learning`
      - {name: learning_probes, needs: [mouth_pose], early: true}  # early: in the second process once its
                                                                   # needs are trained, while training goes on
      - report

An `early` task runs in the second process after the side group that starts when the last main-line stage it
needs is done (audio2mouth and audio2pose after mouth_pose, in the demo), so it fills that process's wait for
the main line; it makes files that a later task reads (it returns no results). Without a second process, or
when no side group starts once its needs are trained, it runs where it is listed.

A stage is an experiment (`experiments/<name>.yaml`) trained by `edtalk fit`, except the step `extract`:
`edtalk extract-coefficients` with the checkpoint of the one generator stage it reads, over the plan's
shards (linked into its own folder, so a shared dataset stays as it is). A stage that reads `extract`
trains on those shards and their sidecars (under `debug: true` its own `--debug` extraction is skipped).
Experiments/cluster/plan.yaml is the full recipe as a plan.

The graph is read once (`load_plan`); `upstream_of(stage)` answers for the main job's graph. The runner
that executes a plan is `edtalk.apps.runner.PlanRun`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Tasks a plan may name (or any `package.module:function` taking the PlanRun and returning results).
TASKS = {
    "evaluate": "edtalk.apps.tasks:evaluate",
    "learning": "edtalk.apps.tasks:learning",
    "emotion_vectors": "edtalk.apps.tasks:emotion_vectors",
    "emotion_renders": "edtalk.apps.emotion_renders:emotion_renders",
    "finetune": "edtalk.apps.tasks:finetune",
    "render": "edtalk.apps.renders:render",
    "learning_probes": "edtalk.apps.tasks:learning_probes",
    "report": "edtalk.apps.report:report",
}
EXTRACT = "extract"  # the coefficient-extraction step of the stage graph (no experiment)
RECIPE = "recipe"  # a budget: the experiment's own trainer.max_steps, validation and checkpoint intervals
# Experiments whose `stage:` trains a generator, i.e. what `extract` may read (edtalk.stages: the GAN stages)
GENERATOR_STAGES = ("reconstruct", "mouth_pose", "expression", "finetune")


@dataclass(frozen=True)
class StageSpec:
    """One training stage of a plan: `edtalk fit <experiment>` with the plan's step budget."""

    name: str
    budget: str | int | None = "visual"  # a key of `Plan.budgets`, a step count, RECIPE; None: `extract`
    after: tuple[str, ...] = ()
    side: bool = False
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True)
class TaskSpec:
    name: str
    needs: tuple[str, ...] = ()
    beside: str | None = None
    early: bool = False
    options: tuple[tuple[str, Any], ...] = ()  # keyword arguments of the task function (`options:`)


@dataclass(frozen=True)
class Plan:
    """A parsed plan file (see the module docstring)."""

    stages: tuple[StageSpec, ...]
    tasks: tuple[TaskSpec, ...] = ()
    data: str | None = "builtin"
    debug: bool = True
    generator: str | None = None
    budgets: dict[str, int] = field(default_factory=dict)
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    eval_clips: int = 4
    path: Path | None = None

    def with_overrides(self, settings: Sequence[str]) -> Plan:
        """This plan with `STAGE.KEY=VALUE` settings appended to the named stages' overrides (`--set`),
        e.g. `expression.model.ablation.no_eem=true`; a later setting wins."""
        extra: dict[str, list[str]] = {}
        for item in settings:
            stage, _, dotlist = item.partition(".")
            if stage not in self.order or "=" not in dotlist:
                raise ValueError(
                    f"--set {item!r}: use STAGE.KEY=VALUE with STAGE one of {', '.join(self.order)} "
                    "(e.g. expression.model.ablation.no_eem=true)"
                )
            extra.setdefault(stage, []).append(dotlist)
        stages = tuple(
            dataclasses.replace(s, overrides=(*s.overrides, *extra.get(s.name, ()))) for s in self.stages
        )
        return dataclasses.replace(self, stages=stages)

    def stage(self, name: str) -> StageSpec:
        for spec in self.stages:
            if spec.name == name:
                return spec
        raise KeyError(f"{self.path}: no stage {name!r}; stages: {[s.name for s in self.stages]}")

    @property
    def order(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.stages)

    def upstream_of(self, stage: str) -> tuple[str, ...]:
        """The stages whose outputs `stage` reads (directly)."""
        return self.stage(stage).after

    def side_groups(self) -> dict[str | None, tuple[str, ...]]:
        """With a second core, the `side` stages by the main-line stage they wait for (None: from the start).

        A side stage waits for the last main-line stage (in plan order) that it reads, directly or through
        other side stages; each group starts when that stage is done and the group before it is in."""
        main = [s.name for s in self.stages if not s.side]
        groups: dict[str | None, list[str]] = {}
        for spec in self.stages:
            if spec.side:
                waits = [s for s in self._reads(spec.name) if s in main]
                groups.setdefault(max(waits, key=main.index) if waits else None, []).append(spec.name)
        return {k: tuple(v) for k, v in groups.items()}

    def lineage(self, stage: str) -> tuple[str, ...]:
        """`stage` and every stage it reads, transitively, in plan order (the generator's: its visual stages)."""
        keep = self._reads(stage) | {stage}
        return tuple(s for s in self.order if s in keep)

    def _reads(self, stage: str) -> set[str]:
        """Every stage `stage` reads, transitively."""
        out: set[str] = set()
        todo = list(self.upstream_of(stage))
        while todo:
            name = todo.pop()
            if name not in out:
                out.add(name)
                todo += self.upstream_of(name)
        return out

    def graph_table(self) -> str:
        """The stage graph as a markdown table (experiments/demo/README.md holds the main plan's)."""
        groups = self.side_groups()
        wait = {stage: key for key, group in groups.items() for stage in group}
        lines = ["| stage | reads the output of | with a second core | budget |", "|---|---|---|---|"]
        for spec in self.stages:
            reads = ", ".join(spec.after) or "–"
            where = "main process"
            if spec.side:
                where = "second process, " + (
                    f"after {wait[spec.name]}" if wait[spec.name] else "from the start"
                )
            lines.append(
                f"| {spec.name} | {reads} | {where} | {'–' if spec.budget is None else spec.budget} |"
            )
        return "\n".join(lines) + "\n"

    def steps(self, stage: str, profile: str, budgets: dict[str, int] | None = None) -> int | None:
        """The stage's step count: its budget, scaled by the profile's `scale` (at least 1); None for a
        `recipe` budget (the experiment's own) and for `extract` (no training)."""
        budget = self.stage(stage).budget
        if budget is None or budget == RECIPE:
            return None
        base = budget if isinstance(budget, int) else {**self.budgets, **(budgets or {})}[budget]
        scale = float(self.profiles.get(profile, {}).get("scale", {}).get(stage, 1.0))
        return max(1, round(base * scale))

    def for_profile(self, profile: str) -> Plan:
        """This plan with the profile's `stages:` changes to the graph applied (`{STAGE: {after, side}}`),
        e.g. a stage the profile configures to read nothing more may train from the start; checked."""
        changes = self.profiles.get(profile, {}).get("stages") or {}
        if not changes:
            return self
        where = f"{self.path}: profiles: {profile}: stages"
        for name, change in changes.items():
            if name not in self.order or not isinstance(change, dict) or set(change) - {"after", "side"}:
                raise ValueError(
                    f"{where}: {name}: {change!r}; give a stage of the plan {{after: [...], side: bool}}"
                )
        stages = tuple(
            dataclasses.replace(
                s,
                after=tuple(changes[s.name].get("after", s.after) or ()),
                side=bool(changes[s.name].get("side", s.side)),
            )
            if s.name in changes
            else s
            for s in self.stages
        )
        plan = dataclasses.replace(self, stages=stages)
        check(plan)
        return plan

    def layer(self, profile: str) -> str | None:
        """The config folder under experiments/ the profile layers over each stage (None: none)."""
        if profile and profile not in self.profiles:
            raise ValueError(f"--profile must be one of {tuple(self.profiles)}, got {profile!r}")
        return self.profiles.get(profile, {}).get("layer")


def main_plan() -> Path:
    """The main job's plan file: `experiments/demo/plan.yaml`."""
    from edtalk.train import experiments_dir

    return experiments_dir() / "demo" / "plan.yaml"


def upstream_of(stage: str, plan: Plan | None = None) -> tuple[str, ...]:
    """The stages whose outputs `stage` reads in `plan` (default: the main job's graph); () for a stage
    the plan does not list."""
    plan = plan or load_plan(main_plan())
    return plan.upstream_of(stage) if stage in plan.order else ()


def load_plan(path: Path) -> Plan:
    """Parse and check a plan file; errors name the file and the key."""
    import yaml

    if not path.is_file():
        raise FileNotFoundError(f"plan file {path} not found")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict) or not raw.get("stages"):
        raise ValueError(f"{path}: a plan needs a `stages:` list (see edtalk/apps/plan.py)")
    known = {"stages", "tasks", "data", "debug", "generator", "budgets", "profiles", "eval_clips"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown}; a plan has {sorted(known)}")
    plan = Plan(
        stages=tuple(_stage(path, item) for item in raw["stages"]),
        tasks=tuple(_task(path, item) for item in raw.get("tasks") or ()),
        data=raw.get("data", "builtin"),
        debug=bool(raw.get("debug", True)),
        generator=raw.get("generator"),
        budgets={str(k): int(v) for k, v in (raw.get("budgets") or {}).items()},
        profiles={str(k): dict(v or {}) for k, v in (raw.get("profiles") or {}).items()},
        eval_clips=int(raw.get("eval_clips", 4)),
        path=path,
    )
    check(plan)
    return plan


def _stage(path: Path, item: Any) -> StageSpec:
    item = {"name": item} if isinstance(item, str) else dict(item)
    if item.get("name") == EXTRACT:
        if set(item) - {"name", "after"}:
            raise ValueError(
                f"{path}: stages: {EXTRACT} takes only `after: [<generator stage>]`, got {sorted(item)}"
            )
        return StageSpec(EXTRACT, budget=None, after=tuple(item.get("after") or ()))
    unknown = sorted(set(item) - {"name", "budget", "after", "side", "overrides"})
    if unknown or "name" not in item:
        raise ValueError(
            f"{path}: stage entry {item} needs `name` and may have budget, after, side, overrides"
        )
    return StageSpec(
        name=str(item["name"]),
        budget=item.get("budget", "visual"),
        after=tuple(item.get("after") or ()),
        side=bool(item.get("side", False)),
        overrides=tuple(str(o) for o in item.get("overrides") or ()),
    )


def _task(path: Path, item: Any) -> TaskSpec:
    item = {"name": item} if isinstance(item, str) else dict(item)
    unknown = sorted(set(item) - {"name", "needs", "beside", "early", "options"})
    if unknown or "name" not in item:
        raise ValueError(f"{path}: task entry {item} needs `name` and may have needs, beside, early, options")
    early = item.get("early", False)
    if not isinstance(early, bool):
        raise ValueError(f"{path}: task {item['name']!r}: early must be true or false, got {early!r}")
    options = item.get("options") or {}
    if not isinstance(options, dict) or not all(isinstance(k, str) for k in options):
        raise ValueError(f"{path}: task {item['name']!r}: options must map names to values, got {options!r}")
    return TaskSpec(
        str(item["name"]), tuple(item.get("needs") or ()), item.get("beside"), early, tuple(options.items())
    )


def check(plan: Plan) -> None:
    """Every name a plan refers to exists and comes earlier; budgets, the extract step and tasks resolve."""
    seen: set[str] = set()
    for spec in plan.stages:
        if spec.name in seen:
            raise ValueError(f"{plan.path}: stage {spec.name!r} is listed twice")
        if spec.name == EXTRACT:
            _check_extract(plan, spec, seen)
        late = [a for a in spec.after if a not in seen]
        if late:
            raise ValueError(
                f"{plan.path}: stage {spec.name!r} reads {late}, which the plan does not list before it"
            )
        if isinstance(spec.budget, str) and spec.budget not in (*plan.budgets, RECIPE):
            raise ValueError(
                f"{plan.path}: stage {spec.name!r} budget {spec.budget!r} is not in `budgets:` (or {RECIPE!r})"
            )
        seen.add(spec.name)
    if plan.generator is not None and plan.generator not in seen - {EXTRACT}:
        raise ValueError(f"{plan.path}: generator: {plan.generator!r} is not a stage of the plan")
    _check_tasks(plan, seen)
    _check_experiments(plan)


def _check_extract(plan: Plan, spec: StageSpec, seen: set[str]) -> None:
    """`extract` reads exactly one generator stage listed before it, over the plan's own shards."""
    where = f"{plan.path}: stages: {EXTRACT}"
    if len(spec.after) != 1 or spec.after[0] not in seen:
        raise ValueError(
            f"{where} reads {list(spec.after)}; it needs `after: [<one generator stage listed before it>]` "
            f"(a {'/'.join(GENERATOR_STAGES)} experiment), so a generator exists when it runs"
        )
    try:
        stage = _stage_of(spec.after[0])
    except FileNotFoundError as err:
        raise ValueError(f"{where}: {err}") from None
    if stage not in GENERATOR_STAGES:
        raise ValueError(
            f"{where} reads {spec.after[0]!r} (stage {stage}), which trains no generator; "
            f"give it one of the plan's {'/'.join(GENERATOR_STAGES)} stages"
        )
    if plan.data is None:
        raise ValueError(
            f"{where} runs over the plan's shards: set `data:` to builtin or a shard directory (it is null)"
        )


def _stage_of(experiment: str) -> str:
    """The `stage:` of an experiment file."""
    import yaml

    from edtalk.train import experiment_file

    raw = yaml.safe_load(experiment_file(experiment).read_text())
    return str(raw.get("stage") if isinstance(raw, dict) else None)


def _check_experiments(plan: Plan) -> None:
    """Every stage but `extract` is an experiment (`experiments/<name>.yaml` or a YAML path)."""
    from edtalk.train import experiment_file

    for spec in plan.stages:
        if spec.name != EXTRACT:
            try:
                experiment_file(spec.name)
            except FileNotFoundError as err:
                raise ValueError(f"{plan.path}: stages: {spec.name!r}: {err}") from None


def task_function(name: str) -> Any:
    """The function of a task name (`TASKS` or `module:function`)."""
    import importlib

    module, _, func = TASKS.get(name, name).partition(":")
    return getattr(importlib.import_module(module), func)


def _check_options(plan: Plan, task: TaskSpec) -> None:
    """A task's `options:` are keyword arguments its function takes (checked before anything trains)."""
    import inspect

    params = inspect.signature(task_function(task.name)).parameters
    takes = [n for n, p in params.items() if p.kind is p.KEYWORD_ONLY]
    unknown = [k for k, _ in task.options if k not in takes]
    if unknown:
        raise ValueError(
            f"{plan.path}: task {task.name!r}: unknown option(s) {unknown}; it takes {takes or 'none'}"
        )


def _check_tasks(plan: Plan, seen: set[str]) -> None:
    names = [t.name for t in plan.tasks]
    for i, task in enumerate(plan.tasks):
        if task.name not in TASKS and ":" not in task.name:
            raise ValueError(
                f"{plan.path}: unknown task {task.name!r}; known: {sorted(TASKS)} or module:function"
            )
        if [n for n in task.needs if n not in seen]:
            raise ValueError(
                f"{plan.path}: task {task.name!r} needs {list(task.needs)}, not all stages of the plan"
            )
        if task.options:
            _check_options(plan, task)
        if task.early and (task.beside is not None or not task.needs):
            raise ValueError(
                f"{plan.path}: early task {task.name!r} needs the stages it reads (`needs`) and no `beside`: "
                "it runs in the second process once they are trained"
            )
        if task.beside is not None and task.beside not in names[i + 1 :]:
            raise ValueError(
                f"{plan.path}: task {task.name!r} runs beside {task.beside!r}, which is no later task"
            )
        if task.beside is not None:
            span = plan.tasks[i + 1 : names.index(task.beside, i + 1) + 1]
            inner = [t.name for t in span if t.beside is not None]
            if inner:
                raise ValueError(
                    f"{plan.path}: task {task.name!r} runs beside the tasks up to {task.beside!r}, and so "
                    f"would {inner[0]!r}, one of them: the second process runs one task at a time; "
                    f"end {task.name!r}'s span before it"
                )
