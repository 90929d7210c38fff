"""Data fields of computer-format responses → reports (3xx manual §7, 4xx manual §7).

Every response's data starts with ``YYMMDDHHmm`` (the console's clock); the
per-device records then repeat until ``&&``. Layouts, ``TT`` = device number
(decimal), counts as the manual gives their base:

- i201: ``TT p ssss NN`` + NN floats (NN hex). 1 volume, 2 TC volume,
  3 ullage, 4 height, 5 water, 6 temperature, 7 water volume.
- i202 / i20C: ``TT p dd`` (dd decimal) + dd × (``start end NN`` + NN floats).
  1–4 start volume, TC volume, water, temp; 5–8 the same at the end;
  9 start height, 10 end height; the 4xx i20C adds 11–16 (mass, density).
- i205: ``TT nn`` (nn hex) + nn two-digit alarm codes.
- i206: ``TT nn`` (nn decimal) + nn × (``YYMMDDHHmm aaaa``, aaaa hex).
- i207: ``TT NN`` (NN hex) + NN × (``RR nn tt YYMMDDHHmm`` + 3 floats:
  hours, volume, % of full volume).
- i208: ``TT NN`` (NN hex) + NN × (``tt mm YYMMDDHHmm RR`` + 3 floats:
  rate, hours, volume).
- i101: ``AA NN TT`` groups (all decimal) until ``&&``; no count.

Readings where the manual leaves room (section numbers of the 3xx manual):

- Field counts are honoured, never a fixed record width: fewer floats than
  the manual lists leave the rest ``None``; more are kept in ``extra``.
  i207 and i208 have no float count; their three floats are fixed (§7.2.2).
- i205 alarm codes are *decimal*: the note points to i101's ``AA`` = 02
  table (§7.2.1), which numbers them 01…30 in decimal; i206 writes the same
  numbers in hex (``000A`` = 10, §7.2.2).
- i207 ``nn`` (history number, "1-12") is decimal.
- i101 with no group, or with ``AA`` = 00 groups, is "all functions normal"
  (the manual lists category 00 but shows no group for it).
- ``?`` (§7.0, inactive device): a field made only of ``?`` is None. A
  count made only of ``?`` cannot say how much follows; the record then
  holds the run of ``?`` that follows it (the next record starts with a
  decimal ``TT``), read as unknown floats where floats belong (i201, whose
  run must be whole floats) and as an empty list elsewhere.
- Years are two digits; POSIX pivot (69–99 → 19xx, 00–68 → 20xx) so the
  manual's 1996 examples read as written.

Any deviation raises :class:`LayoutError`; the decoder reports it as a
``layout`` error and drops the whole response — the checksum was right, so the
console sent something we misunderstand, and half a report would mislead.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from protocols.tls.reports import (
    AlarmEvent,
    AlarmHistory,
    Deliveries,
    Delivery,
    Inventory,
    LeakTestHistory,
    LeakTestHistoryEntry,
    LeakTestResult,
    LeakTestResults,
    RawResponse,
    Report,
    SystemAlarm,
    SystemStatus,
    TankAlarmCode,
    TankAlarms,
    TankDeliveries,
    TankInventory,
    tank_alarm,
)
from protocols.tls.wire import parse_float_hex

#: ``YYMMDDHHmm`` (§7: every date in computer format).
STAMP_LEN = 10
#: Hex chars of one float (§6.3.1.1).
FLOAT_LEN = 8
#: i201 fields the manual lists (§7.2.2 i201 note 6).
INVENTORY_FIELDS = 7
#: i202 / i20C fields the 3xx manual lists (§7.2.2 i202 note 8).
DELIVERY_FIELDS = 10
#: Floats of one i207 / i208 entry (§7.2.2).
LEAK_FLOATS = 3
#: i101 ``AANNTT`` group length.
STATUS_GROUP_LEN = 6

_DIGITS = frozenset("0123456789")
_HEXDIGITS = frozenset("0123456789ABCDEFabcdef")

E = TypeVar("E")


class LayoutError(ValueError):
    """The data field does not follow the function's layout."""


class Cursor:
    """Reads fixed-width ASCII fields off a data field, left to right."""

    __slots__ = ("pos", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def more(self) -> bool:
        return self.pos < len(self.text)

    def take(self, n: int, what: str) -> str:
        end = self.pos + n
        if end > len(self.text):
            raise LayoutError(f"{what}: needs {n} chars at offset {self.pos}, data ends")
        field = self.text[self.pos : end]
        self.pos = end
        return field

    def number(self, n: int, what: str, base: int = 10) -> int | None:
        """A decimal (or hex) field; all ``?`` → None."""
        field = self.take(n, what)
        if field == "?" * n:
            return None
        allowed = _DIGITS if base == 10 else _HEXDIGITS
        if not all(c in allowed for c in field):
            raise LayoutError(f"{what}: {field!r} is not a base-{base} number")
        return int(field, base)

    def required(self, n: int, what: str, base: int = 10) -> int:
        value = self.number(n, what, base)
        if value is None:
            raise LayoutError(f"{what}: '?' where a number is required")
        return value

    def char(self, what: str) -> str:
        c = self.take(1, what)
        if not " " <= c <= "~":
            raise LayoutError(f"{what}: {c!r} is not a printable ASCII character")
        return c

    def stamp(self, what: str) -> datetime:
        field = self.take(STAMP_LEN, what)
        if not all(c in _DIGITS for c in field):
            raise LayoutError(f"{what}: {field!r} is not YYMMDDHHmm")
        yy, mo, dd, hh, mi = (int(field[i : i + 2]) for i in range(0, STAMP_LEN, 2))
        try:
            return datetime(1900 + yy if yy >= 69 else 2000 + yy, mo, dd, hh, mi)
        except ValueError as exc:
            raise LayoutError(f"{what}: {field!r} is not a valid date ({exc})") from exc

    def float(self, what: str) -> Decimal | None:
        field = self.take(FLOAT_LEN, what)
        try:
            return parse_float_hex(field)
        except ValueError as exc:
            raise LayoutError(f"{what}: {exc}") from exc

    def floats(self, count: int, what: str) -> list[Decimal | None]:
        return [self.float(f"{what} field {i + 1}") for i in range(count)]

    def unknown_run(self) -> int:
        """Consume the run of ``?`` at the cursor; return its length."""
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] == "?":
            self.pos += 1
        return self.pos - start

    def float_count(self, what: str) -> int:
        """A hex ``NN`` float count; ``??`` → the whole floats in the ``?`` run."""
        count = self.number(2, what, base=16)
        if count is not None:
            return count
        run_start, run = self.pos, self.unknown_run()
        if run % FLOAT_LEN:
            raise LayoutError(f"{what}: a run of {run} '?' is not whole floats")
        self.pos = run_start  # the floats are read as ???????? = None
        return run // FLOAT_LEN


def _pad(
    values: list[Decimal | None], width: int
) -> tuple[list[Decimal | None], tuple[Decimal | None, ...]]:
    """First ``width`` values padded with None, and the extra ones."""
    return values[:width] + [None] * (width - len(values)), tuple(values[width:])


def parse_i201(c: Cursor) -> list[TankInventory]:
    tanks = []
    while c.more():
        tank = c.required(2, "i201 TT")
        product = c.char("i201 product")
        status = c.number(4, "i201 status", base=16)
        v, extra = _pad(c.floats(c.float_count("i201 NN"), "i201"), INVENTORY_FIELDS)
        tanks.append(
            TankInventory(tank, product, status, v[0], v[1], v[2], v[3], v[4], v[5], v[6], extra)
        )
    return tanks


def parse_deliveries(c: Cursor) -> list[TankDeliveries]:
    tanks = []
    while c.more():
        tank = c.required(2, "i202 TT")
        product = c.char("i202 product")
        deliveries = []
        for _ in range(_counted(c, "i202 dd", 10)):
            start, end = c.stamp("delivery start"), c.stamp("delivery end")
            floats = c.floats(c.float_count("delivery NN"), "delivery")
            v, x = _pad(floats, DELIVERY_FIELDS)
            deliveries.append(
                Delivery(start, end, v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], x)
            )
        tanks.append(TankDeliveries(tank, product, deliveries))
    return tanks


def _counted(c: Cursor, what: str, base: int) -> int:
    """A per-tank count; ``?`` (inactive device) → 0 with its ``?`` run consumed."""
    count = c.number(2, what, base=base)
    if count is None:
        c.unknown_run()
        return 0
    return count


def _per_tank(
    c: Cursor, function: str, count: str, base: int, entry: Callable[[Cursor], E]
) -> dict[int, list[E]]:
    """``TT`` + a count (named ``count``, in ``base``) + that many entries, per tank."""
    tanks: dict[int, list[E]] = {}
    while c.more():
        tank = c.required(2, f"{function} TT")
        tanks[tank] = [entry(c) for _ in range(_counted(c, f"{function} {count}", base))]
    return tanks


def _i205_alarm(c: Cursor) -> TankAlarmCode | int:
    return tank_alarm(c.required(2, "i205 alarm"))


def _i206_event(c: Cursor) -> AlarmEvent:
    at = c.stamp("i206 alarm time")
    return AlarmEvent(at, tank_alarm(c.required(4, "i206 aaaa", 16)))


def _i207_entry(c: Cursor) -> LeakTestHistoryEntry:
    report_type = c.required(2, "i207 RR")
    number = c.required(2, "i207 nn")
    test_type = c.required(2, "i207 tt")
    start = c.stamp("i207 start")
    hours, volume, percent = c.floats(LEAK_FLOATS, "i207")
    return LeakTestHistoryEntry(report_type, number, test_type, start, hours, volume, percent)


def _i208_result(c: Cursor) -> LeakTestResult:
    test_type = c.required(2, "i208 tt")
    manifold = c.required(2, "i208 mm")
    if manifold not in (0, 1):
        raise LayoutError(f"i208 mm: {manifold:02d} is neither 00 nor 01")
    start = c.stamp("i208 start")
    result = c.required(2, "i208 RR")
    rate, hours, volume = c.floats(LEAK_FLOATS, "i208")
    return LeakTestResult(test_type, manifold == 1, start, result, rate, hours, volume)


def parse_i205(c: Cursor) -> dict[int, list[TankAlarmCode | int]]:
    return _per_tank(c, "i205", "nn", 16, _i205_alarm)


def parse_i206(c: Cursor) -> dict[int, list[AlarmEvent]]:
    return _per_tank(c, "i206", "nn", 10, _i206_event)


def parse_i207(c: Cursor) -> dict[int, list[LeakTestHistoryEntry]]:
    return _per_tank(c, "i207", "NN", 16, _i207_entry)


def parse_i208(c: Cursor) -> dict[int, list[LeakTestResult]]:
    return _per_tank(c, "i208", "NN", 16, _i208_result)


def parse_i101(c: Cursor) -> list[SystemAlarm]:
    alarms = []
    while c.more():
        category = c.required(2, "i101 AA")
        alarm_type = c.required(2, "i101 NN")
        alarms.append(SystemAlarm(category, alarm_type, c.required(2, "i101 TT")))
    return alarms


#: Function (``i`` + 3-char code, hex digits upper case) → its report type
#: (built from the clock, the records, the function and the ``TT`` asked
#: for) and the parser of its records' layout.
PARSERS: dict[str, tuple[Callable[[datetime, Any, str, int], Report], Callable[[Cursor], Any]]] = {
    "i201": (Inventory, parse_i201),
    "i202": (Deliveries, parse_deliveries),
    "i20C": (Deliveries, parse_deliveries),
    "i205": (TankAlarms, parse_i205),
    "i206": (AlarmHistory, parse_i206),
    "i207": (LeakTestHistory, parse_i207),
    "i208": (LeakTestResults, parse_i208),
    "i101": (SystemStatus, parse_i101),
}


def parse_data(function_code: str, data: str) -> Report:
    """Parse the data field of a response whose echoed function code is ``function_code``.

    ``function_code`` is the 6-char echo (``i20100``). Functions without a
    parser come back as :class:`RawResponse`. Raises :class:`LayoutError`.
    """
    if len(function_code) != 6 or function_code[0] not in "iI":
        raise LayoutError(f"function code {function_code!r} is not iXXXTT")
    if function_code[0] == "I":
        raise LayoutError("display-format (upper-case I) response has no computer layout")
    name = "i" + function_code[1:4].upper()
    if name not in PARSERS:
        return RawResponse(function_code, data)
    report, parse_records = PARSERS[name]
    tt = function_code[4:6]
    if not all(ch in _DIGITS for ch in tt):
        raise LayoutError(f"function code {function_code!r}: TT is not decimal")
    c = Cursor(data)
    at = c.stamp("report time")
    return report(at, parse_records(c), name, int(tt))
