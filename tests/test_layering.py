"""The import graph: no cycles between modules, and the layers point one way (metrics -> edtalk).

Only module-level imports count (what runs at `import`); imports inside functions and under
`TYPE_CHECKING` are deliberate late bindings. A package's implicit import of its parents is not an edge.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("edtalk", "datamodules", "metrics")


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _absolute(node: ast.ImportFrom, name: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = name.split(".") if is_package else name.split(".")[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join([*base, *([node.module] if node.module else [])])


def top_level_imports(path: Path, name: str, known: set[str]) -> set[str]:
    """Modules of `known` imported when `path` is imported (module level, outside TYPE_CHECKING)."""
    found: set[str] = set()
    for stmt in ast.parse(path.read_text()).body:
        if isinstance(stmt, ast.If) and "TYPE_CHECKING" in ast.unparse(stmt.test):
            continue
        if not isinstance(stmt, ast.Import | ast.ImportFrom | ast.If | ast.Try):
            continue
        for node in ast.walk(stmt):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(node, name, path.name == "__init__.py")
                found |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return (found & known) - {name}


def import_graph(root: Path, packages: tuple[str, ...] = PACKAGES) -> dict[str, set[str]]:
    paths = {module_name(p, root): p for pkg in packages for p in (root / pkg).rglob("*.py")}
    known = set(paths)
    return {name: top_level_imports(path, name, known) for name, path in paths.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def test_no_import_cycles() -> None:
    cycles = find_cycles(import_graph(ROOT))
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_layers_point_one_way() -> None:
    """edtalk and datamodules never import metrics at import time (metrics builds on them)."""
    graph = import_graph(ROOT)
    upward = [f"{m} -> {d}" for m, deps in graph.items() for d in deps if d.split(".")[0] == "metrics"]
    upward = [edge for edge in upward if not edge.startswith("metrics")]
    assert not upward, "imports that run up the layers:\n" + "\n".join(sorted(upward))


def test_the_checks_see_a_cycle_and_an_upward_import(tmp_path: Path) -> None:
    for pkg, files in {
        "edtalk": {
            "a.py": "import edtalk.b\n",
            "b.py": "from edtalk import a\n",
            "c.py": "import metrics.x\n",
        },
        "metrics": {"x.py": "def f():\n    import edtalk.a\n"},
    }.items():
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("")
        for name, text in files.items():
            (tmp_path / pkg / name).write_text(text)
    graph = import_graph(tmp_path, ("edtalk", "metrics"))
    assert find_cycles(graph) == [["edtalk.a", "edtalk.b", "edtalk.a"]]
    assert graph["edtalk.c"] == {"metrics.x"} and graph["metrics.x"] == set()
