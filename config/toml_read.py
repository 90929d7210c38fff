"""TOML parsed within bounds: size and nesting depth, checked before the parser runs.

``tomllib`` parses arrays and inline tables by recursion, so a few kilobytes
of ``a = [[[[…`` end in a ``RecursionError`` (a 3 000-line traceback) in
whatever reads them: ``forecourt config check``, ``run``, the web page's
editor, the technician commands. Dotted keys and table headers nest without
recursion in the parser, but every later reader of the data (a deep copy,
pydantic, the editor's secret scan) recurses through it. Here the text is
scanned for its bracket depth first and the parsed data measured after,
both without recursion; past a bound the reader gets one error line.

Only the standard library: the quick technician commands and the key file
reader use this too.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

#: Largest config or key file read: example.toml with every key is ≈ 20 kB,
#: a 32-port station's config about as much; 1 MiB is far above any real
#: file and keeps a mistaken path (a log, a store) from being read whole.
MAX_TOML_BYTES = 1024 * 1024
#: Deepest nesting of tables and arrays: the schema nests at most 5 deep
#: (``ports`` → a port → ``[ports.dart]`` → ``grades`` → a grade); 16 leaves
#: room and stays far below the parser's recursion (≈ 330 levels here).
MAX_TOML_DEPTH = 16

#: What the depth scan must step over: strings (a bracket inside one is
#: text), comments, and the brackets themselves. Multi-line strings first.
_TOKENS = re.compile(
    r'"""(?:[^"\\]|\\.|"(?!""))*"""'
    r"|'''(?:[^']|'(?!''))*'''"
    r'|"(?:[^"\\\n]|\\.)*"'
    r"|'[^'\n]*'"
    r"|#[^\n]*"
    r"|[\[\]{}]",
    re.DOTALL,
)


class FileUnreadable(Exception):
    """A config or key file that cannot be read within the bounds; ``str()``
    is one ``<file>: reason`` line."""


def read_bounded(path: Path) -> bytes:
    """The file's bytes, at most :data:`MAX_TOML_BYTES` (a path at /dev/zero ends)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_TOML_BYTES + 1)
    except FileNotFoundError:
        raise FileUnreadable(f"{path}: no such file") from None
    except IsADirectoryError:
        raise FileUnreadable(f"{path}: is a directory") from None
    except OSError as exc:
        raise FileUnreadable(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_TOML_BYTES:
        raise FileUnreadable(f"{path}: larger than {MAX_TOML_BYTES // 1024} KiB")
    return raw


class TomlBoundError(tomllib.TOMLDecodeError):
    """Too large or nested too deep; a ``TOMLDecodeError``, so every reader
    that reports a syntax error reports this one the same way."""


def loads(text: str) -> dict[str, Any]:
    """``tomllib.loads`` after the size and depth checks; raises
    ``tomllib.TOMLDecodeError`` (a :class:`TomlBoundError` past a bound)."""
    check_text(text)
    data = tomllib.loads(text)
    check_data(data)
    return data


def load_bytes(raw: bytes) -> dict[str, Any]:
    """:func:`loads` of a file's bytes (UTF-8; ``UnicodeDecodeError`` otherwise)."""
    if len(raw) > MAX_TOML_BYTES:
        raise TomlBoundError(f"larger than {MAX_TOML_BYTES // 1024} KiB ({len(raw)} bytes)")
    return loads(raw.decode("utf-8"))


def check_text(text: str) -> None:
    """Refuse text over :data:`MAX_TOML_BYTES` or with brackets nested deeper
    than :data:`MAX_TOML_DEPTH` (outside strings and comments)."""
    if len(text) > MAX_TOML_BYTES:
        raise TomlBoundError(f"larger than {MAX_TOML_BYTES // 1024} KiB ({len(text)} characters)")
    depth = 0
    for token in _TOKENS.finditer(text):
        char = token.group()
        if char in "[{":
            depth += 1
            if depth > MAX_TOML_DEPTH:
                line = text.count("\n", 0, token.start()) + 1
                raise TomlBoundError(
                    f"arrays and tables nested deeper than {MAX_TOML_DEPTH} levels (line {line})"
                )
        elif char in "]}":
            depth = max(0, depth - 1)  # unbalanced: the parser says where


def check_data(data: Any) -> None:
    """Refuse parsed data nested deeper than :data:`MAX_TOML_DEPTH` (dotted
    keys and table headers nest without brackets); measured without recursion."""
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_TOML_DEPTH:
            raise TomlBoundError(f"keys nested deeper than {MAX_TOML_DEPTH} levels")
        if isinstance(node, dict):
            stack.extend((value, depth + 1) for value in node.values())
        elif isinstance(node, list):
            stack.extend((value, depth + 1) for value in node)
