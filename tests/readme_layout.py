"""README's "Layout" section, generated from the tree: each top-level folder and its second level.

A Python package (and each module or subpackage in it) is described by the first line of its docstring;
a folder without one by what it holds. `tests/test_readme_layout.py` fails when README.md's section
differs from this output. After moving, adding or re-describing a module, rewrite the section with

    .venv/bin/python tests/readme_layout.py --write      # (no flag: print the section)
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("edtalk", "datamodules", "metrics")
# folders that are not packages (fixed by DESIGN.md §2): what they hold, and whether to list their second level
FOLDERS = {
    "benchmarks": ("speed benchmarks, each a ratio against a baseline measured in the same run", True),
    "docs": ("recipes (paper | original | ours, per stage) and evaluation protocols", False),
    "experiments": (
        "stage configs (omegaconf YAML): defaults + one file per stage/experiment; demo/: the main job's plan",
        False,
    ),
    "sweeps": ("wandb sweep specs over keys of an experiment", False),
    "tests": ("pytest, mirroring the source tree; tiny configs, real files in tmp_path", False),
}
HEADING = "## Layout"
COLUMN = 21  # names are padded to this width


def first_line(path: Path) -> str:
    """First line of a module's docstring ("" when it has none)."""
    doc = ast.get_docstring(ast.parse(path.read_text(), str(path)))
    return doc.strip().splitlines()[0].strip() if doc and doc.strip() else ""


def _listing(folder: Path) -> str:
    """A folder without a docstring: its modules, or its files."""
    modules = sorted(p.stem for p in folder.glob("*.py") if not p.name.startswith("_"))
    if modules:
        return "modules: " + ", ".join(modules)
    return "data: " + ", ".join(sorted(p.name for p in folder.iterdir() if not p.name.startswith((".", "_"))))


def describe(path: Path) -> str:
    """One line for a module, a package (its `__init__` docstring) or a plain folder (its contents)."""
    if path.is_file():
        return first_line(path)
    init = path / "__init__.py"
    text = first_line(init) if init.is_file() else ""
    return text or _listing(path)


def children(folder: Path) -> list[Path]:
    """Second-level entries: modules and folders, no private, cache or hidden names."""
    keep = [
        p for p in folder.iterdir() if not p.name.startswith((".", "_")) and (p.is_dir() or p.suffix == ".py")
    ]
    return sorted(keep, key=lambda p: (p.is_file(), p.name))  # folders first, then modules


def _row(name: str, text: str, indent: int) -> str:
    return f"{' ' * indent}{name}".ljust(COLUMN) + text


def layout(root: Path = ROOT) -> str:
    """The layout block: packages, then the other folders, each with its second level where listed."""
    rows = []
    for name in PACKAGES:
        rows.append(_row(f"{name}/", describe(root / name), 0))
        rows += [_row(c.name + ("/" if c.is_dir() else ""), describe(c), 2) for c in children(root / name)]
    for name, (text, deep) in FOLDERS.items():
        rows.append(_row(f"{name}/", text, 0))
        if deep:
            rows += [
                _row(c.name + ("/" if c.is_dir() else ""), describe(c), 2) for c in children(root / name)
            ]
    return "\n".join(rows) + "\n"


def section(root: Path = ROOT) -> str:
    """The whole section body (below its heading) as README.md should hold it."""
    return (
        "\nGenerated from the tree by `tests/readme_layout.py` (first docstring line of each module; "
        "`--write` refreshes it):\n\n```\n" + layout(root) + "```\n\n"
    )


def readme_section(text: str) -> str:
    """The body of README's Layout section (from below its heading to the next `## ` heading)."""
    match = re.search(rf"^{re.escape(HEADING)}\n(.*?)(?=^## )", text, flags=re.S | re.M)
    if match is None:
        raise ValueError(f"README.md has no '{HEADING}' section followed by another '## ' heading")
    return match.group(1)


def write(readme: Path = ROOT / "README.md", root: Path = ROOT) -> bool:
    """Replace README's Layout section with `section(root)` (nothing else); True when it changed."""
    text = readme.read_text()
    old = readme_section(text)
    new = section(root)
    if old == new:
        return False
    start = text.index(f"{HEADING}\n") + len(HEADING) + 1
    readme.write_text(text[:start] + new + text[start + len(old) :])
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite README.md's Layout section")
    args = parser.parse_args(argv)
    if args.write:
        print("README.md Layout section " + ("rewritten" if write() else "already up to date"))
    else:
        sys.stdout.write(section())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
