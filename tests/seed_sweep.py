"""Seed sweep of the tests that train and assert an outcome (`pytest -m learns`); not part of `make test`.

Runs pytest once per (torch threads, seed) with EDTALK_TEST_SEED / EDTALK_TEST_THREADS set, collects
every quantity those tests assert (`tests/learn.py` writes them to EDTALK_SWEEP_LOG) and each test's
outcome, and prints one Markdown row per (test, quantity, threads): passes/runs, the bound, the worst
and the mean value over seeds.

    python tests/seed_sweep.py                       # threads 1 and 2, seeds 0..9 each
    python tests/seed_sweep.py --plan 2x10,1x5       # 10 seeds at 2 threads, 5 at 1
    python tests/seed_sweep.py --first-seed 100 --out sweep.json -- -k syncnet
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def parse_plan(text: str, first: int = 0) -> list[tuple[int, int]]:
    """'2x10,1x5@3' -> (threads, seed) runs: seeds first..first+9 at 2 threads, seeds 3..7 at 1 thread."""
    runs = []
    for part in text.split(","):
        threads, _, rest = part.partition("x")
        seeds, _, start = rest.partition("@")
        if not (threads.isdigit() and seeds.isdigit() and (start.isdigit() or not start)):
            raise SystemExit(f"--plan entries are THREADSxSEEDS[@FIRST] (e.g. 2x10), got {part!r}")
        begin = int(start) if start else first
        runs.extend((int(threads), seed) for seed in range(begin, begin + int(seeds)))
    return runs


def outcomes(junit: Path) -> dict[str, bool]:
    """node id -> passed, from a pytest JUnit XML report (skips are left out)."""
    result = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        if case.find("skipped") is not None:
            continue
        path = case.get("classname", "").replace(".", "/") + ".py"
        result[f"{path}::{case.get('name')}"] = case.find("failure") is None and case.find("error") is None
    return result


def run_one(
    threads: int, seed: int, work: Path, extra: list[str]
) -> tuple[dict[str, bool], list[dict[str, Any]]]:
    """One pytest run of the `learns` tests; returns (outcomes, recorded quantities)."""
    log, junit = work / f"t{threads}-s{seed}.jsonl", work / f"t{threads}-s{seed}.xml"
    env = {**os.environ, "EDTALK_TEST_SEED": str(seed), "EDTALK_TEST_THREADS": str(threads)}
    env |= {"EDTALK_SWEEP_LOG": str(log), "OMP_NUM_THREADS": str(threads)}
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-m",
        "learns",
        f"--junitxml={junit}",
    ]
    subprocess.run([*cmd, *extra], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
    return (outcomes(junit) if junit.is_file() else {}), rows


def table(runs: list[dict[str, Any]]) -> str:
    """Markdown: per test, quantity and thread count: passes/runs, bound, worst and mean value."""
    passed: dict[tuple[str, int], list[bool]] = defaultdict(list)
    values: dict[tuple[str, str, int], list[float]] = defaultdict(list)
    bounds: dict[tuple[str, str, int], tuple[float, bool]] = {}
    for run in runs:
        for test, ok in run["outcomes"].items():
            passed[(test, run["threads"])].append(ok)
        for r in run["rows"]:
            key = (r["test"], r["name"], run["threads"])
            values[key].append(r["value"])
            bounds[key] = (r["bound"], r["above"])
    lines = [
        "| test | asserted | bound | threads | passes/runs | worst | mean |",
        "|---|---|---|---|---|---|---|",
    ]
    for test, threads in sorted(passed):
        ok = passed[(test, threads)]
        names = sorted(n for t, n, th in values if t == test and th == threads) or ["(no recorded value)"]
        for name in names:
            vals = values.get((test, name, threads), [])
            bound, is_above = bounds.get((test, name, threads), (float("nan"), True))
            worst = (min(vals) if is_above else max(vals)) if vals else float("nan")
            mean = sum(vals) / len(vals) if vals else float("nan")
            short = test.split("::", 1)[-1]
            lines.append(
                f"| {short} | {name} | {'>' if is_above else '<'} {bound:.3g} | {threads} | "
                f"{sum(ok)}/{len(ok)} | {worst:.3g} | {mean:.3g} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--plan", default="1x10,2x10", help="THREADSxSEEDS[@FIRST],... (default 1x10,2x10)")
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument(
        "--out", type=Path, help="write the runs so far (outcomes, values) as JSON after each run"
    )
    ap.add_argument("--table-from", type=Path, help="only print the table of a JSON written by --out")
    ap.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = ap.parse_args(argv)
    if args.table_from:
        runs = json.loads(args.table_from.read_text())
        print(table(runs))
        return 0
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for threads, seed in parse_plan(args.plan, args.first_seed):
            t0 = time.perf_counter()
            res, rows = run_one(threads, seed, Path(tmp), args.pytest_args)
            runs.append({"threads": threads, "seed": seed, "outcomes": res, "rows": rows})
            failed = sorted(k.split("::")[-1] for k, ok in res.items() if not ok)
            print(f"threads {threads} seed {seed}: {sum(res.values())}/{len(res)} passed "
                  f"in {time.perf_counter() - t0:.0f} s {failed or ''}", file=sys.stderr, flush=True)  # fmt: skip
            if args.out:
                args.out.write_text(json.dumps(runs, indent=1))
    print(table(runs))
    return 0 if runs and all(all(r["outcomes"].values()) and r["outcomes"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
