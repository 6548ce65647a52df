"""The run directory's layout (checkpoints, CSV logs, exports): the only reader that knows where they live.

A run of `edtalk fit` (`edtalk.train`) is a folder `<run.root>/<experiment>/<run.name>/` holding

    config.yaml                       the resolved config
    checkpoints/last.ckpt             Lightning checkpoint (+ `<stage>.pt`: a stage's export, e.g. audio2mouth.pt)
    logs/metrics.csv, logs/version_N/metrics.csv    one CSV log per session (resumes add a version)
    samples/                          image grids

and, for the audio stages' `--debug` runs, coefficient shards in `<run.root>/<experiment>/debug-data/`.
The main job, its report, the learning table and the sweeps read runs through these functions.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

DEBUG_RUN = "debug"  # `run.name` of `--debug` runs


def debug_run(root: Path, experiment: str) -> Path:
    """The `--debug` run directory of `experiment` under `run.root` `root`."""
    return root / experiment / DEBUG_RUN


def config_file(run_dir: Path) -> Path:
    return run_dir / "config.yaml"


def checkpoint(run_dir: Path, name: str = "last.ckpt") -> Path:
    """A file of the run's `checkpoints/` folder (default: the last Lightning checkpoint)."""
    return run_dir / "checkpoints" / name


def export(run_dir: Path, stage: str) -> Path | None:
    """The stage's export (`checkpoints/<stage>.pt`, e.g. audio2mouth.pt), None when the run wrote none."""
    path = checkpoint(run_dir, f"{stage}.pt")
    return path if path.is_file() else None


def coefficient_data(run_dir: Path) -> Path | None:
    """The coefficient shards an audio stage's `--debug` run extracted (beside the run), None if absent."""
    data = run_dir.parent / "debug-data"
    return data if data.is_dir() else None


def metric_files(run_dir: Path) -> list[Path]:
    """A run's CSV logs in session order: `logs/metrics.csv`, then `logs/version_N/metrics.csv` by N."""
    logs = run_dir / "logs"
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


def finished(run_dir: Path, steps: int, generator: dict[str, Any] | None) -> bool:
    """Whether the run's `last.ckpt` reached `steps` with the generator config `generator` (same profile;
    a checkpoint without a stored generator config matches any)."""
    ckpt = checkpoint(run_dir)
    if not ckpt.is_file():
        return False
    from edtalk.weights import load_file

    obj = load_file(ckpt)
    stored = obj.get("edtalk", {}).get("generator")
    same = stored is None or stored == generator
    return same and int(obj.get("global_step", -1)) >= steps
