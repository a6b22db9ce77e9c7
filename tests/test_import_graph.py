"""The package's import graph points one way, cli -> tools -> training -> evaluation/viz ->
data | models -> io, and has no circles. Every import counts for the direction (module level,
inside functions, under ``TYPE_CHECKING``); for circles, the imports that run (type-only imports
under ``TYPE_CHECKING`` may name each other)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "vqa"
# Rooms from the bottom up; a module may import from its own room or a lower one.
LAYERS = [("vqa", "vqa._io"), ("vqa.data", "vqa.models"),
          ("vqa.evaluation", "vqa.benchmark", "vqa.viz"), ("vqa.training",),
          ("vqa.inspector", "vqa.check_data", "vqa.experiments"), ("vqa.cli",)]
APART = [("vqa.data", "vqa.models")]  # rooms of one layer that never import each other


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def type_only(tree: ast.Module) -> set[ast.AST]:
    """The import statements under ``if TYPE_CHECKING:``."""
    return {node for block in ast.walk(tree) if isinstance(block, ast.If)
            and isinstance(block.test, ast.Name) and block.test.id == "TYPE_CHECKING"
            for stmt in block.body for node in ast.walk(stmt)}


def imports(runtime_only: bool = False) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (``from pkg import name`` resolves to the
    submodule ``pkg.name`` when there is one, else to ``pkg``)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        tree = ast.parse(path.read_text(), str(path))
        skip = type_only(tree) if runtime_only else set()
        for node in ast.walk(tree):
            if node in skip:
                continue
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if a.name.split(".")[0] == "vqa")
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                    and node.module.split(".")[0] == "vqa":
                for a in node.names:
                    sub = f"{node.module}.{a.name}"
                    targets.add(sub if sub in modules else node.module)
        graph[name] = {t for t in targets if t != name}
    return graph


def layer(module: str) -> tuple[int, str]:
    """The layer of a module and the room (the longest matching prefix) it belongs to; the
    package itself (``vqa``) holds only its ``__init__``, so a new top-level module must be given
    a room here."""
    rooms = [room for rooms in LAYERS for room in rooms
             if module == room or (room != "vqa" and module.startswith(room + "."))]
    assert rooms, f"{module} is in no room of LAYERS"
    best = max(rooms, key=len)
    return next(i for i, rooms in enumerate(LAYERS) if best in rooms), best


def test_every_import_points_down() -> None:
    graph = imports()
    assert len(graph) > 40 and "vqa.data.features" in graph  # the cache lives in the data room
    upward = []
    for source, targets in graph.items():
        for target in targets:
            (ls, room_s), (lt, room_t) = layer(source), layer(target)
            if lt > ls or (room_s, room_t) in APART or (room_t, room_s) in APART:
                upward.append(f"{source} -> {target}")
    assert not upward, "imports running back up:\n" + "\n".join(sorted(upward))


def test_no_import_circle() -> None:
    graph = imports(runtime_only=True)
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    circles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                circles.append([*path[path.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not circles, "import circles:\n" + "\n".join(" -> ".join(c) for c in circles)
