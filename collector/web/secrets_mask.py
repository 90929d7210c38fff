"""Secrets in the config file never reach the web page (SPEC D9, issue #7).

The config editor shows the file with every secret value replaced by
:data:`PLACEHOLDER`; on save, a placeholder left in place is put back to the
value the file had for the same key in the same table, so a technician can
edit everything else without ever seeing (or retyping) a password. A new
value typed over the placeholder replaces the secret.
"""

from __future__ import annotations

import re

#: The config keys whose values are secrets (``SecretStr`` fields of
#: config/models*.py; tests/test_web_app.py keeps the two lists equal).
SECRET_KEYS = frozenset({"password", "security_code"})

PLACEHOLDER = '"<secret: unchanged>"'

_TABLE = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?")
_ASSIGN = re.compile(r"^(\s*)([A-Za-z0-9_]+)(\s*=\s*)(.*)$")


def _secret_lines(text: str) -> list[tuple[int, str | None, str, re.Match[str]]]:
    """(line index, table, key, match) of every secret assignment."""
    out = []
    table: str | None = None
    for i, line in enumerate(text.split("\n")):
        header = _TABLE.match(line)
        if header:
            table = header.group(1)
            continue
        m = _ASSIGN.match(line)
        if m and m.group(2) in SECRET_KEYS:
            out.append((i, table, m.group(2), m))
    return out


def mask(text: str) -> str:
    """``text`` with every secret value replaced by the placeholder."""
    lines = text.split("\n")
    for i, _, _, m in _secret_lines(text):
        lines[i] = f"{m.group(1)}{m.group(2)}{m.group(3)}{PLACEHOLDER}"
    return "\n".join(lines)


def unmask(edited: str, current: str) -> tuple[str, list[str]]:
    """Put the current secrets back where the placeholder was left; errors for
    a placeholder whose (table, key) the current file does not have."""
    known = {(t, k): m.group(4) for _, t, k, m in _secret_lines(current)}
    lines = edited.split("\n")
    errors = []
    for i, table, key, m in _secret_lines(edited):
        if m.group(4).strip() != PLACEHOLDER:
            continue
        value = known.get((table, key))
        if value is None:
            where = f"{table}.{key}" if table else key
            errors.append(f"{where}: type a value (there is no stored secret to keep)")
            continue
        lines[i] = f"{m.group(1)}{m.group(2)}{m.group(3)}{value}"
    return "\n".join(lines), errors
