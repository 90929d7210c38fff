"""docs/brands.md says what each built-in protocol supports, and says it truly.

Every support entry in the document's tables reads
``\\`name\\`: item, item, …``; an item is a mode (``poll``, ``relay``,
``listen``, ``decode``, ``sim``, ``census``), optionally with a parenthesis
(where the tap goes, a caveat), or ``no <mode> (why)`` for one refused. The
test reads every such entry and compares it with the protocol's descriptor
(``protocols/<name>/__init__.py``), so the table cannot drift from the code:
a protocol added, a monitor gained, a listen refused all fail here until the
document says so.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import protocols
from protocols.descriptor import ProtocolDescriptor

BRANDS_MD = Path(__file__).resolve().parent.parent / "docs" / "brands.md"
FAMILY_SECTION = "## (b) Protocol families"
MODES = ("poll", "relay", "listen", "decode", "sim", "census")
ENTRY = re.compile(r"^`(?P<name>[a-z0-9_]+)`: (?P<items>.+)$")


def _builtin() -> list[ProtocolDescriptor]:
    # Built in: its parts live in this repository's ``protocols`` package
    # (an entry point installed in a developer's environment is not ours to
    # document).
    return [
        protocols.descriptor(name)
        for name in protocols.available()
        if protocols.descriptor(name).describer.startswith("protocols.")
    ]


def _expected(found: ProtocolDescriptor) -> dict[str, bool]:
    return {
        "poll": found.driver is not None,
        "relay": found.monitor is not None,
        "listen": found.bus_monitor,
        "decode": True,  # every descriptor has a describer
        "sim": found.responder is not None,
        "census": found.census is not None,
    }


def _split_items(text: str) -> list[str]:
    """Split at the commas outside parentheses."""
    items, depth, current = [], 0, ""
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            items.append(current.strip())
            current = ""
        else:
            current += char
    items.append(current.strip())
    return items


def parse_support(items: str) -> dict[str, bool]:
    """``"poll, relay, no listen (why), decode"`` → each mode's yes / no."""
    said: dict[str, bool] = {}
    for item in _split_items(items):
        words = item.split()
        supported = words[0] != "no"
        mode = words[0] if supported else words[1]
        assert mode in MODES, f"unknown item {item!r} in {items!r}"
        assert mode not in said, f"{mode} said twice in {items!r}"
        said[mode] = supported
    return said


def support_entries(text: str) -> list[tuple[str, str, bool]]:
    """(name, items, in the family table) of every support entry: the last
    cell of a table row that starts with a backquoted protocol name."""
    entries = []
    in_families = False
    for line in text.splitlines():
        if line.startswith("## "):
            in_families = line.startswith(FAMILY_SECTION)
        if not line.startswith("|"):
            continue
        cells = re.split(r"(?<!\\)\|", line.strip())
        match = ENTRY.match(cells[-2].strip())
        if match:
            entries.append((match["name"], match["items"], in_families))
    return entries


def test_the_parser_reads_each_kind_of_entry() -> None:
    row = "| 蓝峰 | 017 | x | `lanfeng`: poll, relay, no listen (a, b), decode, sim, census |"
    assert support_entries("## (b) Protocol families\n" + row) == [
        ("lanfeng", "poll, relay, no listen (a, b), decode, sim, census", True)
    ]
    assert parse_support("no poll (`17` removes it, always), relay") == {
        "poll": False,
        "relay": True,
    }
    with pytest.raises(AssertionError, match="unknown item"):
        parse_support("poll, detect")


def test_every_builtin_protocol_has_a_true_support_entry_in_the_family_table() -> None:
    entries = support_entries(BRANDS_MD.read_text(encoding="utf-8"))
    in_families = {name: items for name, items, family in entries if family}
    builtin = _builtin()
    assert builtin, "no built-in protocol found"
    for found in builtin:
        assert found.name in in_families, f"docs/brands.md (b) has no `{found.name}`: entry"
        said = parse_support(in_families[found.name])
        assert said == _expected(found), f"docs/brands.md (b) `{found.name}`"


def test_every_support_entry_names_a_protocol_and_matches_its_descriptor() -> None:
    entries = support_entries(BRANDS_MD.read_text(encoding="utf-8"))
    assert len(entries) > len(_builtin())  # the driver rows carry entries too
    known = {found.name: found for found in _builtin()}
    for name, items, _ in entries:
        assert name in known, f"docs/brands.md claims support for unknown protocol {name!r}"
        assert parse_support(items) == _expected(known[name]), f"docs/brands.md `{name}`: {items}"
