"""The run directory's layout (checkpoints, CSV logs, exports): the only reader that knows where they live.

A run of `edtalk fit` (`edtalk.train`) is a folder `<run.root>/<experiment>/<run.name>/` holding

    config.yaml                       the resolved config
    checkpoints/last.ckpt             Lightning checkpoint (+ `<stage>.pt`: a stage's export, e.g. audio2mouth.pt)
    logs/metrics.csv, logs/version_N/metrics.csv    one CSV log per session (resumes add a version)
    samples/                          image grids
    wandb_id.txt, wandb/              the wandb run a resume continues

and, for the audio stages' `--debug` runs, coefficient shards in `<run.root>/<experiment>/debug-data/`; a
plan's `extract` step writes its coefficient shards in `<run.root>/extract/debug/data/`.
`edtalk fit` (`edtalk.train`, `edtalk.stages`) writes runs, and the main job, its report, the learning table
and the sweeps read them, through these functions.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

DEBUG_RUN = "debug"  # `run.name` of `--debug` runs
CHECKPOINTS = "checkpoints"
LAST = "last.ckpt"
LOGS = "logs"  # the CSV logger's folder in a run (Lightning's `CSVLogger(save_dir=run_dir, name=LOGS)`)


def experiment_runs(root: Path | str, experiment: str) -> Path:
    """`<run.root>/<experiment>/`: the folder of every run of `experiment`."""
    return Path(root) / experiment


def run_path(root: Path | str, experiment: str, name: str) -> Path:
    """`<run.root>/<experiment>/<run.name>/`."""
    return experiment_runs(root, experiment) / name


def debug_run(root: Path, experiment: str) -> Path:
    """The `--debug` run directory of `experiment` under `run.root` `root`."""
    return run_path(root, experiment, DEBUG_RUN)


def config_file(run_dir: Path) -> Path:
    return run_dir / "config.yaml"


def checkpoint_dir(run_dir: Path) -> Path:
    return run_dir / CHECKPOINTS


def checkpoint(run_dir: Path, name: str = LAST) -> Path:
    """A file of the run's `checkpoints/` folder (default: the last Lightning checkpoint)."""
    return checkpoint_dir(run_dir) / name


def run_of_checkpoint(ckpt: Path) -> Path | None:
    """The run directory a checkpoint file lies in (`<run>/checkpoints/x.ckpt`), None for a file elsewhere."""
    parent = Path(ckpt).resolve().parent
    return parent.parent if parent.name == CHECKPOINTS else None


def resumable(experiment_dir: Path) -> list[Path]:
    """The runs of an experiment folder that hold a `last.ckpt`, oldest checkpoint first."""
    found = [p.parents[1] for p in experiment_dir.glob(f"*/{CHECKPOINTS}/{LAST}")]
    return sorted(found, key=lambda d: checkpoint(d).stat().st_mtime)


def export_file(run_dir: Path, stage: str) -> Path:
    """Where a stage writes its export: `checkpoints/<stage>.pt` (e.g. audio2mouth.pt)."""
    return checkpoint(run_dir, f"{stage}.pt")


def export(run_dir: Path, stage: str) -> Path | None:
    """The stage's export (`checkpoints/<stage>.pt`, e.g. audio2mouth.pt), None when the run wrote none."""
    path = export_file(run_dir, stage)
    return path if path.is_file() else None


def samples_dir(run_dir: Path) -> Path:
    return run_dir / "samples"


def wandb_id_file(run_dir: Path) -> Path:
    return run_dir / "wandb_id.txt"


def debug_data(root: Path | str, experiment: str) -> Path:
    """Where an audio stage's `--debug` run writes its coefficient shards: `<run.root>/<experiment>/debug-data/`."""
    return experiment_runs(root, experiment) / "debug-data"


def coefficient_data(run_dir: Path) -> Path | None:
    """The coefficient shards an audio stage's `--debug` run extracted (beside the run), None if absent."""
    data = debug_data(run_dir.parent.parent, run_dir.parent.name)
    return data if data.is_dir() else None


def extracted_data(run_dir: Path) -> Path:
    """The coefficient shards of a plan's `extract` step (its run directory's `data/`)."""
    return run_dir / "data"


def extract_stamp(run_dir: Path) -> Path:
    """What a plan's `extract` step extracted with (generator file, shards): `extract.json`."""
    return run_dir / "extract.json"


def metric_files(run_dir: Path) -> list[Path]:
    """A run's CSV logs in session order: `logs/metrics.csv`, then `logs/version_N/metrics.csv` by N."""
    logs = run_dir / LOGS
    versions = [p for p in logs.glob("version_*/metrics.csv") if p.parent.name[8:].isdigit()]
    versions.sort(key=lambda p: int(p.parent.name[8:]))
    flat = logs / "metrics.csv"
    return ([flat] if flat.is_file() else []) + versions


def _rows(run_dir: Path) -> list[dict[str, str]]:
    """Every logged row of every CSV log under the run, in the order the main job has always read them."""
    rows: list[dict[str, str]] = []
    for path in sorted(run_dir.glob("**/metrics.csv")):
        with path.open() as f:
            rows += list(csv.DictReader(f))
    return rows


def last_metrics(run_dir: Path) -> dict[str, float]:
    """Last logged value of each train/ and val/ scalar in the run's CSV logs."""
    out: dict[str, float] = {}
    for row in _rows(run_dir):
        for key, value in row.items():
            if value and key.startswith(("train/", "val/")) and not key.endswith("_step"):
                out[key] = float(value)
    return out


def series(run_dir: Path, key: str) -> list[tuple[int, float]]:
    """(step, value) of one logged scalar, sorted by step."""
    return sorted((int(float(r["step"])), float(r[key])) for r in _rows(run_dir) if r.get(key))


def train_series(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """The training loss of each row (`train/loss`, else the row's first train/ scalar) by key, sorted."""
    out: dict[str, list[tuple[int, float]]] = {}
    for row in _rows(run_dir):
        key = "train/loss" if row.get("train/loss") else None
        key = key or next((k for k in row if k.startswith("train/") and row[k]), None)
        if key and row.get("step"):
            out.setdefault(key, []).append((int(float(row["step"])), float(row[key])))
    return {k: sorted(v) for k, v in out.items()}


RECIPE_SECTIONS = ("seed", "model", "data")


def finished(
    run_dir: Path,
    steps: int,
    generator: dict[str, Any] | None,
    recipe: dict[str, Any] | None = None,
    defaults: dict[str, Any] | None = None,
) -> bool:
    """Whether the run's `last.ckpt` reached `steps` with the generator config `generator` (same profile;
    a checkpoint without a stored generator config matches any) and, given `recipe` (a run config's
    `seed`, `model` and `data`), trained with that recipe from inputs no newer than itself: a rerun with
    another `--set` or after its `init_from` was retrained trains again (`recipe_changes` says why, with
    `defaults`). A generator setting the stored config lacks ran with its default ("generator.KEY" in
    `defaults`)."""
    ckpt = checkpoint(run_dir)
    if not ckpt.is_file():
        return False
    from edtalk.weights import load_file

    obj = load_file(ckpt)
    stored = obj.get("edtalk", {}).get("generator")
    known = {
        k.removeprefix("generator."): v for k, v in (defaults or {}).items() if k.startswith("generator.")
    }
    same = stored is None or {**known, **stored} == {**known, **(generator or {})}
    if not same or int(obj.get("global_step", -1)) < steps:
        return False
    if recipe is None:
        return True
    return not recipe_changes(obj.get("edtalk", {}).get("config"), recipe, ckpt, defaults)


def leaves(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        return {k: v for key, child in node.items() for k, v in leaves(child, f"{prefix}{key}.").items()}
    return {prefix[:-1]: node}


def _pathlike(value: Any) -> bool:
    return isinstance(value, str) and ("/" in value or "\\" in value)


def recipe_changes(
    stored: dict[str, Any] | None,
    recipe: dict[str, Any],
    ckpt: Path,
    defaults: dict[str, Any] | None = None,
) -> list[str]:
    """What differs between the config a checkpoint was trained with and `recipe` ([] for none, or when the
    checkpoint stores no config). Paths are not compared as text (a run fills some in as it starts: the
    export it reads, its init checkpoint); instead a file one of them names that is newer than the
    checkpoint is a change. `defaults`: today's default of each setting (dotted keys, e.g.
    "model.optim.schedule"); a setting the stored config lacks (the run predates it) ran with its default."""
    if stored is None:
        return []
    old = {**(defaults or {}), **leaves({k: stored.get(k) for k in RECIPE_SECTIONS})}
    new = leaves({k: recipe.get(k) for k in RECIPE_SECTIONS})
    changes = [
        f"{key}: {old.get(key)!r} -> {new.get(key)!r}"
        for key in sorted((old.keys() - (defaults or {}).keys()) | new.keys())
        if old.get(key) != new.get(key) and not (_pathlike(old.get(key)) or _pathlike(new.get(key)))
    ]
    built = ckpt.stat().st_mtime
    paths = {
        v
        for v in (*old.values(), *new.values(), stored.get("init_from"), recipe.get("init_from"))
        if _pathlike(v)
    }
    for value in sorted(paths):
        if Path(value).is_file() and Path(value).stat().st_mtime > built:
            changes.append(f"{value} is newer than {ckpt}")
    return changes
