"""Layering rules of issue 13: one door for weight files, and stages that never import the entry point.

* no module under `edtalk/`, `datamodules/` or `metrics/` calls `torch.load` except `edtalk/weights/`
  (read files with `edtalk.weights.load_file`, networks with `edtalk.weights.load`);
* no module under `edtalk/stages/` imports `edtalk.train` (the training entry point runs the stages,
  not the other way round: a stage declares its `--debug` preparation, `EDTalkStage.prepare_debug(cfg,
  debug_export)`, and the entry point runs it, passing `edtalk.train.debug_export` in).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]


def _modules(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def _torch_load_calls(tree: ast.AST) -> list[int]:
    """Lines calling `torch.load(...)`, or `load` imported from torch (`from torch import load`)."""
    lines = []
    imported = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "torch"
        for alias in node.names
        if alias.name == "load"
    }
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        dotted = (
            isinstance(func, ast.Attribute) and func.attr == "load" and ast.unparse(func.value) == "torch"
        )
        if dotted or (isinstance(func, ast.Name) and func.id in imported):
            lines.append(node.lineno)
    return lines


def test_torch_load_only_in_the_weights_package() -> None:
    door = ROOT / "edtalk" / "weights"
    offenders = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in _modules("edtalk", "datamodules", "metrics")
        if door not in path.parents
        for line in _torch_load_calls(ast.parse(path.read_text(), str(path)))
    ]
    assert not offenders, (
        f"torch.load outside edtalk/weights (use edtalk.weights.load_file / load): {offenders}"
    )


def test_the_check_sees_torch_load() -> None:
    """The detector itself finds both spellings (so the test above can fail)."""
    src = (
        "import torch\nfrom torch import load as L\nx = torch.load('a')\ny = L('b')\nz = torch.save(x, 'c')\n"
    )
    assert _torch_load_calls(ast.parse(src)) == [3, 4]


def _imports_train(tree: ast.AST) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.startswith("edtalk.train") for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom):
            if (node.module or "").startswith("edtalk.train"):
                return True
            if node.module == "edtalk" and any(a.name == "train" for a in node.names):
                return True
    return False


def test_stages_do_not_import_the_training_entry_point() -> None:
    offenders = [
        str(p.relative_to(ROOT))
        for p in _modules("edtalk/stages")
        if _imports_train(ast.parse(p.read_text()))
    ]
    assert not offenders, f"stages importing edtalk.train (issue 13): {offenders}"
    assert _imports_train(ast.parse("def f():\n    from edtalk.train import fit\n"))


def test_stages_get_debug_exports_from_the_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    """`prepare_debug` is declared by the stage and run by `edtalk.train.debug_dependency`, which passes
    the export function in; the base declares "nothing to prepare"."""
    import edtalk.stages
    import edtalk.train as train
    from edtalk.stages.audio2mouth import Audio2MouthStage
    from edtalk.stages.reconstruct import ReconstructStage
    from edtalk.stages.stage import EDTalkStage

    assert ReconstructStage.prepare_debug.__func__ is EDTalkStage.prepare_debug.__func__  # type: ignore[attr-defined]
    assert Audio2MouthStage.prepare_debug.__func__ is not EDTalkStage.prepare_debug.__func__  # type: ignore[attr-defined]
    seen: list[tuple[str, Path]] = []

    class Stage(EDTalkStage):
        @classmethod
        def prepare_debug(cls, cfg: object, debug_export: object) -> None:
            assert callable(debug_export)
            seen.append(("prepared", debug_export("syncnet", cfg)))

    monkeypatch.setattr(edtalk.stages, "stage_class", lambda name: Stage)
    monkeypatch.setattr(train, "_debug_requires", lambda cfg: None)
    monkeypatch.setattr(train, "debug_export", lambda experiment, cfg: Path(f"runs/{experiment}.pt"))
    train.debug_dependency(OmegaConf.create({"stage": "audio2mouth"}))
    assert seen == [("prepared", Path("runs/syncnet.pt"))]
