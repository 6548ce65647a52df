"""One request shape: `pipeline.Inputs`' fields are what `edtalk generate`'s flags, the page's controls and
the demo's modes map onto, so a new mode or option is declared once and every other place fails here until it
says what it does with it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from edtalk.apps import ui
from edtalk.cli import build_parser
from edtalk.pipeline import Inputs


def generate_dests() -> set[str]:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return {a.dest for a in sub.choices["generate"]._actions}  # type: ignore[union-attr]


def test_every_field_is_a_generate_flag() -> None:
    assert set(Inputs.fields()) <= generate_dests()


def test_generate_builds_inputs_from_its_flags(tmp_path: Path) -> None:
    for name in ("me.png", "talk.mp4"):
        (tmp_path / name).write_bytes(b"x")
    argv = ["generate", "--source", str(tmp_path / "me.png"), "--lip", str(tmp_path / "talk.mp4")]
    argv += ["--fix-pose", "--extend", "hold", "--pose-temperature", "0.5", "--seed", "3"]
    args = build_parser().parse_args([*argv, "--out", str(tmp_path / "o.mp4")])
    got = Inputs.from_values(vars(args))
    want = Inputs(
        tmp_path / "me.png",
        lip=tmp_path / "talk.mp4",
        fix_pose=True,
        extend="hold",
        pose_temperature=0.5,
        seed=3,
    )
    assert got == want


def test_a_new_field_without_a_value_is_named(tmp_path: Path) -> None:
    @dataclasses.dataclass
    class Wider(Inputs):
        blink_rate: float = 0.0

    (tmp_path / "me.png").write_bytes(b"x")
    values = {name: getattr(Inputs(tmp_path / "me.png"), name) for name in Inputs.fields()}
    with pytest.raises(KeyError, match="blink_rate"):
        Wider.from_values(values)


def test_page_request_covers_inputs() -> None:
    request = {f.name for f in dataclasses.fields(ui.Request)}
    assert set(ui.REQUEST_MAP) == set(Inputs.fields())  # each field: offered, or why not
    offered = {name for v in ui.REQUEST_MAP.values() if isinstance(v, tuple) for name in v}
    assert offered <= request
    assert offered | set(ui.PAGE_ONLY) == request  # no control that feeds nothing
    assert tuple(f.name for f in dataclasses.fields(ui.Request)) == ui._REQUEST_FIELDS


def test_demo_modes_are_inputs(tmp_path: Path) -> None:
    from edtalk.apps.renders import demo_modes

    files = {k: tmp_path / f"{k}.bin" for k in ("photo", "speech", "video_a", "video_b")}
    for path in files.values():
        path.write_bytes(b"x")
    modes = demo_modes(files, {"audio2pose": tmp_path, "audio2exp": tmp_path})
    assert len(modes) >= 7
    for name, kwargs in modes.items():
        assert set(kwargs) <= set(Inputs.fields()), name
        Inputs(**kwargs)  # every mode is a complete request
