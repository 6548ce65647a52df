"""Faults around `edtalk fit` and the shard writer: NaN/Inf loss, a shard truncated mid-member, wrong or
truncated checkpoints, an unknown config key, an unwritable output folder, a full disk. Each is one clear
error (exit 2, one line naming what is wrong) or a recorded skip, and nothing already written is lost."""

from __future__ import annotations

import csv
import errno
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from datamodules.shards import ShardWriter, read_index, verify_shards
from edtalk.cli import main
from edtalk.stages.base import StepOutput
from edtalk.stages.reconstruct import ReconstructStage
from tests.datamodules.conftest import make_clip

STEPS = ["trainer.max_steps=6", "checkpoint.every_n_steps=2", "trainer.val_check_interval=6"]


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def one_line(capsys: pytest.CaptureFixture[str], command: str) -> str:
    err = capsys.readouterr().err.strip()
    lines = [line for line in err.splitlines() if line.startswith(f"edtalk {command}: error: ")]
    assert len(lines) == 1, err
    return lines[0]


def _poison(monkeypatch: pytest.MonkeyPatch, steps: set[int], value: float) -> None:
    """Make the stage's losses NaN/Inf at the given global steps (the fault is injected, the run is real)."""
    original = ReconstructStage.generator_step

    def poisoned(self: ReconstructStage, batch: dict[str, torch.Tensor]) -> StepOutput:
        out = original(self, batch)
        if self.global_step in steps:
            out.losses = {k: v * value for k, v in out.losses.items()}
        return out

    monkeypatch.setattr(ReconstructStage, "generator_step", poisoned)


def _finite(ckpt: Path) -> tuple[int, bool]:
    obj = torch.load(ckpt, map_location="cpu", weights_only=True)
    ok = all(bool(t.isfinite().all()) for t in obj["state_dict"].values() if t.is_floating_point())
    return int(obj["global_step"]), ok


@pytest.mark.parametrize("value", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_nonfinite_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], value: float
) -> None:
    _poison(monkeypatch, {3}, value)
    assert main(["fit", "reconstruct", "--debug", f"run.root={tmp_path}", *STEPS]) == 2
    line = one_line(capsys, "fit")
    assert "non-finite loss" in line and "at step 3" in line and "last good checkpoint kept" in line
    step, finite = _finite(tmp_path / "reconstruct" / "debug" / "checkpoints" / "last.ckpt")
    assert step == 2 and finite, "the checkpoint written before the bad step is kept, untouched"


def test_nonfinite_loss_skipped_when_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _poison(monkeypatch, {2, 4}, float("nan"))
    argv = ["fit", "reconstruct", "--debug", f"run.root={tmp_path}", *STEPS, "faults.on_nonfinite=skip"]
    with pytest.warns(UserWarning, match=r"non-finite loss .* at step 2: update skipped") as record:
        assert main(argv) == 0
    skips = [str(w.message) for w in record if "update skipped" in str(w.message)]
    assert len(skips) == 2 and "at step 4" in skips[1], skips
    run = tmp_path / "reconstruct" / "debug"
    step, finite = _finite(run / "checkpoints" / "last.ckpt")
    assert step == 6 and finite
    with next((run / "logs").glob("version_*/metrics.csv")).open() as f:
        skipped = [
            float(r["train/nonfinite_skipped"]) for r in csv.DictReader(f) if r["train/nonfinite_skipped"]
        ]
    assert max(skipped) == 2.0, "the skipped updates are counted in the run's metrics"


def test_bad_policy_is_a_config_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fit", "reconstruct", "--debug", f"run.root={tmp_path}", "faults.on_nonfinite=ignore"]) == 2
    assert "faults.on_nonfinite='ignore': expected one of 'stop', 'skip'" in one_line(capsys, "fit")


def _truncate_mid_member(shard: Path) -> None:
    """Cut the shard inside the data of its third member (a header that promises more bytes than follow)."""
    with tarfile.open(shard) as tar:
        member = tar.getmembers()[2]
    cut = member.offset_data + member.size // 2
    shard.write_bytes(shard.read_bytes()[:cut])


def test_shard_truncated_mid_member_stops_training_naming_the_shard(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from datamodules.synthetic import ensure_builtin

    shards = tmp_path / "shards"
    shutil.copytree(ensure_builtin(), shards)
    names = [s["name"] for s in read_index(shards)["shards"] if s["split"] == "train"]
    for name in names:
        _truncate_mid_member(shards / name)
    argv = ["fit", "reconstruct", "--debug", f"run.root={tmp_path / 'runs'}", f"data.root={shards}", *STEPS]
    assert main(argv) == 2
    line = one_line(capsys, "fit")
    assert "is truncated" in line and any(name in line for name in names), line
    assert not list((tmp_path / "runs").glob("*/*/checkpoints/*.ckpt")), "no checkpoint of a broken run"


@pytest.mark.parametrize("fault", ["wrong_kind", "truncated", "zero_bytes"])
def test_bad_init_checkpoint_is_one_line_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fault: str
) -> None:
    from edtalk.nn.syncnet import SyncNet
    from edtalk.weights import save_checkpoint

    path = tmp_path / "init.pt"
    save_checkpoint(SyncNet((2, 2, 2, 2, 2)), "syncnet", path)
    if fault == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif fault == "zero_bytes":
        path.write_bytes(b"")
    argv = ["fit", "reconstruct", "--debug", f"run.root={tmp_path / 'runs'}", f"init_from={path}", *STEPS]
    assert main(argv) == 2
    line = one_line(capsys, "fit")
    assert str(path) in line or "init.pt" in line, line
    assert not list((tmp_path / "runs").rglob("*.ckpt"))


def test_unknown_config_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fit", "reconstruct", "--debug", f"run.root={tmp_path}", "trainer.max_step=3"]) == 2
    assert "trainer.max_step" in one_line(capsys, "fit")


def test_run_root_not_writable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    assert main(["fit", "reconstruct", "--debug", f"run.root={blocker / 'runs'}", *STEPS]) == 2
    assert "a_file" in one_line(capsys, "fit")
    assert blocker.read_text() == "not a folder"


class _FullDisk:
    """A file object that accepts `room` bytes and then fails like a full disk (ENOSPC)."""

    def __init__(self, inner: Any, room: int) -> None:
        self.inner, self.room = inner, room

    def write(self, data: bytes) -> int:
        if len(data) > self.room:
            self.inner.write(bytes(data)[: self.room])
            self.room = 0
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return int(self.inner.write(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_disk_full_while_writing_a_shard_leaves_no_half_shard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "shards"
    original = ShardWriter._shard

    def shard_on_full_disk(self: ShardWriter, split: str) -> Any:
        fresh = split not in self._open
        shard = original(self, split)
        if fresh and shard.name.endswith("000001.tar"):
            shard.tar.fileobj = _FullDisk(shard.tar.fileobj, room=4096)
        return shard

    monkeypatch.setattr(ShardWriter, "_shard", shard_on_full_disk)
    with pytest.raises(OSError, match="No space left"), ShardWriter(root, max_clips=2) as writer:
        for i in range(4):
            writer.write(make_clip(f"S{i}#happy#level_1#{i:03d}", "train", seed=i))
    index = read_index(root)
    assert [s["name"] for s in index["shards"]] == ["train-000000.tar"], "the finished shard is kept"
    assert verify_shards(root) == [] and index["shards"][0]["num_clips"] == 2
    assert sorted(p.name for p in root.iterdir()) == ["index.json", "train-000000.tar"], "no half shard left"


def test_shard_truncated_mid_member_is_skipped_when_configured(tmp_path: Path) -> None:
    """`data.bad_shards=skip`: training goes on over the other shards, with a warning naming the broken one."""
    from datamodules.synthetic import ensure_builtin

    shards = tmp_path / "shards"
    shutil.copytree(ensure_builtin(), shards)
    names = [s["name"] for s in read_index(shards)["shards"] if s["split"] == "train"]
    assert len(names) >= 2
    for name in names[:-1]:  # every shard but one is broken: the draws meet a broken one
        _truncate_mid_member(shards / name)
    argv = ["fit", "reconstruct", "--debug", f"run.root={tmp_path / 'runs'}", f"data.root={shards}", *STEPS]
    with pytest.warns(UserWarning, match=r"broken shard .* is truncated") as record:
        assert main([*argv, "data.bad_shards=skip"]) == 0
    named = [str(w.message) for w in record if "broken shard" in str(w.message)]
    assert all(any(n in m for n in names[:-1]) for m in named) and not any(names[-1] in m for m in named)
    step, finite = _finite(tmp_path / "runs" / "reconstruct" / "debug" / "checkpoints" / "last.ckpt")
    assert step == 6 and finite
