"""README's "What happens when" table agrees with the suite's catalogue (tests/faults/catalogue.py)."""

from __future__ import annotations

from pathlib import Path

from tests.faults.catalogue import COLUMNS, OTHER_ROWS, ROWS

README = Path(__file__).resolve().parents[2] / "README.md"


def table() -> tuple[list[str], dict[str, list[str]]]:
    """(header cells, {row label: cells}) of the table under "## What happens when"."""
    text = README.read_text().split("## What happens when", 1)[1].split("\n## ", 1)[0]
    rows = [line.strip().strip("|").split(" | ") for line in text.splitlines() if line.startswith("| ")]
    header, body = rows[0], [r for r in rows[1:] if not set(r[0]) <= {"-", "|"}]
    return [c.strip() for c in header], {r[0].strip(): [c.strip() for c in r[1:]] for r in body}


def test_the_columns_are_the_catalogues() -> None:
    header, _ = table()
    assert tuple(header[1:]) == COLUMNS


def test_every_catalogue_row_is_in_the_readme_with_its_phrases() -> None:
    _, rows = table()
    for label, cells in ROWS.items():
        assert label in rows, f"README lacks the row {label!r} (tests/faults/catalogue.py)"
        for column, phrase in cells.items():
            cell = rows[label][COLUMNS.index(column)]
            assert phrase is None or phrase in cell, (
                f"README row {label!r}, {column}: {cell!r} lacks {phrase!r}"
            )


def test_every_readme_row_is_a_case_of_the_suite() -> None:
    _, rows = table()
    unknown = [label for label in rows if label not in ROWS and label not in OTHER_ROWS]
    assert not unknown, f"README rows no test covers (add them to tests/faults/catalogue.py): {unknown}"
