"""Seeds, threads and margins of the tests that train and assert an outcome (marker `learns`).

Such a test must pass for any seed and thread count, so the seed is not fixed in the test:

* `EDTALK_TEST_SEED` (default 0) seeds both the network initialisation and the random data
  (`learn_seed(offset)` gives one seed per independent random source);
* `EDTALK_TEST_THREADS` sets torch's intra-op threads (default: the suite's choice);
* `EDTALK_SWEEP_LOG` (a file) collects every asserted quantity with its bound, one JSON line each, so
  `tests/seed_sweep.py` can report the worst and mean margin per test over seeds and thread counts.
"""

from __future__ import annotations

import json
import os

import torch

SEED_ENV, THREADS_ENV, LOG_ENV = "EDTALK_TEST_SEED", "EDTALK_TEST_THREADS", "EDTALK_SWEEP_LOG"


def learn_seed(offset: int = 0) -> int:
    """EDTALK_TEST_SEED (default 0) plus `offset` (different offsets: independent random sources)."""
    return int(os.environ.get(SEED_ENV, "0")) + offset


def seed_torch(offset: int = 0) -> int:
    """Seeds torch's global generator with `learn_seed(offset)`; returns that seed."""
    seed = learn_seed(offset)
    torch.manual_seed(seed)
    return seed


def thread_count(default: int | None) -> int | None:
    """EDTALK_TEST_THREADS if set, else `default` (None: leave torch's setting alone)."""
    value = os.environ.get(THREADS_ENV)
    return int(value) if value else default


def _record(name: str, value: float, bound: float, above: bool) -> None:
    path = os.environ.get(LOG_ENV)
    if not path:
        return
    test = os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0]
    row = {"test": test, "name": name, "value": value, "bound": bound, "above": above}
    row |= {"seed": learn_seed(), "threads": torch.get_num_threads()}
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def above(name: str, value: float, bound: float) -> None:
    """Asserts value > bound (recorded for the seed sweep); the message names both."""
    _record(name, float(value), bound, True)
    assert value > bound, f"{name} = {value:.4g}, must be > {bound:.4g}"


def below(name: str, value: float, bound: float) -> None:
    """Asserts value < bound (recorded for the seed sweep); the message names both."""
    _record(name, float(value), bound, False)
    assert value < bound, f"{name} = {value:.4g}, must be < {bound:.4g}"
