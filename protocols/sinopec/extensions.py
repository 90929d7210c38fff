"""Sinopec 38 totals, 3A read info and 3B error info: OUR DOCUMENTED LAYOUT, NOT
FROM A PUBLIC SOURCE.

protocols.md §2 lists these commands ("38 totals, 3A read info, 3B error
info") but no public source gives their data layouts, and GB/T 9081-2023's
data port is not public either (protocols.md §5). The layouts below are the
ones this project defines, implements in its simulator and documents here;
a captured frame that says otherwise changes one declaration per message.
Multi-byte integers are big-endian, volume in 0.01 L, money in 0.01 yuan,
as in the 32 record (protocols.md §2).

38 totals (SPEC D2: a nozzle's totalizers read on their own)
    master → pump ``38 | NZN``;
    pump → master ``38 | NZN | V_TOT (4 B, 0.01 L) | A_TOT (4 B, 0.01 yuan)``
    → :class:`~protocols.events.Totals`.

3A read info (GB/T 9081-2023 identities, vendor extension; SPEC D13, A6)
    master → pump ``3A | NZN`` (NZN 0 = the pump-wide parts);
    pump → master ``3A | NZN | COUNT | COUNT × (TAG 1 B | LEN 1 B | value)``,
    value LEN bytes of printable ASCII; TAG 1 nozzle_uid, 2 mainboard_id,
    3 mcu_id, 4 encoder_id, 5 safety_id (:data:`INFO_TAGS`)
    → :class:`~protocols.events.Identity` (nozzle None for NZN 0). A tag we
    do not know is skipped (a newer pump may report more parts); a tag sent
    twice, or a value that is not printable ASCII, makes the answer
    ``bad_message``.

3B error info (SPEC D14)
    master → pump ``3B``;
    pump → master ``3B | COUNT | COUNT × (NZN 1 B, 0 = the pump | CODE 1 B BCD)``,
    CODE as on the pump's display (``0x64`` = 64), listing the errors
    ACTIVE now. The driver diffs each answer against the previous one of the
    same pump (:func:`diff_alarms`); codes are normalised through
    :data:`~protocols.events.METERING_ALARMS`, unknown ones become
    ``DISPENSER_ERROR_<code>``. A non-BCD code makes the answer ``bad_message``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from construct import (
    ConstructError,
    GreedyBytes,
    Int8ub,
    Int32ub,
    Prefixed,
    Struct,
    Terminated,
    this,
)

from protocols.events import METERING_ALARMS, DeviceAlarm, Identity, ProtocolError, Totals
from protocols.sinopec.messages import hundredths

#: Command codes (protocols.md §2, "Commands"; layouts ours, module doc).
CMD_TOTALS = 0x38
CMD_READ_INFO = 0x3A
CMD_ERROR_INFO = 0x3B

#: NZN 0 in a 3A query / answer and in a 3B entry: the pump itself, no nozzle.
PUMP_WIDE = 0

#: 3A tags → GB/T 9081-2023 component names (our numbering, module doc).
INFO_TAGS: dict[int, str] = {
    1: "nozzle_uid",
    2: "mainboard_id",
    3: "mcu_id",
    4: "encoder_id",
    5: "safety_id",
}
TAG_OF: dict[str, int] = {name: tag for tag, name in INFO_TAGS.items()}

#: Longest identity value: LEN is one byte.
MAX_INFO_VALUE = 0xFF

#: Printable ASCII, the only bytes an identity value may hold: identities are
#: serial numbers; anything else is a corrupted or misread answer.
_PRINTABLE = frozenset(range(0x20, 0x7F))

#: 3B codes are two BCD digits (display codes 61–65, protocols.md §5).
MAX_ERROR_CODE = 99

QUERY = Struct("command" / Int8ub, "nzn" / Int8ub, Terminated).compile()  # 38 and 3A
TOTALS = Struct(
    "command" / Int8ub,
    "nzn" / Int8ub,
    "v_tot" / Int32ub,  # volume totalizer, 0.01 L
    "a_tot" / Int32ub,  # amount totalizer, 0.01 yuan
    Terminated,
).compile()
INFO_ITEM = Struct("tag" / Int8ub, "value" / Prefixed(Int8ub, GreedyBytes))
#: Not compiled: compiled construct 2.10 does not check a variable-length read
#: against the bytes left, so a LEN beyond the data would parse short. 3A is
#: read once in minutes; the interpreted parser's checks win over speed.
INFO = Struct(
    "command" / Int8ub,
    "nzn" / Int8ub,
    "count" / Int8ub,
    "items" / INFO_ITEM[this.count],
    Terminated,
)
ERROR_QUERY = Struct("command" / Int8ub, Terminated).compile()
ERROR_ENTRY = Struct("nzn" / Int8ub, "code" / Int8ub)  # code: one BCD byte
ERRORS = Struct(
    "command" / Int8ub,
    "count" / Int8ub,
    "entries" / ERROR_ENTRY[this.count],
    Terminated,
).compile()

#: Lengths of the master's queries (the driver's D20 check uses them).
QUERY_LEN = 2  # 38 and 3A: command + NZN
ERROR_QUERY_LEN = 1  # 3B: the command alone

_PARSE_ERRORS = (ConstructError, struct.error, ValueError)  # compiled: struct.error too


def _bad(detail: str, address: int | None = None) -> ProtocolError:
    return ProtocolError("bad_message", detail, address)


def _expect(data: bytes, command: int, name: str) -> ProtocolError | None:
    if not data or data[0] != command:
        return _bad(f"not a {command:02X} {name}")
    return None


def _answer(data: bytes, command: int, name: str, layout: Any, malformed: str | None = None) -> Any:
    """``data``, the answer ``name`` to ``command``, parsed by ``layout``; or
    the ProtocolError that says why not (``malformed`` when it does not parse)."""
    wrong = _expect(data, command, name)
    if wrong is not None:
        return wrong
    try:
        return layout.parse(data)
    except _PARSE_ERRORS as exc:
        return _bad(malformed or f"{command:02X} answer malformed: {type(exc).__name__}")


# ---------------------------------------------------------------- queries


def build_totals_query(nzn: int) -> bytes:
    return bytes(QUERY.build({"command": CMD_TOTALS, "nzn": nzn}))


def build_info_query(nzn: int) -> bytes:
    """3A for the parts of nozzle ``nzn``, or the pump-wide ones (:data:`PUMP_WIDE`)."""
    return bytes(QUERY.build({"command": CMD_READ_INFO, "nzn": nzn}))


def build_error_query() -> bytes:
    return bytes([CMD_ERROR_INFO])


def parse_query(data: bytes) -> tuple[int, int] | ProtocolError:
    """A 38 / 3A / 3B query → (command, NZN); NZN 0 for a 3B (the simulator's side)."""
    if data[:1] == bytes([CMD_ERROR_INFO]):
        return (CMD_ERROR_INFO, PUMP_WIDE) if len(data) == ERROR_QUERY_LEN else _bad("3B query")
    if len(data) != QUERY_LEN or data[0] not in (CMD_TOTALS, CMD_READ_INFO):
        return _bad("not a 38 / 3A / 3B query")
    return data[0], data[1]


# ---------------------------------------------------------------- 38 totals


@dataclass(frozen=True)
class TotalsReading:
    nzn: int
    v_tot: int  # 0.01 L
    a_tot: int  # 0.01 yuan


def build_totals(reading: TotalsReading) -> bytes:
    msg = {"command": CMD_TOTALS, "nzn": reading.nzn}
    return bytes(TOTALS.build({**msg, "v_tot": reading.v_tot, "a_tot": reading.a_tot}))


def parse_totals(data: bytes) -> TotalsReading | ProtocolError:
    malformed = f"38 totals answer must be 10 bytes, got {len(data)}"
    msg = _answer(data, CMD_TOTALS, "totals answer", TOTALS, malformed)
    if isinstance(msg, ProtocolError):
        return msg
    return TotalsReading(msg.nzn, msg.v_tot, msg.a_tot)


def totals_event(data: bytes, address: int) -> Totals | ProtocolError:
    reading = parse_totals(data)
    if isinstance(reading, ProtocolError):
        return _bad(reading.detail, address)
    return Totals(address, reading.nzn, hundredths(reading.v_tot), hundredths(reading.a_tot))


# ---------------------------------------------------------------- 3A read info


@dataclass(frozen=True)
class InfoReading:
    """A 3A answer: ``components`` maps :data:`INFO_TAGS` names to their text."""

    nzn: int
    components: Mapping[str, str]


def build_info(reading: InfoReading) -> bytes:
    """3A answer data, tags in :data:`INFO_TAGS` order (the simulator's side)."""
    items = []
    for name in sorted(reading.components, key=TAG_OF.__getitem__):  # KeyError: not a part
        value = reading.components[name].encode("ascii")
        if len(value) > MAX_INFO_VALUE or not _PRINTABLE.issuperset(value):
            raise ValueError(f"{name} identity must be printable ASCII, at most 255 bytes")
        items.append({"tag": TAG_OF[name], "value": value})
    msg = {"command": CMD_READ_INFO, "nzn": reading.nzn, "count": len(items), "items": items}
    return bytes(INFO.build(msg))


def parse_info(data: bytes) -> InfoReading | ProtocolError:
    msg = _answer(data, CMD_READ_INFO, "read-info answer", INFO)
    if isinstance(msg, ProtocolError):
        return msg
    components: dict[str, str] = {}
    seen: set[int] = set()
    for item in msg["items"]:
        if item.tag in seen:
            return _bad(f"3A answer repeats tag {item.tag}")
        seen.add(item.tag)
        if not _PRINTABLE.issuperset(item.value):
            return _bad(f"3A tag {item.tag} value is not printable ASCII")
        name = INFO_TAGS.get(item.tag)
        if name is not None:  # unknown tags are skipped (module doc)
            components[name] = item.value.decode("ascii")
    return InfoReading(msg.nzn, components)


def identity_event(data: bytes, address: int) -> Identity | ProtocolError:
    reading = parse_info(data)
    if isinstance(reading, ProtocolError):
        return _bad(reading.detail, address)
    nozzle = None if reading.nzn == PUMP_WIDE else reading.nzn
    return Identity(address, nozzle, dict(reading.components))


# ---------------------------------------------------------------- 3B error info

#: One active error: (NZN, display code); NZN 0 = the pump itself.
ActiveError = tuple[int, int]


def build_errors(active: Iterable[ActiveError]) -> bytes:
    """3B answer data listing ``active`` errors (the simulator's side)."""
    entries = []
    for nzn, code in active:
        if not 0 <= code <= MAX_ERROR_CODE:
            raise ValueError(f"error code {code} is not two BCD digits")
        entries.append({"nzn": nzn, "code": int(f"{code:02d}", 16)})
    msg = {"command": CMD_ERROR_INFO, "count": len(entries), "entries": entries}
    return bytes(ERRORS.build(msg))


def parse_errors(data: bytes) -> list[ActiveError] | ProtocolError:
    msg = _answer(data, CMD_ERROR_INFO, "error-info answer", ERRORS)
    if isinstance(msg, ProtocolError):
        return msg
    out = []
    for entry in msg.entries:
        digits = f"{entry.code:02X}"
        if not digits.isdigit():
            return _bad(f"3B code {digits} is not BCD")
        out.append((entry.nzn, int(digits)))
    return out


def alarm_code(code: int) -> str:
    """A pump's display code → the normalised alarm code (protocols.md §5)."""
    return METERING_ALARMS.get(code, f"DISPENSER_ERROR_{code}")


def diff_alarms(
    address: int, before: frozenset[ActiveError], now: frozenset[ActiveError]
) -> list[DeviceAlarm]:
    """Alarms raised (in ``now`` only) then cleared (in ``before`` only), each sorted."""

    def alarm(entry: ActiveError, active: bool) -> DeviceAlarm:
        nzn, code = entry
        nozzle = None if nzn == PUMP_WIDE else nzn
        return DeviceAlarm(address, nozzle, alarm_code(code), code, active)

    raised = [alarm(e, True) for e in sorted(now - before)]
    return raised + [alarm(e, False) for e in sorted(before - now)]
