"""Write parsed config data back as TOML (``config.set``, ``config.rollback``).

The standard library reads TOML (``tomllib``) but does not write it, and the
config needs only a small part of the language: tables, arrays of tables,
strings, integers, floats, booleans and arrays of those. This writer covers
exactly that part and refuses anything else (dates, which no config key
takes). ``tomllib.loads(dumps(data)) == data`` is the contract
(tests/test_config_change.py checks it on generated data).

Comments of the file being replaced are not carried over: a remote change
writes the data canonically. The file as it was is kept as ``<config>.prev``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
#: TOML basic strings must escape ", \ and every control character but tab.
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def dumps(data: Mapping[str, Any], header: str = "") -> str:
    """``data`` as TOML text; ``header``: comment lines put first (without ``#``)."""
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    _table(lines, (), data)
    return "\n".join(lines).strip("\n") + "\n"


def key_text(key: str) -> str:
    """A key as TOML writes it: bare when it can be, else a quoted string."""
    return _key(key)


def _key(key: str) -> str:
    if not isinstance(key, str):
        raise ValueError(f"TOML keys are strings, got {type(key).__name__}")
    return key if _BARE_KEY.fullmatch(key) else _string(key)


def _string(text: str) -> str:
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif (ord(ch) < 0x20 and ch != "\t") or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _value(value: Any) -> str:
    """An inline value: scalar, array or inline table."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    raise ValueError(f"no TOML form for a {type(value).__name__} in a config")


def _table(lines: list[str], path: tuple[str, ...], table: Mapping[str, Any]) -> None:
    """Scalars and inline arrays first, then sub-tables, then arrays of tables:
    a key after a ``[header]`` would belong to that header's table."""
    subtables = []
    for key, value in table.items():
        if isinstance(value, dict) or _is_table_array(value):
            subtables.append((key, value))
        else:
            lines.append(f"{_key(key)} = {_value(value)}")
    for key, value in subtables:
        name = ".".join(_key(part) for part in (*path, key))
        if isinstance(value, dict):
            lines += ["", f"[{name}]"]
            _table(lines, (*path, key), value)
        else:
            for item in value:
                lines += ["", f"[[{name}]]"]
                _table(lines, (*path, key), item)
