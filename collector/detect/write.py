"""``forecourt detect --write CONFIG``: merge the stanzas found into a config file.

A line whose device a ``[[ports]]`` table already names (the same file, by
its real path) keeps that table's number and every key that is not about
the line (poll intervals, RS-485, line checks, its name): its protocol,
line setting and addresses become detect's, its old protocol's options
table goes when the protocol changed, and a relay stays a relay (the
technician wired it so). A new line is appended with the lowest free port
number. The merged file must pass ``config check`` (the same steps as
``forecourt config check``: models, then what it names outside itself)
before it replaces the file — written atomically (config/atomic.py), the
file it replaces kept as ``<config>.prev`` (collector/remote/config_files.py) —
so a refused merge leaves the file as it was. The merged file is written
canonically (config/toml_write.py): its comments are not carried over; the
``.prev`` keeps them.
"""

from __future__ import annotations

import copy
import os
import tempfile
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

#: SPEC D15 (config/models_ports.py MAX_PORTS).
MAX_PORTS = 32
#: Keys detect decides; everything else of an existing port is kept.
LINE_KEYS = ("protocol", "baudrate", "bytesize", "parity", "stopbits", "addresses")


class WriteRefused(Exception):
    """The merge cannot be written; ``lines``: why, one per line."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("; ".join(lines))
        self.lines = lines


def _same_device(a: str, b: str) -> bool:
    return a == b or os.path.realpath(a) == os.path.realpath(b)


def merge_ports(data: dict[str, Any], stanzas: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``data`` with ``stanzas`` merged into its ``ports`` (module doc); each
    stanza's ``number`` is set to the one it got. ``data`` is not changed."""
    merged = copy.deepcopy(data)
    ports = merged.setdefault("ports", [])
    if not isinstance(ports, list):
        raise WriteRefused(["ports: not an array of tables; fix the file first"])
    for stanza in stanzas:
        existing = next(
            (
                p
                for p in ports
                if isinstance(p, dict)
                and isinstance(p.get("device"), str)
                and _same_device(p["device"], stanza["device"])
            ),
            None,
        )
        if existing is None:
            stanza["number"] = _free_number(ports)
            ports.append(dict(stanza))
            continue
        if existing.get("protocol") != stanza["protocol"]:
            existing.pop(str(existing.get("protocol")), None)  # the old protocol's options
        for key in LINE_KEYS:
            existing[key] = stanza[key]
        if existing.get("mode") != "relay":
            existing.pop("mode", None)
            if stanza.get("mode", "poll") != "poll":
                existing["mode"] = stanza["mode"]
        stanza["number"] = existing.get("number")
    return merged


def _free_number(ports: list[Any]) -> int:
    taken = {p.get("number") for p in ports if isinstance(p, dict)}
    for number in range(1, MAX_PORTS + 1):
        if number not in taken:
            return number
    raise WriteRefused([f"ports: all {MAX_PORTS} port numbers are taken"])


def write_merged(path: Path, stanzas: Sequence[dict[str, Any]]) -> str:
    """Merge ``stanzas`` into the config at ``path``, check, write; returns the
    text written. Raises :class:`WriteRefused` (the file untouched)."""
    from collector.remote.config_env import config_errors
    from collector.remote.config_files import pending_path, replace_keeping_prev
    from config import toml_read, toml_write

    if pending_path(path).exists():
        raise WriteRefused(
            [f"{path}: a remote change (config.set) waits for confirmation; try after it"]
        )
    try:
        raw = path.read_bytes()
    except OSError as exc:
        hint = " (start from config/example.toml)" if isinstance(exc, FileNotFoundError) else ""
        raise WriteRefused([f"{path}: {exc.strerror or exc}{hint}"]) from None
    try:
        data = toml_read.load_bytes(raw)
    except ValueError as exc:  # TOMLDecodeError (and past a bound), UnicodeDecodeError
        raise WriteRefused([f"{path}: not a valid TOML file: {exc}"]) from None
    merged = merge_ports(data, stanzas)
    header = (
        f"Ports written by forecourt detect at "
        f"{datetime.now().astimezone().isoformat(timespec='seconds')}; the file before it"
        f" is {path.name}.prev.\nEvery key: config/example.toml of the release."
    )
    text = toml_write.dumps(merged, header)
    errors = _check(path, text, config_errors)
    if errors:
        raise WriteRefused(errors)
    replace_keeping_prev(path, text.encode("utf-8"))
    return text


def _check(path: Path, text: str, errors_of: Any) -> list[str]:
    """``config check``'s lines for ``text`` as if it were ``path`` (empty: ok)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".check")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        found = errors_of(Path(tmp), [])
    finally:
        os.unlink(tmp)
    if not isinstance(found, list):
        return []
    return [line.replace(tmp, str(path)) for line in found]
