"""``config.set``'s ``patch``: merge a JSON object into the config file's data.

Pure functions (no I/O). The rules are JSON Merge Patch (RFC 7386) plus one
extension for arrays of tables:

- an object merges key by key into the table at the same place (created
  when missing);
- ``null`` removes the key (the model's default applies again);
- any other value (string, number, boolean, array) replaces the value
  (inside it, a ``null`` member of a table means absent: TOML has no null);
- extension: an object whose keys are all decimal indices (``{"0": {...}}``),
  applied to an existing array, merges into those items — ``{"ports": {"0":
  {"poll_interval_ms": 150}}}`` changes one port without resending them all.
  An index past the end is an error (items are added by sending the array).

Keys are taken literally: ``{"uplink.host": "…"}`` is *not* the dotted path
``uplink.host`` (a map key such as a grade code could contain a dot); it is
an unknown key, and the error says to nest objects.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

#: A patch nested deeper than this is not a config (the schema is 4 deep:
#: ``ports.0.dart.grades``); bounds the recursion on an untrusted input.
MAX_PATCH_DEPTH = 8

Path = tuple[str | int, ...]

#: An array index as an object key: ASCII digits, no leading zero.
_INDEX = re.compile(r"0|[1-9][0-9]*")


class PatchError(ValueError):
    """The patch cannot be applied; ``errors``: ``key.path: reason`` lines."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


def dotted(path: Path) -> str:
    return ".".join(str(part) for part in path) or "config"


def merge(data: Mapping[str, Any], patch: Any) -> tuple[dict[str, Any], list[Path]]:
    """A new dict: ``data`` with ``patch`` merged in, and the leaf paths it set
    or removed (in patch order). ``data`` is not modified."""
    if not isinstance(patch, dict) or not patch:
        raise PatchError(["patch: must be a non-empty object of config tables"])
    merged = copy.deepcopy(dict(data))
    touched: list[Path] = []
    errors: list[str] = []
    _merge_table(merged, patch, (), touched, errors)
    if errors:
        raise PatchError(errors)
    return merged, touched


def _merge_table(
    target: dict[str, Any],
    patch: dict[str, Any],
    path: Path,
    touched: list[Path],
    errors: list[str],
) -> None:
    if len(path) >= MAX_PATCH_DEPTH:
        errors.append(f"{dotted(path)}: patch nested deeper than {MAX_PATCH_DEPTH}")
        return
    for key, value in patch.items():
        here = (*path, key)
        if value is None:
            target.pop(key, None)
            touched.append(here)
        elif isinstance(value, dict) and isinstance(target.get(key), list):
            _merge_items(target[key], value, here, touched, errors)
        elif isinstance(value, dict):
            if not isinstance(target.get(key), dict):
                target[key] = {}
            if not value:
                touched.append(here)
            _merge_table(target[key], value, here, touched, errors)
        else:
            target[key] = _without_nulls(value)
            touched.append(here)


def _without_nulls(value: Any) -> Any:
    """A copy where ``null`` in a table means absent, as it does in a merged
    table (TOML has no null; a replaced array of tables may carry some)."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _merge_items(
    target: list[Any],
    patch: dict[str, Any],
    path: Path,
    touched: list[Path],
    errors: list[str],
) -> None:
    for key, value in patch.items():
        if not _INDEX.fullmatch(key):
            errors.append(f"{dotted(path)}: is an array: keys must be indices, got {key!r}")
            continue
        index = int(key)
        here = (*path, index)
        if index >= len(target):
            errors.append(f"{dotted(here)}: index out of range ({len(target)} items)")
        elif value is None:
            errors.append(f"{dotted(here)}: an item cannot be removed by index; send the array")
        elif isinstance(value, dict) and isinstance(target[index], dict):
            _merge_table(target[index], value, here, touched, errors)
        else:
            target[index] = _without_nulls(value)
            touched.append(here)


def changed_paths(before: Any, after: Any, path: Path = ()) -> list[Path]:
    """Leaf paths whose values differ between two dumped configs (dicts, lists,
    scalars); a list of a different length is one change at the list."""
    if isinstance(before, dict) and isinstance(after, dict):
        out: list[Path] = []
        for key in sorted(set(before) | set(after)):
            if key not in before or key not in after:
                out.append((*path, key))
            else:
                out += changed_paths(before[key], after[key], (*path, key))
        return out
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        out = []
        for index, (b, a) in enumerate(zip(before, after, strict=True)):
            out += changed_paths(b, a, (*path, index))
        return out
    return [] if before == after else [path]
