"""Evaluation at scale: per-clip results on disk (resume), failures recorded, shards + merge, workers,
and the paper table."""

from __future__ import annotations

import csv
import json
from itertools import islice
from pathlib import Path

import cv2
import numpy as np
import pytest

from edtalk.cli import main
from edtalk.io import write_video
from metrics.report import paper_table
from metrics.runner import WEIGHT_FILES, ground_truth


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """Result folders a (ground truth, 16 frames) and b (blurred) for the first 3 built-in test clips."""
    root = tmp_path_factory.mktemp("results")
    ids = []
    for gt in islice(ground_truth("builtin"), 3):
        frames = gt.frames[:16]
        write_video(root / "a" / f"{gt.clip_id}.mp4", frames)
        write_video(
            root / "b" / f"{gt.clip_id}.mp4", np.stack([cv2.GaussianBlur(f, (9, 9), 3) for f in frames])
        )
        ids.append(gt.clip_id)
    return root, ids


@pytest.fixture(scope="module")
def fid_only(tmp_path_factory: pytest.TempPathFactory, inception_file: Path) -> Path:
    """A judge folder with only the (random) FID Inception: PSNR, SSIM and a pooled metric, fast."""
    folder = tmp_path_factory.mktemp("judges")
    (folder / WEIGHT_FILES["inception"]).write_bytes(inception_file.read_bytes())
    return folder


def _evaluate(results: Path, out: Path, judges: Path, *extra: str) -> dict:
    args = [
        "evaluate",
        "--videos",
        f"a={results / 'a'}",
        "--videos",
        f"b={results / 'b'}",
        "--max-clips",
        "3",
    ]
    args += ["--weights-dir", str(judges), "--out", str(out), "--no-progress", *extra]
    assert main(args) == 0
    return json.loads((out / "metrics.json").read_text())


def test_rerun_skips_stored_clips_and_a_broken_video_is_recorded(
    tmp_path: Path, results: tuple[Path, list[str]], fid_only: Path
) -> None:
    root, ids = results
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / f"{ids[0]}.mp4").write_bytes((root / "a" / f"{ids[0]}.mp4").read_bytes())
    (broken / f"{ids[1]}.mp4").write_bytes(b"not a video")
    out = tmp_path / "out"
    args = ["evaluate", "--videos", f"x={broken}", "--max-clips", "2", "--weights-dir", str(fid_only)]
    assert main([*args, "--out", str(out), "--no-progress"]) == 0
    first = json.loads((out / "metrics.json").read_text())
    assert list(first["failed"]["x"]) == [ids[1]]  # recorded with its reason, and the run went on
    rows = list(csv.DictReader((out / "per_clip.csv").open()))
    assert [r["clip_id"] for r in rows] == ids[:2] and rows[1]["error"] and not rows[0]["error"]
    stored = sorted((out / "clips").glob("*/x/*.npz"))
    assert len(stored) == 1
    stamps = [p.stat().st_mtime_ns for p in stored]
    assert main([*args, "--out", str(out), "--no-progress"]) == 0
    assert [p.stat().st_mtime_ns for p in stored] == stamps  # read back, not scored again
    second = json.loads((out / "metrics.json").read_text())
    assert second["metrics"] == first["metrics"] and second["failed"] == first["failed"]


def test_shards_merge_to_the_table_of_one_machine(
    tmp_path: Path, results: tuple[Path, list[str]], fid_only: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from metrics.runner import Store, evaluate, load_judges, write_report

    root, ids = results
    judges = load_judges(fid_only)
    judges.dlib = None  # PSNR, SSIM and a pooled metric (FID) keep the test fast
    methods = {"a": root / "a", "b": root / "b"}

    def run(out: Path, shard: tuple[int, int]) -> dict:
        report = evaluate(
            methods, islice(ground_truth("builtin"), 3), judges, log=lambda s: None, store=Store(out, shard)
        )
        write_report(report, out)
        return json.loads((out / "metrics.json").read_text())

    whole = run(tmp_path / "one", (0, 1))
    assert set(whole["metrics"]["a"]) == {"psnr", "ssim", "fid"}
    for i in range(2):
        assert run(tmp_path / f"s{i}", (i, 2))["caption"]["clips"] == len(ids[i::2])
    assert main(["evaluate-merge", str(tmp_path / "s0"), "--out", str(tmp_path / "bad")]) == 2
    assert "shards 1/2 are missing" in capsys.readouterr().err
    assert (
        main(["evaluate-merge", str(tmp_path / "s0"), str(tmp_path / "s1"), "--out", str(tmp_path / "m")])
        == 0
    )
    merged = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert merged["metrics"] == whole["metrics"]  # exactly: the same parts folded in the same order
    assert merged["caption"]["clips"] == 3
    assert (tmp_path / "m" / "paper_table.md").read_text() == (
        tmp_path / "one" / "paper_table.md"
    ).read_text()


def test_workers_give_the_same_numbers(
    tmp_path: Path, results: tuple[Path, list[str]], fid_only: Path
) -> None:
    root, _ = results
    args = ["evaluate", "--videos", f"a={root / 'a'}", "--max-clips", "2", "--weights-dir", str(fid_only)]
    assert main([*args, "--out", str(tmp_path / "one"), "--no-progress"]) == 0
    assert main([*args, "--out", str(tmp_path / "two"), "--no-progress", "--workers", "2"]) == 0
    one, two = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("one", "two"))
    assert len(one["metrics"]["a"]) >= 6 and set(two["metrics"]["a"]) == set(one["metrics"]["a"])  # csim, LMD
    # to 1e-6 (the tolerance): a worker process may run its networks with another thread count, and FID
    # of identical frames is a difference of rounding errors (~3e-16)
    assert two["metrics"]["a"] == pytest.approx(one["metrics"]["a"], rel=1e-6, abs=1e-9)


def test_bad_shard_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["evaluate", "--videos", f"a={tmp_path}", "--shard", "2/2", "--out", str(tmp_path / "o")]) == 2
    )
    assert "--shard takes I/N with 0 <= I < N" in capsys.readouterr().err


def test_paper_table_columns_arrows_bold_and_caption() -> None:
    summary = {
        "ours_v1": {"psnr": 30.0, "ssim": 0.9, "fid": 20.0, "m_lmd": 1.5, "lse_c": 7.0, "lse_d": 7.5,
                    "lpips": 0.1, "emotion_fan_acc": 60.0, "emotion_acc": 10.0},
        "EAT": {"psnr": 28.0, "ssim": 0.95, "fid": 25.0, "m_lmd": 1.2, "lse_c": 8.0, "lse_d": 7.0,
                "emotion_fan_acc": 70.0},
    }  # fmt: skip
    caption = {"protocol": "eat", "clips": 985, "judges": {"inception_imagenet": ("/w/inc.pth", "ab" * 32)}}
    md, tex = paper_table(summary, caption)
    lines = md.splitlines()
    assert (
        lines[0] == "| Method | PSNR ↑ | SSIM ↑ | FID ↓ | M-LMD ↓ | LSE-C ↑ | LSE-D ↓ | Acc_emo ↑ |"
    )  # no F-LMD
    assert lines[2] == "| ours_v1 | **30.00** | 0.9000 | **20.00** | 1.500 | 7.00 | 7.50 | 60.00 |"
    assert lines[3] == "| EAT | 28.00 | **0.9500** | 25.00 | **1.200** | **8.00** | **7.00** | **70.00** |"
    assert "protocol eat; 985 clips; judges: inception_imagenet inc.pth sha256:abababababab" in md
    assert r"ours\_v1 & \textbf{30.00} & 0.9000" in tex and r"FID $\downarrow$" in tex
    assert r"\caption{protocol eat; 985 clips" in tex and tex.count(r"\textbf") == 7
