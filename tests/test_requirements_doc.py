"""docs/requirements.md is true: every requirement has a row, and every row
names things that exist.

The table reads ``| ids | what | modules | tests |``. Checked here, from the
files alone (nothing is imported):

- every requirement id of the specification (``- D4 …`` lines of
  ``shared/SPEC.md``, found beside the checkout) is in some row's ids;
- every path a row names in backticks (``collector/station/sink.py``,
  ``protocols/*/describe.py``, ``systemd/…``) exists, a glob matching at
  least one file;
- every test a row names (``tests/test_x.py`` or
  ``tests/test_x.py::test_name``) exists, the function too;
- every test file ``tests/test_*.py`` is named by some row (by name or by a
  glob), so no test is there for a reason nobody wrote down.
"""

from __future__ import annotations

import ast
import os
import re
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS_MD = ROOT / "docs" / "requirements.md"
#: A requirement line of the specification: ``- D4 Local storage …``.
SPEC_ID = re.compile(r"^- ([A-Z][0-9]+) ", re.MULTILINE)
#: A row's id cell: ``D6, D17`` or ``—``.
ROW_ID = re.compile(r"\b[A-Z][0-9]+\b")
#: A path in backticks: a slash, no spaces (``_emit``, ``Uplink.resend`` are not).
PATH = re.compile(r"`([A-Za-z0-9_.*/-]+/[A-Za-z0-9_.*/-]*(?:::[A-Za-z0-9_]+)?)`")


#: The specification's ids, kept in the repository for a clone without
#: ``shared/`` beside it (CI's clean clone); checked against the file when
#: both are present.
SPEC_IDS_COPY = ROOT / "tests" / "spec_ids.txt"


def spec_path() -> Path | None:
    """The specification: ``$FORECOURT_SPEC``, else ``shared/SPEC.md`` in the
    checkout's parent directories (the repository's docs cite it so)."""
    if "FORECOURT_SPEC" in os.environ:
        return Path(os.environ["FORECOURT_SPEC"])
    for parent in ROOT.parents:
        if (parent / "shared" / "SPEC.md").is_file():
            return parent / "shared" / "SPEC.md"
    return None


def copied_ids() -> set[str]:
    lines = SPEC_IDS_COPY.read_text("utf-8").splitlines()
    return {line for line in lines if line and not line.startswith("#")}


def spec_ids() -> set[str]:
    """The ids from the specification where it is beside the checkout (and
    the copy must equal them), else from the copy."""
    path = spec_path()
    if path is None:
        return copied_ids()
    ids = set(SPEC_ID.findall(path.read_text("utf-8")))
    assert ids == copied_ids(), f"tests/spec_ids.txt differs from {path}: copy the ids again"
    return ids


def rows(text: str) -> list[list[str]]:
    """The table's rows as cells (header and rule left out)."""
    out = []
    for line in text.splitlines():
        if not line.startswith("| ") or line.startswith("|---"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if cells[0] == "id":
            continue
        out.append(cells)
    return out


def named_paths(row: list[str]) -> list[str]:
    """Every path a row names in backticks, in its module and test cells
    (what a test writes, under ``test-artifacts/``, is not in the checkout)."""
    return [
        m for cell in row[2:] for m in PATH.findall(cell) if not m.startswith("test-artifacts/")
    ]


@cache
def functions(path: Path) -> frozenset[str]:
    tree = ast.parse(path.read_text("utf-8"))
    return frozenset(
        n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
    )


def missing(name: str, root: Path) -> str | None:
    """Why ``name`` (a path, a glob, or ``file::function``) names nothing, or None."""
    path, _, function = name.partition("::")
    path = path.rstrip("/")
    found = sorted(root.glob(path)) if "*" in path else [root / path]
    if not any(p.exists() for p in found):
        return f"{path}: no such file"
    if function and function not in functions(found[0]):
        return f"{path}: no {function}"
    return None


def test_every_requirement_of_the_specification_has_a_row() -> None:
    ids = spec_ids()
    assert len(ids) > 30  # the specification was read
    table = rows(REQUIREMENTS_MD.read_text("utf-8"))
    covered = {i for row in table for i in ROW_ID.findall(row[0])}
    assert sorted(ids - covered) == []


def test_every_module_and_test_a_row_names_exists() -> None:
    table = rows(REQUIREMENTS_MD.read_text("utf-8"))
    assert len(table) > 50 and all(len(row) == 4 for row in table), "four cells a row"
    wrong = sorted({why for row in table for n in named_paths(row) if (why := missing(n, ROOT))})
    assert wrong == []


def test_every_test_file_is_named_by_some_row() -> None:
    named = [
        n.partition("::")[0]
        for row in rows(REQUIREMENTS_MD.read_text("utf-8"))
        for n in named_paths(row)
        if n.startswith("tests/")
    ]
    covered = {p for n in named for p in ROOT.glob(n)}
    unnamed = sorted(
        str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py") if p not in covered
    )
    assert unnamed == []


def test_the_check_finds_a_missing_file_a_missing_test_and_a_glob_of_nothing(
    tmp_path: Path,
) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_a.py").write_text("def test_one():\n    assert 1\n")
    row = rows(
        "| id | what | module | test |\n|---|---|---|---|\n"
        "| D1 | x | `lib/gone.py`, `_emit` | `tests/test_a.py::test_one`, "
        "`tests/test_a.py::test_two`, `tests/test_*_sim.py` |\n"
    )[0]
    assert named_paths(row) == [
        "lib/gone.py",
        "tests/test_a.py::test_one",
        "tests/test_a.py::test_two",
        "tests/test_*_sim.py",
    ]
    assert [missing(n, tmp_path) for n in named_paths(row)] == [
        "lib/gone.py: no such file",
        None,
        "tests/test_a.py: no test_two",
        "tests/test_*_sim.py: no such file",
    ]
