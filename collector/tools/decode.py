"""``forecourt decode --protocol NAME BYTES…``: what a capture says, frame by frame.

Technicians paste what a serial sniffer showed; tests use it too. Input is
hex (``FA 00 01 …``, ``fa0001…``, ``0xFA,0x00``), or for the tank gauge the
frame as text with ``\\x01`` / ``\\x03`` escapes; ``-`` reads standard input.
``--evidence FILE`` reads a raw-log export (``forecourt capture export``) or
the parts of an ``evidence.fetch`` instead (collector/station/evidence_io.py). Each
frame found becomes one JSON line with its raw fields and scaled
values; each rejected stretch one line saying why. Exit status 1 when
anything was rejected, 2 when the input itself cannot be read.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_HEX_NOISE = re.compile(r"0x|[\s,:;\-]", re.IGNORECASE)
_HEX = re.compile(r"[0-9a-fA-F]*")


class InputError(ValueError):
    """The text is neither hex nor (for text protocols) an escaped frame."""


def parse_hex(text: str) -> bytes:
    digits = _HEX_NOISE.sub("", text)
    if not _HEX.fullmatch(digits):
        bad = next(c for c in digits if c not in "0123456789abcdefABCDEF")
        raise InputError(f"not hex: unexpected {bad!r}")
    if len(digits) % 2:
        raise InputError(f"not hex: odd number of digits ({len(digits)})")
    return bytes.fromhex(digits)


def input_bytes(protocol: str, pieces: Sequence[str]) -> bytes:
    text = " ".join(pieces)
    if protocol == "tls":
        from protocols.tls.describe import parse_text_frame

        try:
            return bytes(parse_text_frame(text))
        except ValueError as exc:
            raise InputError(str(exc)) from exc
    return parse_hex(text)


def decode(protocol: str, pieces: Sequence[str]) -> tuple[int, list[dict[str, Any]]]:
    """(exit status, lines) for ``forecourt decode``; no printing, for tests."""
    from protocols import UnknownProtocol, load_describer

    try:
        describe = load_describer(protocol)
    except UnknownProtocol as exc:
        return 2, [{"ok": False, "error": "usage", "detail": str(exc)}]
    if list(pieces) == ["-"]:
        pieces = [sys.stdin.read()]
    try:
        data = input_bytes(protocol, pieces)
    except InputError as exc:
        return 2, [{"ok": False, "error": "input", "detail": str(exc)}]
    if not data:
        return 2, [{"ok": False, "error": "input", "detail": "no bytes given"}]
    lines: list[dict[str, Any]] = describe(data)
    status = 1 if any(not line.get("ok") for line in lines) else 0
    return status, lines


def main(protocol: str, pieces: Sequence[str]) -> int:
    status, lines = decode(protocol, pieces)
    for line in lines:
        print(json.dumps(line, ensure_ascii=False))
    return status


def main_evidence(path: Path, protocol: str | None) -> int:
    """``forecourt decode --evidence FILE``: the chain, then every frame."""
    from collector.station.evidence_io import decode_evidence

    try:
        if str(path) == "-":
            status, lines = decode_evidence(sys.stdin, protocol)
        else:
            with path.open(encoding="utf-8") as f:
                status, lines = decode_evidence(f, protocol)
    except (OSError, UnicodeDecodeError) as exc:
        print(json.dumps({"ok": False, "error": "input", "detail": f"{path}: {exc}"}))
        return 2
    for line in lines:
        print(json.dumps(line, ensure_ascii=False))
    return status
