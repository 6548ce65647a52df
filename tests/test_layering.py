"""The import graph: no cycles between modules, and every import points down the layers of DESIGN.md §2.

Every import counts, at module level or inside a function (a late import is still a dependency: it runs
when the function does); only imports under `if TYPE_CHECKING:` are left out (they never run). A package's
implicit import of its parents is not an edge. `from pkg import name` counts as `pkg.name` when that is a
module, else as `pkg`.

The layers (DESIGN.md §2, "Import direction"), each allowed to import itself and what `ALLOWED` lists:
`edtalk.nn` imports only `edtalk.config`; `weights` imports `nn`; `losses` build on `nn` and `weights`;
`stages` import `nn`, `losses`, `weights`, `datamodules`, the run directory's layout (`edtalk.runs`: where
a stage writes its export) and never the training entry point (`edtalk.train`); `pipeline` imports `nn` and `weights` (and the face crop of `datamodules.preprocess`);
`metrics` may import `edtalk.nn`, `weights` and the renderer of `pipeline`; `apps` and `commands` import
everything, `cli` only names commands. The small shared modules (`config`, `io`, `mel`, `emotions`,
`perf`) are the floor every layer above `nn` may use.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("edtalk", "datamodules", "metrics")

BASE = ("edtalk.config", "edtalk.io", "edtalk.mel", "edtalk.emotions", "edtalk.perf")
LOW = (*BASE, "edtalk.nn", "edtalk.weights")
# layer (a module or package prefix; the longest match wins) -> prefixes it may import besides itself
ALLOWED: dict[str, tuple[str, ...]] = {
    "edtalk.config": (),
    "edtalk.io": (),
    "edtalk.mel": (),
    "edtalk.emotions": (),
    "edtalk.perf": (),
    "edtalk.nn": ("edtalk.config",),
    "edtalk.weights": (*BASE, "edtalk.nn"),
    "edtalk.losses": LOW,
    "edtalk.runs": LOW,
    "datamodules": (*LOW,),
    "edtalk.coefficients": (*LOW, "datamodules"),
    "edtalk.stages": (*LOW, "edtalk.losses", "datamodules", "edtalk.coefficients", "edtalk.runs"),
    "edtalk.pipeline": (*LOW, "datamodules.preprocess"),
    "metrics": (*LOW, "edtalk.pipeline.render", "datamodules"),
    "edtalk.train": (
        *LOW,
        "edtalk.losses",
        "edtalk.stages",
        "edtalk.coefficients",
        "edtalk.runs",
        "datamodules",
    ),
    "edtalk.apps": ("edtalk", "datamodules", "metrics"),  # everything but commands and cli (checked below)
    "edtalk.commands": ("edtalk", "datamodules", "metrics"),
    "edtalk.cli": (),
    "edtalk": (),  # the package's own __init__
}
# imports that `ALLOWED`'s broad prefixes let through but that run up the layers
NEVER: dict[str, tuple[str, ...]] = {
    "edtalk.apps": ("edtalk.commands", "edtalk.cli"),
    "edtalk.commands": ("edtalk.cli",),
}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _absolute(node: ast.ImportFrom, name: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = name.split(".") if is_package else name.split(".")[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join([*base, *([node.module] if node.module else [])])


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of every node under an `if TYPE_CHECKING:` block."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            out |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return out


def _owner(module: str, known: set[str]) -> str | None:
    """The longest known module `module` names (`pkg.mod.attr` -> `pkg.mod`)."""
    while module and module not in known:
        module = module.rpartition(".")[0]
    return module or None


def imports(path: Path, name: str, known: set[str]) -> set[str]:
    """Modules of `known` that `path` imports anywhere (functions included), outside TYPE_CHECKING."""
    tree = ast.parse(path.read_text())
    skip = _type_checking_nodes(tree)
    found: set[str | None] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found |= {_owner(alias.name, known) for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, name, path.name == "__init__.py")
            found |= {_owner(f"{base}.{alias.name}", known) for alias in node.names}
    return {m for m in found if m is not None and m != name}


def import_graph(root: Path, packages: tuple[str, ...] = PACKAGES) -> dict[str, set[str]]:
    paths = {module_name(p, root): p for pkg in packages for p in (root / pkg).rglob("*.py")}
    known = set(paths)
    return {name: imports(path, name, known) for name, path in paths.items()}


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


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def layer_of(module: str) -> str | None:
    """The longest `ALLOWED` key `module` falls under (None: a module no rule covers)."""
    keys = [k for k in ALLOWED if _within(module, k)]
    return max(keys, key=len) if keys else None


def violations(graph: dict[str, set[str]]) -> list[str]:
    """Every edge that leaves its layer for one the layer may not import, and every module no layer covers."""
    out = []
    for module, deps in sorted(graph.items()):
        layer = layer_of(module)
        if layer is None:
            out.append(
                f"{module}: in no layer of tests/test_layering.py ALLOWED (add it where DESIGN.md puts it)"
            )
            continue
        for dep in sorted(deps):
            own = _within(dep, layer)
            allowed = own or any(_within(dep, p) for p in ALLOWED[layer])
            if not allowed or any(_within(dep, p) for p in NEVER.get(layer, ())):
                out.append(f"{module} -> {dep}")
    return out


def test_no_import_cycles() -> None:
    cycles = find_cycles(import_graph(ROOT))
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_imports_point_down_the_layers() -> None:
    wrong = violations(import_graph(ROOT))
    assert not wrong, "imports against DESIGN.md §2's direction:\n" + "\n".join(wrong)


def test_the_checks_see_cycles_and_upward_imports(tmp_path: Path) -> None:
    """Planted violations: a function-level cycle, nn importing weights, stages importing the training
    entry point, metrics importing the pipeline beyond its renderer, weights importing apps; a
    TYPE_CHECKING import and a permitted edge are not reported."""
    tree = {
        "edtalk": {
            "a.py": "import edtalk.b\n",
            "b.py": "def f():\n    from edtalk import a\n",
            "nn/__init__.py": "",
            "nn/x.py": "from edtalk.config import C\ndef f():\n    from edtalk.weights import load\n",
            "weights/__init__.py": "def f():\n    import edtalk.apps.job\n",
            "stages/__init__.py": "",
            "stages/s.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import edtalk.apps.job\n"
            "def g():\n    from edtalk.train import fit\n",
            "train.py": "",
            "config.py": "",
            "apps/__init__.py": "",
            "apps/job.py": "import metrics.m\nimport edtalk.stages.s\n",
            "pipeline/__init__.py": "",
            "pipeline/render.py": "",
            "pipeline/core.py": "",
        },
        "metrics": {"m.py": "from edtalk.pipeline import render\nfrom edtalk.pipeline.core import x\n"},
    }
    for pkg, files in tree.items():
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("")
        for name, text in files.items():
            (tmp_path / pkg / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / pkg / name).write_text(text)
    graph = import_graph(tmp_path, ("edtalk", "metrics"))
    assert find_cycles(graph) == [["edtalk.a", "edtalk.b", "edtalk.a"]]
    # the TYPE_CHECKING import is left out, the function-level import counts
    assert graph["edtalk.stages.s"] == {"edtalk.train"}
    wrong = set(violations(graph))
    assert {
        "edtalk.nn.x -> edtalk.weights",
        "edtalk.weights -> edtalk.apps.job",
        "edtalk.stages.s -> edtalk.train",
        "metrics.m -> edtalk.pipeline.core",
    } <= wrong
    assert "metrics.m -> edtalk.pipeline.render" not in wrong and "edtalk.apps.job -> metrics.m" not in wrong
    assert "edtalk.nn.x -> edtalk.config" not in wrong
