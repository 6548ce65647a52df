"""README.md's Layout section is the tree as `tests/readme_layout.py` prints it (second level + docstrings)."""

from __future__ import annotations

from pathlib import Path

from tests.readme_layout import ROOT, layout, readme_section, section, write


def test_readme_layout_matches_the_tree() -> None:
    readme = (ROOT / "README.md").read_text()
    assert readme_section(readme) == section(), (
        "README.md's Layout section is stale: run `.venv/bin/python tests/readme_layout.py --write`"
    )


def _tree(root: Path) -> None:
    """A miniature checkout: one package with a module, a subpackage, a folder without docstrings."""
    pkg = root / "edtalk"
    (pkg / "nn").mkdir(parents=True)
    (pkg / "__init__.py").write_text('"""The model."""\n')
    (pkg / "nn" / "__init__.py").write_text('"""Plain modules.\n\nMore text."""\n')
    (pkg / "io.py").write_text('"""Video I/O.\nsecond line"""\nimport os\n')
    (pkg / "_private.py").write_text('"""Hidden."""\n')
    (pkg / "__pycache__").mkdir()
    for name in ("datamodules", "metrics"):
        (root / name / "functional").mkdir(parents=True)
        (root / name / "functional" / "fid.py").write_text("x = 1\n")
    (root / "benchmarks").mkdir()
    (root / "benchmarks" / "render.py").write_text('"""Rendering speed."""\n')


def test_layout_lists_the_second_level_with_first_docstring_lines(tmp_path: Path) -> None:
    _tree(tmp_path)
    lines = layout(tmp_path).splitlines()
    assert lines[:3] == [
        "edtalk/".ljust(21) + "The model.",
        "  nn/".ljust(21) + "Plain modules.",
        "  io.py".ljust(21) + "Video I/O.",
    ]
    assert "  functional/".ljust(21) + "modules: fid" in lines
    assert "  render.py".ljust(21) + "Rendering speed." in lines
    assert not any("_private" in line or "__pycache__" in line for line in lines)


def test_write_replaces_only_the_layout_section(tmp_path: Path) -> None:
    _tree(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n## Install\n\nkeep\n\n## Layout\n\n```\nstale/\n```\n\n## Data\n\nkeep too\n")
    assert write(readme, tmp_path) is True
    text = readme.read_text()
    assert text.startswith("# x\n\n## Install\n\nkeep\n\n## Layout\n") and text.endswith(
        "## Data\n\nkeep too\n"
    )
    assert readme_section(text) == section(tmp_path) and "stale/" not in text
    assert write(readme, tmp_path) is False  # idempotent
