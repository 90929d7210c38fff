"""The product's import graph: layers import downward only, and no circles.

Read from the code with the standard library's ``ast`` (nothing is
imported): every ``import`` and ``from … import`` counts, at module level,
inside a function (a lazy import) or under ``if TYPE_CHECKING`` (a type is
a dependency too). The layers, bottom first (docs/architecture.md):

    records  ←  protocols  ←  config  ←  buffer  ←  uplink  ←  collector

A package may import its own modules and those of any layer below it, never
one above. ``hil/`` (simulators, test peers) is above them all and never
imported by the product. Among all the product's modules no import circle,
inside a package or across packages.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Bottom first; a package may import only those before it (and itself).
LAYERS = ("records", "protocols", "config", "buffer", "uplink", "collector")
#: Above the product: may import anything, imported by none of it.
HARNESS = "hil"


def modules(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    """Dotted module name → file, for every module of ``packages`` under ``root``."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _imported(node: ast.AST, here: str, is_package: bool) -> Iterator[str]:
    """The dotted names one import statement may load."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
        if node.level:  # relative: from the module's own package up
            package = here.split(".") if is_package else here.split(".")[:-1]
            base = ".".join([*package[: len(package) - node.level + 1], node.module or ""])
        else:
            base = node.module or ""
        base = base.strip(".")
        # ``from a import b``: the module a.b if there is one, else a itself.
        yield from (f"{base}.{alias.name}" for alias in node.names)
        yield base


#: A line that begins an import statement, at any indent (a function's lazy
#: import, an ``if TYPE_CHECKING`` block), parenthesised names included.
IMPORT_LINE = re.compile(
    r"^[ \t]*(?:from[ \t]+[\w.]+[ \t]+import[ \t]+(?:\([^)]*\)|[^\n]*)|import[ \t]+[^\n]*)",
    re.MULTILINE,
)


def import_statements(text: str) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement of a module's text, parsed by ``ast`` with its
    line. Only the lines that can begin one are parsed (parsing each whole
    file costs seconds): prose that reads like an import but is not Python
    does not parse and is passed over; an import line inside a string (a
    script handed to ``python -c``) counts, on the safe side."""
    for match in IMPORT_LINE.finditer(text):
        try:
            tree = ast.parse(match[0].strip())
        except SyntaxError:
            continue
        line = text.count("\n", 0, match.start()) + 1
        for node in tree.body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                node.lineno = line
                yield node


def import_graph(root: Path, packages: tuple[str, ...]) -> dict[str, dict[str, int]]:
    """Module → {module of the given packages it imports: line of the first import}."""
    known = modules(root, packages)
    graph: dict[str, dict[str, int]] = {}
    for name, path in known.items():
        edges: dict[str, int] = {}
        is_package = path.name == "__init__.py"
        for node in import_statements(path.read_text("utf-8")):
            names = list(_imported(node, name, is_package))
            if isinstance(node, ast.ImportFrom):
                # the most specific known module per imported name; the base
                # module only when a name is not a module of its own
                targets = {n for n in names[:-1] if n in known} or {names[-1]}
            else:
                targets = set(names)
            for target in targets:
                while target and target not in known:
                    target = target.rpartition(".")[0]
                if target and target != name and not name.startswith(target + "."):
                    edges.setdefault(target, node.lineno)
        graph[name] = edges
    return graph


def circles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Every strongly connected set of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(graph[start]))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(graph[nxt])))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        found.append(sorted(group))
    return found


def upward(graph: dict[str, dict[str, int]], layers: tuple[str, ...]) -> list[str]:
    """Each import of a higher layer, or of the harness, by the product: ``a:line -> b``."""
    rank = {package: i for i, package in enumerate(layers)}
    rank[HARNESS] = len(layers)
    wrong = []
    for name, edges in graph.items():
        mine = rank[name.split(".")[0]]
        for target, line in edges.items():
            if rank[target.split(".")[0]] > mine:
                wrong.append(f"{name}:{line} -> {target}")
    return sorted(wrong)


def test_the_product_imports_downward_only_and_has_no_circles() -> None:
    graph = import_graph(ROOT, (*LAYERS, HARNESS))
    assert len(graph) > 250 and "collector.daemon" in graph  # the whole product was read
    assert upward(graph, LAYERS) == []
    assert circles(graph) == []


def test_the_daemon_hands_its_parts_narrow_views_not_itself() -> None:
    """No part imports the daemon; the parts it builds import what they need."""
    graph = import_graph(ROOT, LAYERS)
    importers = sorted(name for name, edges in graph.items() if "collector.daemon" in edges)
    assert importers == ["collector.cli"]  # `forecourt run` starts it; nothing else


def _tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_walk_sees_lazy_relative_and_type_only_imports(tmp_path: Path) -> None:
    """The checks above are only as good as this walk: a circle closed by a
    function-level import, a relative import or an ``if TYPE_CHECKING`` one, and a
    lower layer reaching up, are each found."""
    _tree(
        tmp_path,
        {
            "low/__init__.py": "",
            "low/a.py": "def f():\n    from low import b\n",
            "low/b.py": "import typing\nif typing.TYPE_CHECKING:\n    from .a import f\n",
            "low/c.py": "import high.x\n",
            "high/__init__.py": "",
            "high/x.py": "from low import c\nfrom low.a import f\n",
        },
    )
    graph = import_graph(tmp_path, ("low", "high"))
    assert graph["low.a"] == {"low.b": 2} and graph["low.b"] == {"low.a": 3}
    assert graph["high.x"] == {"low.c": 1, "low.a": 2}
    assert sorted(circles(graph)) == [["high.x", "low.c"], ["low.a", "low.b"]]
    assert upward(graph, ("low", "high")) == ["low.c:1 -> high.x"]


@pytest.mark.parametrize("package", LAYERS)
def test_each_layer_opens_with_what_it_owns(package: str) -> None:
    """Each package's docstring says what it is: a newcomer reads the tree."""
    text = (ROOT / package / "__init__.py").read_text("utf-8")
    doc = ast.get_docstring(ast.parse(text))
    assert doc is not None and len(doc) > 40, f"{package}/__init__.py: say what it owns"


#: collector/'s rooms and their rank, bottom first: a room's module imports
#: its own room and those of the same or a lower rank (collector/ota beside
#: remote, collector/web beside tools), never a higher one (docs/architecture.md).
ROOMS = {"device": 0, "station": 1, "remote": 2, "ota": 2, "tools": 3, "web": 3, "detect": 3}
#: collector/'s own modules every room may import: what the rooms share.
SHARED = ("collector", "collector.logs", "collector.retry", "collector.parts")
#: collector/'s builders: they import the rooms; no room imports them.
BUILDERS = ("collector.__main__", "collector.assembly", "collector.cli", "collector.daemon")


def room_of(name: str) -> str | None:
    """``collector.station.sink`` → ``station``; None outside a room."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "collector" and parts[1] in ROOMS else None


def room_breaches(graph: dict[str, dict[str, int]]) -> list[str]:
    """Each import by a room of a higher room or of a builder: ``a:line -> b``."""
    wrong = []
    for name, edges in graph.items():
        room = room_of(name)
        if room is None:
            continue
        for target, line in edges.items():
            there = room_of(target)
            if there is not None:
                if ROOMS[there] > ROOMS[room]:
                    wrong.append(f"{name}:{line} -> {target}")
            elif target.startswith("collector") and target not in SHARED:
                wrong.append(f"{name}:{line} -> {target}")
    return sorted(wrong)


def test_collector_is_in_rooms_and_a_room_imports_only_its_own_rank_and_below() -> None:
    graph = import_graph(ROOT, LAYERS)
    top = sorted(n for n in graph if n.startswith("collector") and n.count(".") <= 1)
    rooms = [f"collector.{room}" for room in ROOMS]
    # A module new at collector/'s top belongs in a room (/work/tools/split.py module=room).
    assert [n for n in top if n not in rooms] == sorted((*SHARED, *BUILDERS))
    assert room_breaches(graph) == []


def test_the_room_check_sees_an_upward_import_and_a_builder() -> None:
    graph = {
        "collector.station.sink": {"collector.device.clock": 1, "collector.logs": 2},
        "collector.device.leds": {"collector.station.sink": 3},
        "collector.remote.x": {"collector.assembly": 4, "collector.ota.fit": 5},
        "collector.ota.fit": {"collector.remote.x": 6},
    }
    assert room_breaches(graph) == [
        "collector.device.leds:3 -> collector.station.sink",
        "collector.remote.x:4 -> collector.assembly",
    ]


@pytest.mark.parametrize("room", sorted(ROOMS))
def test_each_room_opens_with_what_it_owns_and_may_import(room: str) -> None:
    text = (ROOT / "collector" / room / "__init__.py").read_text("utf-8")
    doc = " ".join((ast.get_docstring(ast.parse(text)) or "").split())
    assert "May import" in doc and "Must not import" in doc, f"collector/{room}/__init__.py"
