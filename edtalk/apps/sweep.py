"""Hyper-parameter sweeps over experiment keys: wandb sweep specs, run by a wandb agent or locally.

A sweep file (`sweeps/*.yaml`) is a plain wandb sweep configuration whose parameters are dotted keys
of an experiment and whose command runs `edtalk fit`:

    method: grid                      # grid | random (| bayes: wandb server only)
    metric: {name: val/loss, goal: minimize}
    parameters:
      model.optim.lr: {values: [0.0016, 0.0004]}
      model.loss.sync: {values: [5.0, 1.0]}
    command: [edtalk, fit, audio2mouth, "${args_no_hyphens}"]

With a wandb server the file goes to `wandb.sweep` unchanged and `wandb agent` runs the command once
per trial (`param=value` overrides); agents on several nodes share one sweep id. `run_local` needs no
server: it expands the grid (or draws `count` random trials), runs every trial as a normal
`edtalk fit` subprocess under `<run.root>/<experiment>/<sweep>-<NNN>`, reads the objective from the
trial's CSV logs (its last logged value, as wandb's run summary) and writes the result table
as CSV and Markdown.
"""

from __future__ import annotations

import csv
import itertools
import math
import os
import random
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edtalk import runs as run_layout

METHODS = ("grid", "random", "bayes")
DISTRIBUTIONS = ("categorical", "constant", "uniform", "log_uniform_values", "int_uniform", "q_uniform")


# -- the spec ------------------------------------------------------------------------------------------
@dataclass
class SweepSpec:
    """A parsed sweep file.

    Attributes:
        path: the file.
        config: the wandb sweep configuration as read.
        experiment: the experiment its command trains (`edtalk fit <experiment>`).
    """

    path: Path
    config: dict[str, Any]
    experiment: str

    @property
    def name(self) -> str:
        return str(self.config.get("name") or self.path.stem)

    @property
    def method(self) -> str:
        return str(self.config["method"])

    @property
    def metric(self) -> str:
        return str(self.config["metric"]["name"])

    @property
    def goal(self) -> str:
        return str(self.config["metric"].get("goal", "minimize"))

    @property
    def parameters(self) -> dict[str, dict[str, Any]]:
        return dict(self.config["parameters"])


def experiment_of(command: Any, path: Path) -> str:
    """The experiment in a sweep command `[edtalk, fit, <experiment>, "${args_no_hyphens}"]`."""
    if not isinstance(command, list) or "fit" not in command or command.index("fit") + 1 >= len(command):
        raise ValueError(
            f'{path}: `command` must run edtalk fit, e.g. [edtalk, fit, audio2mouth, "${{args_no_hyphens}}"]; '
            f"got {command!r}"
        )
    experiment = str(command[command.index("fit") + 1])
    if "${args_no_hyphens}" not in command:
        raise ValueError(
            f'{path}: `command` must pass the trial\'s values as "${{args_no_hyphens}}" (key=value)'
        )
    return experiment


def load_spec(path: str | Path) -> SweepSpec:
    """Read and check the structure of a sweep file (see `validate` for the keys themselves)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sweep file {path} not found")
    config = yaml.safe_load(path.read_text())
    if not isinstance(config, dict):
        raise ValueError(f"{path}: a sweep file is a YAML mapping (method, metric, parameters, command)")
    missing = [k for k in ("method", "metric", "parameters", "command") if k not in config]
    if missing:
        raise ValueError(f"{path}: missing {missing} (wandb sweep format)")
    if config["method"] not in METHODS:
        raise ValueError(f"{path}: method must be one of {METHODS}, got {config['method']!r}")
    if not isinstance(config["metric"], dict) or "name" not in config["metric"]:
        raise ValueError(f"{path}: metric must be {{name: val/..., goal: minimize|maximize}}")
    if config["metric"].get("goal", "minimize") not in ("minimize", "maximize"):
        raise ValueError(f"{path}: metric.goal must be minimize or maximize")
    if not isinstance(config["parameters"], dict) or not config["parameters"]:
        raise ValueError(f"{path}: parameters must map experiment keys to {{values: [...]}} etc.")
    for key, param in config["parameters"].items():
        _check_param(path, key, param)
    return SweepSpec(path, config, experiment_of(config["command"], path))


def _check_param(path: Path, key: str, param: Any) -> None:
    if not isinstance(param, dict):
        raise ValueError(f"{path}: parameter {key} must be a mapping ({{values: [...]}}), got {param!r}")
    if "values" in param:
        if not isinstance(param["values"], list) or not param["values"]:
            raise ValueError(f"{path}: parameter {key}: values must be a non-empty list")
    elif "value" not in param:
        dist = param.get("distribution", "uniform")
        if dist not in DISTRIBUTIONS or "min" not in param or "max" not in param:
            raise ValueError(
                f"{path}: parameter {key} needs values, value, or min/max with a distribution in "
                f"{DISTRIBUTIONS}"
            )


def probe_values(param: dict[str, Any]) -> list[Any]:
    """Values that exercise a parameter's type: every listed value, or the range ends."""
    if "values" in param:
        return list(param["values"])
    if "value" in param:
        return [param["value"]]
    return [param["min"], param["max"]]


def validate(spec: SweepSpec, extra: Sequence[str] = ()) -> None:
    """Compose the experiment with every parameter value as an override: unknown keys and bad types fail.

    Raises:
        ValueError: naming the sweep file, the key and the experiment.
    """
    from edtalk.train import compose

    for key, param in spec.parameters.items():
        for value in probe_values(param):
            try:
                compose(spec.experiment, [*extra, override(key, value)])
            except ValueError as err:
                raise ValueError(
                    f"{spec.path}: parameter {key}={value!r} does not fit experiment {spec.experiment}: {err}"
                ) from err


def override(key: str, value: Any) -> str:
    """`key=value` in omegaconf dotlist syntax (YAML flow style for lists)."""
    text = yaml.safe_dump(value, default_flow_style=True).strip()
    return f"{key}={text.removesuffix('...').strip()}"


# -- trials ---------------------------------------------------------------------------------------------
def grid(spec: SweepSpec) -> list[dict[str, Any]]:
    """Every combination of the listed values (parameters in file order)."""
    keys = list(spec.parameters)
    for key in keys:
        param = spec.parameters[key]
        if "values" not in param and "value" not in param:
            raise ValueError(f"{spec.path}: grid search needs `values` for {key} (it has a distribution)")
    choices = [probe_values(spec.parameters[k]) for k in keys]
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*choices)]


def draw(param: dict[str, Any], rng: random.Random) -> Any:
    """One random value of a parameter (wandb's distributions)."""
    if "values" in param:
        return rng.choice(param["values"])
    if "value" in param:
        return param["value"]
    lo, hi = param["min"], param["max"]
    dist = param.get(
        "distribution", "int_uniform" if isinstance(lo, int) and isinstance(hi, int) else "uniform"
    )
    if dist == "int_uniform":
        return rng.randint(int(lo), int(hi))
    if dist == "log_uniform_values":
        return math.exp(rng.uniform(math.log(lo), math.log(hi)))
    if dist == "q_uniform":
        q = float(param.get("q", 1.0))
        return round(rng.uniform(lo, hi) / q) * q
    return rng.uniform(lo, hi)


def random_trials(spec: SweepSpec, count: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [{k: draw(p, rng) for k, p in spec.parameters.items()} for _ in range(count)]


def trials_of(spec: SweepSpec, count: int | None, seed: int = 0) -> list[dict[str, Any]]:
    """The local trials: the grid (first `count` if given) or `count` random draws."""
    if spec.method == "grid":
        trials = grid(spec)
        return trials[:count] if count else trials
    if spec.method == "bayes":
        raise ValueError(
            f"{spec.path}: method bayes needs a wandb server (edtalk sweep without --local); "
            "use grid or random for local sweeps"
        )
    n = count or int(spec.config.get("run_cap") or 0)
    if n <= 0:
        raise ValueError(f"{spec.path}: random search needs a trial count: --count N or run_cap in the file")
    return random_trials(spec, n, seed)


# -- running locally ------------------------------------------------------------------------------------
@dataclass
class Trial:
    """One local trial and its outcome."""

    index: int
    params: dict[str, Any]
    run_dir: Path
    returncode: int | None = None
    value: float | None = None
    seconds: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.value is not None


def last_value(metrics_csv: Path, name: str) -> float | None:
    """The last logged value of `name` in a Lightning CSVLogger file (None if never logged)."""
    if not metrics_csv.is_file():
        return None
    value = None
    with metrics_csv.open(newline="") as f:
        for row in csv.DictReader(f):
            if row.get(name) not in (None, ""):
                value = float(row[name])
    return value


def run_metric(run_dir: Path, name: str) -> float | None:
    """The last value of `name` a run logged, over all its sessions (resumes)."""
    value = None
    for path in run_layout.metric_files(run_dir):
        found = last_value(path, name)
        value = found if found is not None else value
    return value


def fit_command(spec: SweepSpec, trial: Trial, extra: Sequence[str], run_name: str, debug: bool) -> list[str]:
    """The `edtalk fit` command line of one trial (overrides before `--debug`, as argparse needs)."""
    params = [override(k, v) for k, v in trial.params.items()]
    cmd = [
        sys.executable,
        "-m",
        "edtalk.cli",
        "fit",
        spec.experiment,
        *extra,
        *params,
        f"run.name={run_name}",
    ]
    return [*cmd, "--debug"] if debug else cmd


def run_local(
    spec: SweepSpec,
    extra: Sequence[str] = (),
    debug: bool = False,
    count: int | None = None,
    seed: int = 0,
    out: Path | None = None,
    log: Callable[[str], None] = print,
) -> tuple[list[Trial], Path]:
    """Run every trial as an `edtalk fit` subprocess; write `results.csv` / `results.md`.

    Args:
        spec: the sweep.
        extra: overrides applied to every trial (e.g. `trainer.max_steps=200`, `run.root=...`).
        debug: run trials with `--debug` (tiny model, built-in data, a few steps).
        count: number of trials (random search; the first `count` of a grid).
        seed: seed of random search.
        out: folder of the result table (default `<run.root>/sweeps/<sweep name>`).
        log: progress output.

    Returns:
        (trials in run order, folder of the table).
    """
    import time

    from edtalk.train import compose

    validate(spec, extra)
    cfg = compose(spec.experiment, list(extra), debug=debug)
    runs = Path(cfg.run.root) / spec.experiment
    out = out or Path(cfg.run.root) / "sweeps" / spec.name
    trials = []
    for i, params in enumerate(trials_of(spec, count, seed)):
        name = f"{spec.name}-{i:03d}"
        trial = Trial(i, params, runs / name)
        log(f"[{spec.name}] trial {i}: {' '.join(override(k, v) for k, v in params.items())}")
        start = time.perf_counter()
        env = {**os.environ, "WANDB_MODE": os.environ.get("WANDB_MODE", "offline")}
        proc = subprocess.run(fit_command(spec, trial, extra, name, debug), env=env, check=False)
        trial.seconds = time.perf_counter() - start
        trial.returncode = proc.returncode
        trial.value = run_metric(trial.run_dir, spec.metric)
        trials.append(trial)
        log(f"[{spec.name}] trial {i}: {spec.metric} = {trial.value} (exit {proc.returncode})")
    write_table(spec, trials, out)
    return trials, out


def ranked(spec: SweepSpec, trials: Sequence[Trial]) -> list[Trial]:
    """Successful trials best first, then failed ones in run order."""
    sign = 1.0 if spec.goal == "minimize" else -1.0
    good = sorted((t for t in trials if t.ok), key=lambda t: sign * float(t.value))  # type: ignore[arg-type]
    return good + [t for t in trials if not t.ok]


def table_rows(spec: SweepSpec, trials: Sequence[Trial]) -> tuple[list[str], list[list[str]]]:
    header = ["rank", "trial", *spec.parameters, spec.metric, "status", "seconds", "run_dir"]
    rows = []
    for rank, t in enumerate(ranked(spec, trials), 1):
        status = "ok" if t.ok else f"failed (exit {t.returncode})" if t.returncode else "no metric"
        value = f"{t.value:.6g}" if t.value is not None else ""
        params = [str(t.params[k]) for k in spec.parameters]
        rows.append(
            [
                str(rank) if t.ok else "-",
                str(t.index),
                *params,
                value,
                status,
                f"{t.seconds:.1f}",
                str(t.run_dir),
            ]
        )
    return header, rows


def markdown(spec: SweepSpec, trials: Sequence[Trial]) -> str:
    """The result table in Markdown, best trial first."""
    header, rows = table_rows(spec, trials)
    arrow = "↓" if spec.goal == "minimize" else "↑"
    header = [f"{h} {arrow}" if h == spec.metric else h for h in header]
    lines = [
        f"## Sweep `{spec.name}` ({spec.method}, experiment `{spec.experiment}`, objective {spec.metric} {spec.goal})",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_table(spec: SweepSpec, trials: Sequence[Trial], out: Path) -> tuple[Path, Path]:
    """`out/results.csv` and `out/results.md`."""
    out.mkdir(parents=True, exist_ok=True)
    header, rows = table_rows(spec, trials)
    csv_path, md_path = out / "results.csv", out / "results.md"
    with csv_path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    md_path.write_text(markdown(spec, trials))
    return csv_path, md_path


# -- wandb ------------------------------------------------------------------------------------------
def server_configured() -> bool:
    """True when wandb can reach a server: an API key in the environment or in ~/.netrc for its host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    import netrc
    from urllib.parse import urlparse

    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    try:
        return netrc.netrc().authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def run_wandb(
    spec: SweepSpec,
    sweep_id: str | None = None,
    count: int | None = None,
    project: str | None = None,
    entity: str | None = None,
) -> str:
    """Create the wandb sweep (unless joining `sweep_id`) and run an agent on it. Returns the sweep id.

    Trials log online (`WANDB_MODE=online` for the agent's runs). Start more agents, on any node,
    with `edtalk sweep FILE --sweep-id <id>`.
    """
    if not server_configured():
        raise ValueError(
            "no wandb server configured (set WANDB_API_KEY or run `wandb login`; WANDB_BASE_URL for a "
            "self-hosted server); run the sweep without a server with --local"
        )
    validate(spec)
    import wandb

    if sweep_id is None:
        sweep_id = wandb.sweep(
            spec.config, entity=entity, project=project or spec.config.get("project", "edtalk")
        )
    path = "/".join(p for p in (entity, project or spec.config.get("project", "edtalk"), sweep_id) if p)
    cmd = ["wandb", "agent", *(["--count", str(count)] if count else []), path]
    subprocess.run(cmd, env={**os.environ, "WANDB_MODE": "online"}, check=True)
    return sweep_id


def sweep_files(folder: Path) -> Iterator[Path]:
    yield from sorted(folder.glob("*.yaml"))
