"""The one table of judge files (`metrics.judges.files`) is what every judge, command and doc reads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edtalk import weights
from metrics.judges import KINDS, JudgeWeightsMissing
from metrics.judges.files import JUDGE_FILES, JudgeFile, loaders, weight_entries, weight_files
from metrics.runner import PROTOCOL_JUDGES, WEIGHT_FILES, load_judges

ROOT = Path(__file__).resolve().parents[2]
FOLDER_ROWS = [r for r in JUDGE_FILES if r.loader and not r.package]  # files looked up in --weights-dir


def test_rows_are_unique_and_every_judge_has_one_loader() -> None:
    assert len({r.name for r in JUDGE_FILES}) == len(JUDGE_FILES)
    judges = {j for js in PROTOCOL_JUDGES.values() for j in js}
    assert judges == set(loaders()), "each judge a protocol loads needs exactly one row with a loader"
    assert sum(bool(r.loader) for r in JUDGE_FILES) == len(loaders())


def test_judge_kinds_are_the_table_rows_with_a_kind_and_say_its_source() -> None:
    assert {k.name for k in KINDS} == {r.kind for r in JUDGE_FILES if r.kind}
    for row in JUDGE_FILES:
        if row.kind:
            assert weights.KINDS[row.kind].where == row.where, row.name


@pytest.mark.parametrize("row", FOLDER_ROWS, ids=lambda r: r.name)
def test_a_missing_file_names_it_and_where_to_get_it(row: JudgeFile, tmp_path: Path) -> None:
    path = tmp_path / row.file
    with pytest.raises(JudgeWeightsMissing) as err:
        row.load(path)
    message = str(err.value)
    assert str(path) in message and row.where in message and message.startswith(row.what)


def test_runner_and_status_read_the_table(tmp_path: Path) -> None:
    assert WEIGHT_FILES == weight_files() == {r.judge: r.file for r in FOLDER_ROWS}
    entries = weight_entries(tmp_path)
    assert [e.name for e in entries] == [r.shown for r in JUDGE_FILES]
    assert {e.path for e in entries if e.path is not None} >= {tmp_path / r.file for r in FOLDER_ROWS}
    skipped = load_judges(tmp_path, protocol="eat").missing
    for judge in ("syncnet", "s3fd", "inception_imagenet", "emotion_fan"):
        assert loaders()[judge].where in skipped[judge]


def test_docs_name_every_judge_file_of_the_weights_folder() -> None:
    """docs/protocols.md lists each protocol's files: a renamed file in the table must be renamed there."""
    named = set(re.findall(r"`([^`\s]+)`", (ROOT / "docs" / "protocols.md").read_text()))
    missing = sorted(r.file for r in FOLDER_ROWS if r.file not in named)
    assert not missing, f"docs/protocols.md does not name the judge files {missing}"
