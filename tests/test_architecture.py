"""The rooms import one way: math and networks never import workflows (STYLE.md §1)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "ardistill"

WORKFLOWS = {"pairs", "training", "sampling", "bench", "zoo", "cli", "demo"}
# room -> ardistill top-level modules it must never import
FORBIDDEN = {
    "flow": WORKFLOWS | {"teachers", "student", "metrics", "data"},
    "metrics": WORKFLOWS | {"student"},
    "teachers": WORKFLOWS | {"student", "metrics", "flow"},
    "student": WORKFLOWS | {"metrics"},
    "pairs": {"training", "sampling", "bench", "zoo", "cli", "demo", "student"},
    "training": {"sampling", "bench", "zoo", "cli", "demo"},
}


def _room(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py")


def _ardistill_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            raise AssertionError(f"{path}: use absolute imports (ardistill.x), not relative")
        for n in names:
            parts = n.split(".")
            if parts[0] == "ardistill" and len(parts) > 1:
                out.add(parts[1])
    return out


def _files():
    return sorted(p for p in SRC.rglob("*.py") if _room(p) in FORBIDDEN)


@pytest.mark.parametrize("path", _files(), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_flow_one_way(path: Path):
    forbidden = FORBIDDEN[_room(path)]
    if path.stem == "cli" or path.stem.endswith("_cli"):
        # a room's command-line adapter raises ardistill.cli.CLIError; nothing else may
        forbidden = forbidden - {"cli"}
    bad = _ardistill_imports(path) & forbidden
    assert not bad, f"{path.relative_to(SRC)} ({_room(path)}) imports {sorted(bad)}"


def test_architecture_test_sees_files():
    assert len(_files()) > 0
