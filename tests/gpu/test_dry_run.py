"""`bash benchmarks/gpu/run.sh --dry-run` on the CPU: every section runs its code at tiny sizes (CI keeps the
GPU script from rotting). Not marked `gpu`: this is the CPU check of the GPU script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = ("tests", "train", "inference", "evaluation")


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str, Path]:
    out = tmp_path_factory.mktemp("gpu-out")
    env = os.environ | {"OUT": str(out), "PYTHON": sys.executable}
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu" / "run.sh"), "--dry-run"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads((out / "result.json").read_text()), proc.stdout, out


def test_every_section_ran(dry_run: tuple[dict[str, Any], str, Path]) -> None:
    result, stdout, out = dry_run
    assert result["meta"]["dry_run"] is True
    for name in SECTIONS:
        assert result[name]["status"] == "ok", (
            name,
            result[name].get("error"),
            result[name].get("traceback"),
        )
        assert f"[gpu-bench] {name}: ok" in stdout  # progress is printed
    md = (out / "result.md").read_text()
    assert all(f"## {name}: ok" in md for name in SECTIONS)
    assert result["meta"]["elapsed_s"] < result["meta"]["budget_s"]


def test_gpu_tests_skip_on_cpu_with_a_reason(dry_run: tuple[dict[str, Any], str, Path]) -> None:
    tests = dry_run[0]["tests"]
    assert tests["failed"] == tests["errors"] == tests["passed"] == 0
    assert tests["skipped"] >= 10  # every gpu-marked test was collected, and skipped here
    assert all("CUDA" in c["message"] for c in tests["cases"])


def test_train_rows(dry_run: tuple[dict[str, Any], str, Path]) -> None:
    rows = dry_run[0]["train"]["rows"]
    combos = {(r["stage"], r["precision"], r["channels_last"]) for r in rows}
    assert len(rows) == len(combos) == 8  # 2 stages x {32-true, bf16-mixed} x channels-last on/off
    for r in rows:
        assert "error" not in r and "skipped" not in r, r
        assert r["images_per_s"] == pytest.approx(r["batch"] / r["s_per_step"], rel=0.02)
        assert r["max_batch"] >= r["batch"] and r["max_batch_end"] in ("cap", "oom", "time")
    assert rows[0]["max_batch"] == 2 * rows[0]["batch"]  # the doubling search ran (dry run: up to 4)


def test_inference_rows(dry_run: tuple[dict[str, Any], str, Path]) -> None:
    sec = dry_run[0]["inference"]
    assert [r["precision"] for r in sec["rows"]] == ["fp32", "bf16"]
    assert sec["goal"] == {"batched_fps": 300.0, "ratio": 10.0}
    for r in sec["rows"]:
        assert "error" not in r, r
        assert r["per_frame_fps"] > 0 and r["batched_fps"] > 0 and r["frames"] == 25  # 1 s of audio
        assert r["ratio"] == pytest.approx(r["batched_fps"] / r["per_frame_fps"], rel=0.02)
        assert r["goal_fps_met"] == (r["batched_fps"] >= 300)


def test_evaluation_scores_every_network_judge(dry_run: tuple[dict[str, Any], str, Path]) -> None:
    sec = dry_run[0]["evaluation"]
    assert sec["s_per_clip"] > 0
    assert {"psnr", "ssim", "lpips", "fid", "lse_d", "lse_c", "emotion_acc"} <= set(sec["metrics"]), sec.get(
        "skipped"
    )
    assert set(sec["skipped"]) <= {"dlib"}  # only the CPU-only dlib judge may be missing
    assert 20 < sec["summary"]["psnr"] < 40  # prediction = ground truth + uniform noise of +-12 levels


def test_batch_search_jumps_by_the_memory_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Doubling, then a jump to the largest power-of-two multiple the linear memory fit allows."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks" / "gpu"))
    from sections import next_size

    assert next_size({16: 10.0}, None, 90.0) == 32  # one point: plain doubling
    assert next_size({16: 10.0, 32: 18.0}, None, 90.0) == 128  # 0.5 GiB/sample: 176 fit, 128 <= 176 < 256
    assert next_size({16: 10.0, 32: 18.0, 128: 66.0}, 256, 90.0) is None  # 256 ran out of memory
    assert next_size({16: 10.0, 32: 18.0}, 128, 90.0) == 64  # after an OOM at the jump: double again
    assert next_size({2: None}, None, None) == 4  # the CPU: no memory figures
