"""The main job end to end: built-in data -> every stage -> evaluation -> every mode -> report."""

from __future__ import annotations

import json
import os
from pathlib import Path

import av
import pytest
import torch

from edtalk.cli import main


@pytest.mark.slow
def test_quickstart_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "qs"
    assert (
        main(["quickstart", "--out", str(out), "--steps", "4", "--audio-steps", "3", "--eval-clips", "1"])
        == 0
    )
    report = (out / "report.md").read_text()
    summary = json.loads((out / "summary.json").read_text())
    stages = ["reconstruct", "mouth_pose", "expression", "syncnet", "audio2mouth", "audio2pose", "audio2exp"]
    assert {*stages, "emotion_classifier"} == set(summary["stages"])
    # --steps / --audio-steps x the demo profile's scales (experiments/demo/plan.yaml)
    expected = {
        "reconstruct": 20,
        "mouth_pose": 12,
        "expression": 24,
        "syncnet": 9,
        "audio2exp": 4,
    }
    assert all(summary["stages"][s]["steps"] == expected.get(s, 3) for s in stages)
    assert summary["threads"] == 1  # `--threads`: torch threads of each of the two processes
    assert summary["cpu_capability"] == torch.backends.cpu.get_cpu_capability()  # e.g. AVX2, AVX512
    assert set(summary["evaluation"]) == {"edtalk_video", "edtalk_audio"}
    assert {"psnr", "ssim", "emotion_acc"} <= set(summary["evaluation"]["edtalk_video"])
    modes = {
        "audio_emotion_happy", "audio_emotion_mix", "audio_exp_video", "audio_no_expression_fixed_pose",
        "lip_from_video", "change_video_lip", "video_driven", "audio_pose_sampled", "audio_emotion_auto",
    }  # fmt: skip
    assert set(summary["videos"]) == modes
    for name in modes:
        assert f"videos/{name}.mp4" in report
        with av.open(summary["videos"][name]) as c:
            assert c.streams.video[0].average_rate == 25 and c.streams.video[0].frames > 0
    printed = capsys.readouterr().out
    assert "report:" in printed
    parallel = (os.cpu_count() or 1) > 1
    # beside the visual stages; audio2exp regresses the anchors alone under the demo profile, from the start
    for group in ("syncnet+audio2exp+emotion_classifier", "audio2mouth+audio2pose"):
        assert (f"{group}: training in a second process" in printed) == parallel
    assert ("emotion_classifier: training (8/8" in printed) == (not parallel)  # not twice
    assert ("audio2mouth: training (5/8" in printed) == (not parallel)
    # the learning table's probe data of the floor and the generators before expression come from the second
    # process (the early task after audio2mouth and audio2pose): the floor composed there is the table's floor
    assert (
        "audio2pose: training in a second process" in printed and "then the task learning_probes" in printed
    ) == parallel
    assert (
        "learning: probe data of floor, mouth_pose, reconstruct from the second process" in printed
    ) == parallel
    assert (out / "learning" / "probes.pkl").is_file() == parallel
    # audio2mouth and audio2pose start after mouth_pose (and the first group), beside expression, which does
    # not wait for them to start (the child's lines skip capsys)
    if parallel:
        lines = printed.splitlines()
        keys = ("mouth_pose: done", "audio2mouth+audio2pose: training", "expression: training")
        at = [next(i for i, x in enumerate(lines) if key in x) for key in keys]
        assert at[0] < min(at[1:]), lines
    order = ["reconstruct", "mouth_pose", "expression", "syncnet", "audio2mouth", "audio2pose", "audio2exp"]
    assert list(summary["stages"]) == [*order, "emotion_classifier"]  # the report's order, wherever they ran
    _check_learning(summary["learning"], report)
    curve = summary["learning_curve"]  # the score after each visual stage; its ends are the table's two rows
    assert [(c["stage"], c["step"]) for c in curve] == [
        ("init", 0), ("reconstruct", 20), ("mouth_pose", 32), ("expression", 56)
    ]  # fmt: skip
    assert curve[0]["score"] == summary["learning"]["floor"]["disentanglement_score"]
    assert curve[-1]["score"] == summary["learning"]["disentanglement_score"]
    assert all((out / "strips" / f"{name}.png").is_file() for name in modes)
    assert (out / "emotion_vectors" / "happy.npy").is_file()  # our vectors, not the release's
    renders = summary["emotion_renders"]  # 4 emotions x 2 held-out speakers x (our vectors, --emotion auto)
    assert len(renders) == 16 and {r["path"] for r in renders} == {"generated", "audio"}
    assert all(Path(r["video"]).is_file() for r in renders) and (out / "plots" / "emotion_grid.png").is_file()
    assert {r["strength"] for r in renders} == {"2.0"}  # the plan's options: {strength: 2.0}


LEARNING_KEYS = {
    "psnr_video", "psnr_audio", "r2", "emotion_probe_acc", "disentanglement_score", "sync_acc",
    "emotion_judge_acc", "mouth_open_corr_audio", "acc_emo_generated", "acc_emo_audio",
}  # fmt: skip


def _check_learning(learning: dict, report: str) -> None:
    """The interface of summary.json -> learning: our row and the random-init floor, same keys."""
    assert set(learning) == LEARNING_KEYS | {"floor", "finetune"}
    finetune = {"psnr_before", "psnr_after", "psnr_copy_source", "m_lmd_before", "m_lmd_after"}
    finetune |= {"csim_before", "csim_after", "other_speakers_psnr_delta"}
    assert set(learning["finetune"]) == finetune  # the plan's finetune task
    assert set(learning["floor"]) == LEARNING_KEYS
    for row in (learning, learning["floor"]):  # the paper's Acc_emo on renders of the held-out speakers
        assert 0.0 <= row["acc_emo_generated"] <= 1.0 and 0.0 <= row["acc_emo_audio"] <= 1.0
    assert "## Do the videos show the emotion?" in report
    assert "![emotion grid](plots/emotion_grid.png)" in report
    for row in (learning, learning["floor"]):
        assert set(row["r2"]) == {"mouth", "pose", "exp"}
        assert all(set(per) == {"mouth_open", "yaw", "pitch", "roll"} for per in row["r2"].values())
        assert all(0.0 <= a <= 1.0 for a in row["emotion_probe_acc"].values())
        assert -1.0 <= row["disentanglement_score"] <= 1.0
        assert row["psnr_video"] > 5 and row["psnr_audio"] > 5
        assert 0.0 <= row["sync_acc"] <= 1.0 and 0.0 <= row["emotion_judge_acc"] <= 1.0
    assert report.index("## Did it learn?") < report.index("## Training")


def test_quickstart_random_clip(tmp_path: Path) -> None:
    assert main(["quickstart", "--random-clip", "--out", str(tmp_path)]) == 0
    with av.open(str(tmp_path / "random_tiny_generator.mp4")) as c:
        assert c.streams.video[0].frames == 50 and len(c.streams.audio) == 1


def test_quickstart_weights_folder_must_hold_the_official_files(tmp_path: Path) -> None:
    assert main(["quickstart", "--weights", str(tmp_path), "--out", str(tmp_path / "o")]) == 2


def test_side_process_failure_is_raised_with_its_traceback(tmp_path: Path) -> None:
    """A stage that fails in the second process stops the job with the child's traceback, not a hang."""
    from edtalk.apps.quickstart import main_job
    from edtalk.apps.side import SideProcess

    job = main_job(tmp_path, log=lambda s: None, profile="no-such-profile")
    side = SideProcess.start(job, {"syncnet": 1})
    with pytest.raises(RuntimeError, match=r"(?s)the second process \(syncnet\) failed.*no-such-profile"):
        side.join()
    assert not side.process.is_alive()


def _sleeping_child(pid_file: str) -> None:
    import time

    from edtalk.apps.side import _exit_with_parent

    _exit_with_parent(poll_s=0.1)
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(120)


def _parent_of_a_sleeper(pid_file: str) -> None:
    import multiprocessing
    import time

    child = multiprocessing.get_context("spawn").Process(
        target=_sleeping_child, args=(pid_file,), daemon=True
    )
    child.start()
    time.sleep(120)


def test_side_process_ends_when_its_parent_is_killed(tmp_path: Path) -> None:
    """A killed job (SIGKILL: no exit handlers run) leaves no second process training on."""
    import multiprocessing
    import signal
    import time

    pid_file = tmp_path / "child.pid"
    parent = multiprocessing.get_context("spawn").Process(target=_parent_of_a_sleeper, args=(str(pid_file),))
    parent.start()
    deadline = time.monotonic() + 120
    while not pid_file.is_file() or not pid_file.read_text():
        assert time.monotonic() < deadline, "the child never started"
        time.sleep(0.1)
    child = int(pid_file.read_text())
    os.kill(child, 0)  # alive
    assert parent.pid is not None
    os.kill(parent.pid, signal.SIGKILL)
    parent.join()
    deadline = time.monotonic() + 30
    while True:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break  # gone (an exited child of a dead parent is reaped by init)
        if time.monotonic() > deadline:
            os.kill(child, signal.SIGKILL)
            raise AssertionError("the child outlived its killed parent by 30 s")
        time.sleep(0.2)


def test_oversubscribed_threads_are_warned_about() -> None:
    from edtalk.commands.quickstart import oversubscribed

    assert (
        oversubscribed(1, 2, 2) is None
        and oversubscribed(2, 4, 2) is None
        and oversubscribed(1, 1, 1) is None
    )
    message = oversubscribed(2, 2, 2)
    assert message is not None and "4 threads on 2 cores" in message and "--threads 1" in message
    assert "--threads 3" in (oversubscribed(4, 6, 2) or "")
    assert "x 1 process = 4 threads on 1 core" in (oversubscribed(4, 1, 1) or "")


def test_quickstart_threads_must_be_positive(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # argparse's usage error (edtalk.cli.ARGUMENTS), returned as 2
    assert main(["quickstart", "--out", str(tmp_path), "--threads", "0"]) == 2
    assert "0: expected an integer >= 1" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing ran
