"""Furen Haosheng messages: the frame's data bytes, built and read (sans-IO).

Every layout is the FCC driver's (``fangym0335/first src/lischn009.c``, cited
as ``:LINE``). Byte positions ``[n]`` count from the frame's leading FA, so
``[6]`` is the command and ``data[0]`` of a :class:`~protocols.furen.framer.Frame`.
Numbers are packed BCD, most significant digit first.

Read-only requests (the poll driver's allow-list takes these only):

- ``30`` status, ctrl 00, followed by the controller's local time, 7 BCD
  bytes ``YYYY MM DD hh mm ss`` (``:1504-1515``; ``getlocaltime``,
  ``fangym0335/first src/mytime.c:14-70``). What the pump does with that
  time is not in the source: the driver sends 30 only when configured to
  (docs/protocols/furen.md, "The clock in the status request").
- ``50`` price of a nozzle, ``56`` the nozzle's sale record, ``58`` its
  totals: ctrl ``F0 | n``, no data (``:1437-1448``, ``:1159-1170``,
  ``:1100-1111``).

Requests that change the pump (never built here, SPEC D20; recognised so a
monitor counts what a POS sends): ``51`` set price (``:822-836``), ``59``
prepay and ``60`` preset (``:1716-1733``; ``59`` with ``99 99 99`` cancels,
``:1788-1807``), ``5D`` control mode, 01 host / 00 monitor (``:1971-1989``),
``61`` authorise (``:1283-1295``), ``62`` stop (``:1221-1233``).

Replies (pump → controller):

- status: ``[6]`` = 5A idle or lifted, 5B fuelling (``:1544-1547``). With
  5A, ``[2]`` = 01 means a nozzle is out (``:1548``) and ``[7]`` says how:
  00 lifted (or, after fuelling, the fill ended with the nozzle still out),
  FF stopped (``:1549-1561``); any other ``[7]`` is a power-up transient the
  FCC skips (``:1562-1563``), as it skips a reply whose ``[6]`` is neither
  (``:1570-1571``). With 5B, ``[7..9]`` is the fill's volume and
  ``[10..12]`` its amount so far (``DoBusy``, ``:1343-1357``, reading the
  status reply). ``[3]`` = ``F0 | n`` names nozzle n + 1 on a multi-nozzle
  pump; a single-nozzle pump puts something else there (``:1575-1586``; the
  FCC's change log: single-nozzle pumps use that byte for a printing
  nozzle number the protocol does not define,
  ``fangym0335/first src/changelog_tcc.txt:37-38``). Length variable
  (``:1517``, ``:1529``); a 5B carries at least ``[7..12]``.
- sale record (answer to 56), 27 bytes, LEN 19 (``:1170``): volume
  ``[7..9]``, amount ``[10..12]``, price ``[13..14]`` (``:1028-1047``),
  volume total after the sale ``[15..19]`` (``:1012-1014``), amount total
  ``[20..24]`` (``:1054``; the FCC copies 7 bytes from ``[20]``, two of them
  the CRC: the 27-byte length leaves 5).
- totals (answer to 58), 19 bytes, LEN 11 (``:1111``): volume total
  ``[7..11]``, amount total ``[12..16]`` (``:1088-1092``, ``:1930``,
  ``:1947``).
- price (answer to 50), 11 bytes, LEN 3 (``:1448``): price ``[7..8]``
  (``:1426-1429``).
- the answer to 51 / 59 / 60, 10 bytes, LEN 2, and to 5D, 11 bytes, LEN
  3: ``[7]`` = 01 accepted (``:836`` / ``:871``, ``:1733`` / ``:1766``,
  ``:1989`` / ``:2014``); to 61 / 62, variable (the FCC reads them with the
  length rule of ``spec.c``: ``addInf`` 09, ``:1245``, ``:1307``), ``[7]`` = 01
  accepted (``:1322``, ``:1260``).

``[6]`` of the sale, totals and price replies is never read by the FCC
(it checks length and CRC, and ``[3]`` on a multi-nozzle pump,
``:1137``, ``:1195``): this module identifies those replies by their length, never
by ``[6]`` (our simulator echoes the request's command there).

Decimal places: the FCC hands these bytes on unchanged behind IFSF format
bytes 06 (volume, amount), 04 (price) and 0A (totals) (``:1012-1045``),
which put two digits after the point; the driver's options carry them,
default 2 (unverified beyond that reading).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, TypeVar

from protocols.bcd import bcd_decode, bcd_encode
from protocols.events import ProtocolError
from protocols.furen.framer import Frame, nozzle_ctrl

#: Read-only requests (module doc).
CMD_STATUS = 0x30
CMD_PRICE = 0x50
CMD_SALE = 0x56
CMD_TOTALS = 0x58

#: Requests that change the pump (module doc): never sent by the collector.
CMD_SET_PRICE = 0x51
CMD_PREPAY = 0x59
CMD_MODE = 0x5D
CMD_PRESET = 0x60
CMD_AUTHORISE = 0x61
CMD_STOP = 0x62

#: Status reply codes, ``[6]`` (``:1544-1547``).
ST_IDLE_OR_LIFTED = 0x5A
ST_FUELLING = 0x5B

#: ``[7]`` of a 5A reply with a nozzle out (``:1549-1561``).
OUT_LIFTED = 0x00
OUT_STOPPED = 0xFF

#: LEN (CMD + data bytes) of each request the FCC builds (module doc).
REQUEST_LEN: dict[int, int] = {
    CMD_STATUS: 8,
    CMD_PRICE: 1,
    CMD_SALE: 1,
    CMD_TOTALS: 1,
    CMD_SET_PRICE: 4,
    CMD_PREPAY: 5,
    CMD_PRESET: 5,
    CMD_MODE: 3,
    CMD_AUTHORISE: 2,
    CMD_STOP: 2,
}

#: LEN of the answer to each read (27, 19 and 11 bytes on the wire).
SALE_LEN, TOTALS_LEN, PRICE_LEN = 19, 11, 3
#: LEN of the answer to 51 / 59 / 60 (10 bytes, ``:836``, ``:1733``).
ACK_LEN = 2
#: A 5B reply carries volume and amount ``[7..12]``: at least LEN 7.
FUELLING_MIN_LEN = 7

#: The request each reply length answers (sale, totals, price).
ANSWERS: dict[int, int] = {SALE_LEN: CMD_SALE, TOTALS_LEN: CMD_TOTALS, PRICE_LEN: CMD_PRICE}

#: Names of the requests, for a monitor's counters and ``forecourt decode``.
REQUEST_NAMES: dict[int, str] = {
    CMD_STATUS: "status_query",
    CMD_PRICE: "price_query",
    CMD_SALE: "sale_query",
    CMD_TOTALS: "totals_query",
    CMD_SET_PRICE: "set_price",
    CMD_PREPAY: "prepay",
    CMD_PRESET: "preset",
    CMD_MODE: "mode",
    CMD_AUTHORISE: "authorise",
    CMD_STOP: "stop",
}

#: The read-only ones (SPEC D20); the others change the pump.
READ_REQUESTS = frozenset({CMD_STATUS, CMD_PRICE, CMD_SALE, CMD_TOTALS})

#: Field widths, BCD bytes.
VOLUME_BCD = AMOUNT_BCD = 3
PRICE_BCD = 2
TOTAL_BCD = 5
TIME_BCD = 7

Side = Literal["master", "pump"]


# ------------------------------------------------------------------ requests


def build_status(now: datetime) -> Frame:
    """30 with ``now`` as BCD ``YYYYMMDDhhmmss`` (``:1504-1515``), ctrl 00."""
    stamp = bytes.fromhex(now.strftime("%Y%m%d%H%M%S"))
    return Frame(0x00, 0x00, 0x00, bytes([CMD_STATUS]) + stamp)


def build_read(command: int, nozzle: int) -> Frame:
    """50, 56 or 58 about ``nozzle``: ctrl ``F0 | (nozzle - 1)``, no data."""
    if command not in (CMD_PRICE, CMD_SALE, CMD_TOTALS):
        raise ValueError(f"command {command:02X} is not a nozzle read")
    return Frame(0x00, 0x00, nozzle_ctrl(nozzle), bytes([command]))


def parse_time(data: bytes) -> datetime | ProtocolError:
    """The time a 30 request carries."""
    digits = data[1 : 1 + TIME_BCD].hex()
    try:
        return datetime.strptime(digits, "%Y%m%d%H%M%S")
    except ValueError:
        return ProtocolError("bad_message", f"30 time {digits.upper()} is not YYYYMMDDhhmmss")


# ------------------------------------------------------------------ replies


@dataclass(frozen=True, slots=True)
class StatusReply:
    """A 5A / 5B reply. ``out``: a nozzle is lifted or fuelling; ``code7``: ``[7]``."""

    fuelling: bool
    out: bool
    code7: int | None
    volume: int | None  # 5B: the fill so far, raw BCD value
    amount: int | None

    @property
    def transient(self) -> bool:
        """A 5A with a nozzle out and ``[7]`` neither 00 nor FF: skipped (``:1562-1563``)."""
        return not self.fuelling and self.out and self.code7 not in (OUT_LIFTED, OUT_STOPPED)


@dataclass(frozen=True, slots=True)
class SaleRecord:
    """The answer to 56, raw BCD values (module doc)."""

    volume: int
    amount: int
    price: int
    volume_total: int
    amount_total: int


@dataclass(frozen=True, slots=True)
class TotalsReply:
    volume_total: int
    amount_total: int


_T = TypeVar("_T")


def _bcd(data: bytes, start: int, width: int, name: str) -> int | ProtocolError:
    value = bcd_decode(data[start : start + width])
    if value is None:
        raw = data[start : start + width].hex().upper()
        return ProtocolError("bad_message", f"{name} {raw} is not BCD")
    return value


def _bcd_fields(data: bytes, *fields: tuple[int, int, str]) -> list[int] | ProtocolError:
    """The BCD fields ``(start, width, name)`` of ``data``, or the first that is not BCD."""
    values = []
    for start, width, name in fields:
        value = _bcd(data, start, width, name)
        if isinstance(value, ProtocolError):
            return value
        values.append(value)
    return values


def parse_status(frame: Frame) -> StatusReply | ProtocolError:
    """A status reply (module doc); ProtocolError when it is none."""
    data = frame.data
    if data[0] == ST_FUELLING:
        if len(data) < FUELLING_MIN_LEN:
            return ProtocolError("bad_message", f"5B with {len(data)} bytes, no volume and amount")
        live = _bcd_fields(data, (1, VOLUME_BCD, "5B volume"), (4, AMOUNT_BCD, "5B amount"))
        if isinstance(live, ProtocolError):
            return live
        return StatusReply(True, True, data[1], *live)
    if data[0] == ST_IDLE_OR_LIFTED:
        code7 = data[1] if len(data) > 1 else None
        return StatusReply(False, frame.lifted, code7, None, None)
    return ProtocolError("bad_message", f"status reply {data[0]:02X} is neither 5A nor 5B")


def _answer(
    data: bytes, length: int, what: str, make: Callable[..., _T], *fields: tuple[int, int, str]
) -> _T | ProtocolError:
    """An answer of ``length`` bytes whose BCD ``fields`` make ``make(*values)``."""
    if len(data) != length:
        return ProtocolError("bad_message", f"{what} of {len(data)} bytes, not {length}")
    values = _bcd_fields(data, *fields)
    if isinstance(values, ProtocolError):
        return values
    return make(*values)


def parse_record(data: bytes) -> SaleRecord | ProtocolError:
    """The answer to 56 (LEN 19)."""
    return _answer(
        data,
        SALE_LEN,
        "sale record",
        SaleRecord,
        (1, VOLUME_BCD, "volume"),
        (4, AMOUNT_BCD, "amount"),
        (7, PRICE_BCD, "price"),
        (9, TOTAL_BCD, "volume total"),
        (14, TOTAL_BCD, "amount total"),
    )


def parse_totals(data: bytes) -> TotalsReply | ProtocolError:
    """The answer to 58 (LEN 11)."""
    volume, amount = (1, TOTAL_BCD, "volume total"), (6, TOTAL_BCD, "amount total")
    return _answer(data, TOTALS_LEN, "totals", TotalsReply, volume, amount)


def parse_price(data: bytes) -> int | ProtocolError:
    """The answer to 50 (LEN 3)."""
    return _answer(data, PRICE_LEN, "price", int, (1, PRICE_BCD, "price"))


# ------------------------------------------------------------------ simulator side


def build_status_reply(
    *, nozzle_byte: int, out: bool, fuelling: bool, volume: int = 0, amount: int = 0
) -> Frame:
    """A pump's status reply (module doc): 5B with volume and amount, else 5A."""
    if fuelling:
        data = (
            bytes([ST_FUELLING]) + bcd_encode(volume, VOLUME_BCD) + bcd_encode(amount, AMOUNT_BCD)
        )
    else:
        data = bytes([ST_IDLE_OR_LIFTED, OUT_LIFTED])
    return Frame(0x00, 0x01 if out else 0x00, nozzle_byte, data)


def build_record(record: SaleRecord, *, ctrl: int, command: int = CMD_SALE) -> Frame:
    """A pump's answer to 56."""
    data = (
        bytes([command])
        + bcd_encode(record.volume, VOLUME_BCD)
        + bcd_encode(record.amount, AMOUNT_BCD)
        + bcd_encode(record.price, PRICE_BCD)
        + bcd_encode(record.volume_total, TOTAL_BCD)
        + bcd_encode(record.amount_total, TOTAL_BCD)
    )
    return Frame(0x00, 0x00, ctrl, data)


def build_totals(totals: TotalsReply, *, ctrl: int, command: int = CMD_TOTALS) -> Frame:
    """A pump's answer to 58."""
    data = (
        bytes([command])
        + bcd_encode(totals.volume_total, TOTAL_BCD)
        + bcd_encode(totals.amount_total, TOTAL_BCD)
    )
    return Frame(0x00, 0x00, ctrl, data)


def build_price(price: int, *, ctrl: int, command: int = CMD_PRICE) -> Frame:
    """A pump's answer to 50."""
    return Frame(0x00, 0x00, ctrl, bytes([command]) + bcd_encode(price, PRICE_BCD))


# ------------------------------------------------------------------ sides


def side(frame: Frame) -> Side | None:
    """Who sent ``frame``, by its command and length alone; None when both
    sides send that shape (the answers to 5D, 61 and 62 are not laid out in
    the source, so those commands' frames count as either).

    A request's shape is (command, LEN) from :data:`REQUEST_LEN`; a pump's is
    a status code 5A / 5B, or a read's answer length (sale, totals, price)
    or a command's acknowledgement (LEN 2) under any other ``[6]``.
    """
    command, length = frame.data[0], len(frame.data)
    if command in (CMD_MODE, CMD_AUTHORISE, CMD_STOP):
        return None
    if REQUEST_LEN.get(command) == length:
        return "master"
    if command in (ST_IDLE_OR_LIFTED, ST_FUELLING):
        return "pump"
    if length in ANSWERS or length == ACK_LEN:
        return "pump"
    return None
