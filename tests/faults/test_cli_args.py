"""Every argument of every `edtalk` subcommand, walked from the argparse parsers, given bad values.

`edtalk.cli.ARGUMENTS` says what each int/float/path argument accepts (or `FREE` says why nothing is checked);
the parse-time checks run before a command does any work. Each bad value must end with exit status 2 and at
most two lines on stderr, the first `edtalk CMD: error: argument FLAG: ...` naming the flag and the value, and
leave nothing behind. The CLI runs in-process (`edtalk.cli.main`); hypothesis draws the numbers and names.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edtalk import cli
from tests.faults.catalogue import CANNOT_WRITE, EXPECTED, FILE_NOT_FOUND, FOLDER_NOT_FOUND

SETTINGS = settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def arguments() -> Iterator[tuple[str, argparse.Action]]:
    yield from cli.walk(cli.build_parser())


ALL = list(arguments())
CHECKED = [(path, a) for path, a in ALL if (path, a.dest) in cli.ARGUMENTS]
CHOICES = [(path, a) for path, a in ALL if a.choices and not isinstance(a, argparse._SubParsersAction)]


def _id(item: tuple[str, argparse.Action]) -> str:
    path, action = item
    return f"{path} {action.option_strings[0] if action.option_strings else action.dest}"


def refuse(
    capsys: pytest.CaptureFixture[str], path: str, action: argparse.Action, value: str, *named: str
) -> str:
    """Run `edtalk PATH FLAG VALUE`: exit 2, at most two lines, the first naming the flag, the value and `named`."""
    flag = action.option_strings[:1]
    given = [f"{flag[0]}={value}"] if flag else [value]  # `--x=-5`: argparse would read `-5` as a flag
    assert cli.main([*path.split(), *given]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert 1 <= len(lines) <= 2, err
    shown = flag[0] if flag else action.metavar or action.dest
    assert lines[0].startswith(f"edtalk {path}: error: argument {shown}"), lines[0]
    for word in (value, *named):
        assert word in lines[0], (word, lines[0])
    assert lines[1:] in ([], [f"(see `edtalk {path} --help`)"]), lines
    return lines[0]


# -- the catalogue covers every argument ------------------------------------------------------------------
def test_every_number_and_path_argument_is_checked_or_free() -> None:
    """A new int/float/Path argument needs an entry in `cli.ARGUMENTS` (what it accepts) or `cli.FREE` (why not)."""
    unlisted = [
        f"{path} {a.dest}"
        for path, a in ALL
        if a.type in (int, float, Path) and (path, a.dest) not in cli.ARGUMENTS | cli.FREE
    ]
    assert not unlisted, f"add to edtalk.cli.ARGUMENTS or FREE: {unlisted}"
    known = {(path, a.dest) for path, a in ALL}
    commands = {path for path, _ in ALL}
    stale = [k for k in {**cli.ARGUMENTS, **cli.FREE} if k[0] in commands and k not in known]
    assert not stale, f"entries for arguments that no longer exist: {stale}"


# -- numbers: wrong type, out of range ---------------------------------------------------------------------
NUMBERS = [
    (p, a)
    for p, a in CHECKED
    if isinstance(cli.ARGUMENTS[(p, a.dest)], cli.AtLeast | cli.Between | cli.Above)
]


@pytest.mark.parametrize("item", NUMBERS, ids=[_id(i) for i in NUMBERS])
@SETTINGS
@given(data=st.data())
def test_number_out_of_range(
    item: tuple[str, argparse.Action], data: st.DataObject, capsys: pytest.CaptureFixture[str]
) -> None:
    path, action = item
    check = cli.ARGUMENTS[(path, action.dest)]
    if isinstance(check, cli.Above):
        low, inclusive = check.low, check.inclusive
        below = st.floats(max_value=low, allow_nan=False).filter(lambda v: v < low if inclusive else v <= low)
        bad = data.draw(below | st.sampled_from([float("nan"), float("inf")]))
        refuse(capsys, path, action, repr(bad), f"{EXPECTED} a finite number")
        return
    low = check.low
    ranges = st.integers(max_value=low - 1)
    if isinstance(check, cli.Between):
        ranges |= st.integers(min_value=check.high + 1)
    refuse(capsys, path, action, str(data.draw(ranges)), f"{EXPECTED} an integer")


TYPED = [(p, a) for p, a in ALL if getattr(a.type, "__name__", "") in ("int", "float")]


@pytest.mark.parametrize("item", TYPED, ids=[_id(i) for i in TYPED])
@SETTINGS
@given(text=st.text(st.characters(categories=["L"]), min_size=1, max_size=8))
def test_number_of_the_wrong_type(
    item: tuple[str, argparse.Action], text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    if text.lower() in ("nan", "inf", "infinity"):
        return  # float("nan") is a float: the range check refuses it (above)
    path, action = item
    refuse(capsys, path, action, text, "invalid")


@pytest.mark.parametrize("item", CHOICES, ids=[_id(i) for i in CHOICES])
@SETTINGS
@given(text=st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=10))
def test_unknown_choice(
    item: tuple[str, argparse.Action], text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path, action = item
    assert action.choices is not None
    if text in action.choices:
        return
    line = refuse(capsys, path, action, text, "invalid choice")
    assert all(str(c) in line for c in action.choices), "the accepted values are named"


# -- paths: missing, a folder for a file, a file for a folder, unwritable ------------------------------------
def _paths(kind: object) -> list[tuple[str, argparse.Action]]:
    return [(p, a) for p, a in CHECKED if cli.ARGUMENTS[(p, a.dest)] is kind]


@pytest.mark.parametrize("item", _paths(cli.input_file), ids=[_id(i) for i in _paths(cli.input_file)])
def test_input_file(
    item: tuple[str, argparse.Action], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, action = item
    refuse(capsys, path, action, str(tmp_path / "missing.mp4"), FILE_NOT_FOUND)
    refuse(capsys, path, action, str(tmp_path), "is a folder; expected a file")


@pytest.mark.parametrize("item", _paths(cli.input_folder), ids=[_id(i) for i in _paths(cli.input_folder)])
def test_input_folder(
    item: tuple[str, argparse.Action], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, action = item
    refuse(capsys, path, action, str(tmp_path / "missing"), FOLDER_NOT_FOUND)
    (tmp_path / "a_file").write_text("x")
    refuse(capsys, path, action, str(tmp_path / "a_file"), "is a file; expected a folder")


@pytest.mark.parametrize("item", _paths(cli.input_path), ids=[_id(i) for i in _paths(cli.input_path)])
def test_input_path(
    item: tuple[str, argparse.Action], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, action = item
    refuse(capsys, path, action, str(tmp_path / "missing"), "not found")


OUTPUTS = _paths(cli.output_file) + _paths(cli.output_folder)


@pytest.mark.parametrize("item", OUTPUTS, ids=[_id(i) for i in OUTPUTS])
def test_output_path(
    item: tuple[str, argparse.Action], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file where a folder is needed (or the reverse), a folder on the way that is a file, and a place no
    one can write (/proc: the permission bits say yes, so only a real probe finds out). Nothing is left."""
    path, action = item
    blocker = tmp_path / "a_file"
    blocker.write_text("keep me")
    if cli.ARGUMENTS[(path, action.dest)] is cli.output_file:
        refuse(capsys, path, action, str(tmp_path), "is a folder; expected a file path")
        target = "x.mp4"
    else:
        refuse(capsys, path, action, str(blocker), "is a file; expected a folder")
        target = "x"
    refuse(capsys, path, action, str(blocker / target), "is a file, not a folder", CANNOT_WRITE)
    if Path("/proc/self").is_dir():
        refuse(capsys, path, action, f"/proc/{target}", "cannot write")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"] and blocker.read_text() == "keep me"


def test_output_file_probe_leaves_nothing(tmp_path: Path) -> None:
    """A writable output path passes and the probe file is gone again."""
    assert cli.output_file(str(tmp_path / "out.mp4")) == str(tmp_path / "out.mp4")
    assert list(tmp_path.iterdir()) == []
