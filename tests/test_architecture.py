"""The house's layering (docs/architecture.md), checked on the source itself.

Every import of an ardistill module counts, those inside functions too. A room may import its
own modules and rooms on lower floors; rooms on the same floor stay apart, except where
`SAME_FLOOR` allows one direction. There is no import circle between modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "ardistill"

# floor -> rooms (top-level packages or modules of ardistill); docs/architecture.md, "Rooms"
FLOORS: dict[int, set[str]] = {
    0: {"errors", "utils", "weights", "data", "__init__"},  # ground: plumbing, shipped files
    1: {"flow", "metrics"},  # math: tensors in, tensors or numbers out
    2: {"teachers", "student", "text"},  # networks
    3: {"core"},  # the contracts every workflow shares
    4: {"pairs", "training", "sampling", "evaluation", "zoo"},  # workflows
    5: {"bench", "demo", "app"},  # compositions of workflows
    6: {"cli", "__main__"},  # the command line
}
# (importer, imported) pairs allowed on one floor
SAME_FLOOR = {("utils", "errors"), ("weights", "errors"), ("student", "teachers"),
              ("__main__", "cli")}
FLOOR_OF = {room: f for f, rooms in FLOORS.items() for room in rooms}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _resolve(name: str) -> str | None:
    """The ardistill module an import names (`a.b.c` may be a module or a name in `a.b`)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str) -> set[str]:
    """Every ardistill module `module` imports, at any depth of its code."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), filename=str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level > 0:
                raise AssertionError(f"{path}: use absolute imports (ardistill.x), not relative")
            base = node.module or ""
            # `from a.b import c` imports module a.b.c when c is a module, else a.b
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        for n in names:
            if n == "ardistill" or n.startswith("ardistill."):
                target = _resolve(n)
                if target and target != module:
                    out.add(target)
    return out


GRAPH = {m: imports_of(m) for m in MODULES}


def test_every_room_has_a_floor():
    rooms = {_room(m) for m in MODULES}
    assert rooms <= set(FLOOR_OF), f"rooms without a floor: {sorted(rooms - set(FLOOR_OF))}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_down(module: str):
    room = _room(module)
    bad = []
    for target in GRAPH[module]:
        other = _room(target)
        if other == room or other == "__init__":
            continue
        if FLOOR_OF[other] > FLOOR_OF[room]:
            bad.append(f"{target} (floor {FLOOR_OF[other]}, above {room}'s {FLOOR_OF[room]})")
        elif FLOOR_OF[other] == FLOOR_OF[room] and (room, other) not in SAME_FLOOR:
            bad.append(f"{target} (same floor: {room} and {other} stay apart)")
    assert not bad, f"{module} imports " + "; ".join(sorted(bad))


def test_no_import_circles():
    """Tarjan's strongly connected components of the module graph: all of size one."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for m in sorted(GRAPH):
        if m not in index:
            visit(m)
    assert not circles, f"import circles: {circles}"


def test_the_checks_see_the_code():
    """The graph is not empty, and the checks would catch a violation."""
    assert len(MODULES) > 80 and sum(len(v) for v in GRAPH.values()) > 200
    assert "ardistill.teachers.base" in GRAPH["ardistill.student.base"]
    assert FLOOR_OF["sampling"] == FLOOR_OF["pairs"]  # two workflows: may not import each other
    assert "ardistill.flow.kernels" in GRAPH["ardistill.flow.solver"]


def test_no_ticket_numbers_in_product_text():
    """Product text and comments speak of the product, not of the tracker's issues."""
    import re

    pat = re.compile(r"\bissue\s+#?\d+|\bticket\s+#?\d+", re.IGNORECASE)
    hits = [f"{p.relative_to(SRC)}:{i}" for p in SRC.rglob("*.py")
            for i, line in enumerate(p.read_text().splitlines(), 1) if pat.search(line)]
    assert not hits, f"issue numbers in product text: {hits}"
