"""The CLI boundary (edtalk/cli.py): errors libraries raise at run time for a user's value become one line
naming the path or key, exit 2; `EDTALK_TRACEBACK=1` re-raises; a bug of ours stays a traceback, exit 1.
The last tests are the few true subprocess checks (the console entry point, stderr as a user sees it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import av
import pytest

from edtalk import cli
from edtalk.config import ConfigError


def test_pyav_open_error_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(av.FFmpegError) as info:
        av.open(str(tmp_path))  # a folder where a video is expected
    line = cli.user_error(info.value)
    assert line is not None and str(tmp_path) in line and "\n" not in line


def test_os_error_on_an_output_path_names_it(tmp_path: Path) -> None:
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(OSError) as info:
        (tmp_path / "a_file" / "out.mp4").write_bytes(b"")
    line = cli.user_error(info.value)
    assert line is not None and "a_file" in line and "choose another output path" in line


def test_lightning_misconfiguration_is_one_line() -> None:
    import lightning as L
    import torch

    if torch.cuda.is_available():
        pytest.skip("the refused value (accelerator=gpu) is valid on this machine")
    with pytest.raises(Exception) as info:
        L.Trainer(accelerator="gpu", logger=False)
    line = cli.user_error(info.value)
    assert line is not None and "\n" not in line and "gpu" in line.lower() and "trainer.*" in line


@pytest.mark.parametrize(
    "bug", [RuntimeError("boom"), KeyError("k"), AttributeError("a"), OSError("no errno")]
)
def test_a_bug_of_ours_stays_a_traceback(bug: Exception) -> None:
    assert cli.user_error(bug) is None


def test_edtalk_traceback_reraises(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    argv = ["fit", "reconstruct", "trainer.max_steps=-5", f"run.root={tmp_path}", "--print-config"]
    monkeypatch.setenv("EDTALK_TRACEBACK", "1")
    with pytest.raises(ConfigError, match=r"trainer\.max_steps"):
        cli.main(argv)
    monkeypatch.setenv("EDTALK_TRACEBACK", "0")
    assert cli.main(argv) == 2


# -- true subprocesses: the installed entry point, as a user runs it --------------------------------------
def edtalk(*argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "edtalk.cli", *argv]
    return subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, **env}, timeout=300, check=False
    )


def test_process_fit_negative_steps(tmp_path: Path) -> None:
    """The issue's first case: was a 27-line Lightning traceback, exit 1."""
    runs = tmp_path / "runs"
    done = edtalk("fit", "reconstruct", "trainer.max_steps=-5", "--debug", f"run.root={runs}")
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "edtalk fit: error: trainer.max_steps=-5: expected -1 (no limit) or an integer >= 0"
    ]
    assert not runs.exists()
    debug = edtalk("fit", "reconstruct", "trainer.max_steps=-5", f"run.root={runs}", EDTALK_TRACEBACK="1")
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "trainer.max_steps" in debug.stderr


def test_process_generate_unwritable_out(tmp_path: Path) -> None:
    """The issue's second case: was `error: [Errno 2] No such file or directory`, without the path."""
    if not Path("/proc/self").is_dir():
        pytest.skip("no /proc on this system")
    face = tmp_path / "face.png"
    face.write_bytes(b"")
    done = edtalk("generate", "--source", str(face), "--out", "/proc/x.mp4", "--checkpoint", str(face))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(
        "edtalk generate: error: argument --out: cannot write /proc/x.mp4"
    )


def test_a_value_lightning_refuses_leaves_no_run_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No rule of ours catches accelerator=gpu on a machine without one: Lightning refuses it when the
    Trainer is built, after the run folder was made; the folder goes again (nothing half-written)."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("the refused value (accelerator=gpu) is valid on this machine")
    runs = tmp_path / "runs"
    assert cli.main(["fit", "reconstruct", "--debug", "trainer.accelerator=gpu", f"run.root={runs}"]) == 2
    assert "gpu" in capsys.readouterr().err.lower()
    assert not any(p.is_file() for p in runs.rglob("*")), sorted(runs.rglob("*"))
