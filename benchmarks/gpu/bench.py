"""The GPU check in one process tree: tests, training, inference and evaluation throughput, under a budget.

Called by `benchmarks/gpu/run.sh` (which installs the carried wheels first); see benchmarks/gpu/README.md.

    python benchmarks/gpu/bench.py [--dry-run] [--out DIR] [--budget 480] [--sections tests,train,...]

The parent imports torch and the project once (without touching CUDA) and forks one child per section,
so a section that crashes, runs out of memory or overruns its time is cut off alone: its error (or
"timeout") is recorded and the next section runs. Each child rewrites its part of the result after
every measurement, so whatever it measured before it stopped is kept. Budgets: every section gets
the remaining global time times its share of the shares still to run, so time one section leaves
unused flows to the next. Writes `result.json` and `result.md` into the output folder.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing as mp
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks"), str(Path(__file__).resolve().parent)]

import report  # noqa: E402
import sections  # noqa: E402  (imports torch, lightning and the project, never CUDA)

SHARES = {"tests": 0.22, "train": 0.40, "inference": 0.20, "evaluation": 0.18}
RESERVE_S = 8.0  # kept back from the global budget for the report and process shutdown


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU (no CUDA): the CI check")
    p.add_argument("--out", default=None, help="output folder (default: $OUT, else benchmarks/gpu/out)")
    p.add_argument("--budget", type=float, default=480.0, help="global seconds, counted from --started-at")
    p.add_argument("--started-at", type=float, default=None, help="epoch seconds the run began (run.sh)")
    p.add_argument("--sections", default=",".join(SHARES), help="comma-separated subset, in this order")
    p.add_argument("--install-log", default=None, help="file whose text is stored as meta.install")
    return p.parse_args(argv)


def out_dir(arg: str | None) -> Path:
    """--out, else $OUT (the device tool's folder), else benchmarks/gpu/out."""
    path = Path(arg or os.environ.get("OUT") or ROOT / "benchmarks" / "gpu" / "out")
    path.mkdir(parents=True, exist_ok=True)
    return path


def meta(args: argparse.Namespace) -> dict[str, Any]:
    """Versions and settings of this run (no CUDA call: the parent must stay fork-safe)."""
    import lightning
    import numpy
    import torch
    import torchmetrics

    info: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "dry_run": args.dry_run,
        "budget_s": args.budget,
        "host": platform.node(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda_build": torch.version.cuda,
        "lightning": lightning.__version__,
        "torchmetrics": torchmetrics.__version__,
        "numpy": numpy.__version__,
        "cpu_count": os.cpu_count(),
    }
    if args.install_log and Path(args.install_log).is_file():
        info["install"] = Path(args.install_log).read_text()[-2000:]
    return info


def _child(name: str, dry_run: bool, deadline: float, path: str) -> None:
    """Body of a section's process: run it; a Python error is recorded in its JSON before exiting."""
    rec = sections.Recorder(Path(path))
    if dry_run:
        sections.torch.set_num_threads(1)  # tiny models on shared CI cores: one thread is fastest
    try:
        sections.SECTIONS[name](rec, dry_run, deadline)
        rec.set(status="ok")
    except BaseException as err:  # recorded, then the process ends with an error code
        rec.set(
            status="error", error=f"{type(err).__name__}: {err}", traceback=traceback.format_exc()[-4000:]
        )
        raise SystemExit(1) from err


def run_section(name: str, dry_run: bool, seconds: float, work: Path) -> dict[str, Any]:
    """Fork the section, wait at most `seconds`, return what it recorded (+ status, elapsed)."""
    path = work / f"{name}.json"
    path.unlink(missing_ok=True)
    start = time.time()
    proc = mp.get_context("fork").Process(target=_child, args=(name, dry_run, start + seconds, str(path)))
    proc.start()
    proc.join(seconds + 10)  # the child watches its own deadline; the extra 10 s is for a clean exit
    timed_out = proc.is_alive()
    if timed_out:
        proc.terminate()
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join()
    result = json.loads(path.read_text()) if path.is_file() else {}
    if timed_out:
        result.update(status="timeout", error=f"cut off after {seconds:.0f} s (kept what it measured)")
    elif result.get("status") is None:
        result.update(status="error", error=f"the section's process died (exit code {proc.exitcode})")
    result["budget_s"] = round(seconds, 1)
    result["elapsed_s"] = round(time.time() - start, 1)
    return result


def plan(names: list[str], left: float) -> float:
    """Seconds for names[0]: the time left times its share of the shares still to run."""
    return max(1.0, left * SHARES[names[0]] / sum(SHARES[n] for n in names))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = args.started_at or time.time()
    out = out_dir(args.out)
    names = [n.strip() for n in args.sections.split(",") if n.strip()]
    unknown = [n for n in names if n not in SHARES]
    if unknown:
        print(f"unknown section(s) {unknown}; choose from {list(SHARES)}", file=sys.stderr)
        return 2
    result: dict[str, Any] = {"meta": meta(args)}
    for i, name in enumerate(names):
        left = args.budget - (time.time() - t0) - RESERVE_S
        seconds = plan(names[i:], left)
        print(f"[gpu-bench] {name}: budget {seconds:.0f} s ({left:.0f} s left in all)", flush=True)
        result[name] = run_section(name, args.dry_run, seconds, out)
        print(f"[gpu-bench] {name}: {result[name]['status']} in {result[name]['elapsed_s']} s", flush=True)
        (out / "result.json").write_text(json.dumps(result, indent=1, default=str))
    for name in SHARES:  # every section is present, so readers can rely on the keys
        result.setdefault(name, {"status": "not run"})
    result["meta"]["elapsed_s"] = round(time.time() - t0, 1)
    (out / "result.json").write_text(json.dumps(result, indent=1, default=str))
    md = report.markdown(result)
    (out / "result.md").write_text(md)
    for name in names:
        (out / f"{name}.json").unlink(missing_ok=True)
    print(md, flush=True)
    print(f"[gpu-bench] wrote {out / 'result.json'} and {out / 'result.md'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
