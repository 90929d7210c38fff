"""恒山 UDC ("UDC Protocol P1 & P2") commands and reply layouts, sans-IO.

Every fact cites ``fangym0335/first src/lischn019.c`` (TMC / TH30; "019:")
whose protocol is identical in ``src/lischn020.c`` (TQC / TH22, 020:1-14:
the differences are the FCC's own bookkeeping).

Double talk. Every byte on the wire, both directions, is followed by its
complement (``~b``, 019:825 "double talk byte"; the check 019:2380-2397);
there is no other checksum, no start byte and no length: the length of a
request follows from its command, the length of the reply from the request
it answers (the FCC's ``wantLen``). Below, *data* means the bytes without
their complements.

Request: ``P|p ~ CMD ~ data…`` with ``p`` the pump number, the fuelling
point's configured number − 1 (0–15, 019:152), ``P`` = ``F0`` for most
commands and ``C0`` for a few (019:824, 1867, 2093, 2173). A reply carries
no address: it is the pump's answer to the request just before it.

=========  ======  ============  ===========================================
command    req.    reply (data)  meaning (source)
=========  ======  ============  ===========================================
F·A0       0       1             pump identity byte (019:1638-1674)
F·A1       0       9             display: price, amount, volume, state
                                 (019:1744-1749, 1277-1294, 1568-1583)
F·A2       0       1             state (019:1691-1721)
F·A9 m     1       11            totals of one nozzle, m = 0x40|(n−1)<<1
                                 (019:1357-1364, 1388-1398)
F·AC       0       2·N + 1       prices of N nozzles, then the number of
                                 grades (019:1175-1180, 1929); N = 4 (019:157)
C·A1       0       1             lifted nozzle, low 7 bits (019:1867-1896)
F·A3       0       1             stop (019:1419-1424) — changes the pump
F·A5       9       1             authorise / preset (019:824-848,
                                 1483-1506) — changes the pump
F·A6       8       1             write the display (019:1809-1816) — changes
C·A2       0       1 (B0)        acknowledge the hang-up (019:2093-2122)
                                 — changes the pump
C·A3       4·N     1 (B0)        write prices (019:985-1055, 2152-2206)
                                 — changes the pump
=========  ======  ============  ===========================================

Digits are packed BCD, least significant byte first (the FCC reverses them,
019:1277-1294, 1388-1398; "LSB First" 019:1167), except the prices C·A3
writes, most significant first (019:1020 "MSB First"). Decimal places are
not on the wire: the collector's per-port options (docs/protocols/udc.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from protocols.bcd import bcd_decode, bcd_encode

#: First byte of a request, high nibble: most commands (019:824) …
PREFIX_F: Final = 0xF0
#: … and the nozzle read, the hang-up acknowledgement and the price write
#: (019:1867, 2093, 2173).
PREFIX_C: Final = 0xC0
PREFIXES: Final = frozenset({PREFIX_F, PREFIX_C})

#: Wire pump numbers: the fuelling point's configured number − 1 (019:152).
MAX_PUMP: Final = 0x0F

CMD_ID: Final = 0xA0
CMD_DISPLAY: Final = 0xA1  # F·A1 display; C·A1 lifted nozzle
CMD_STATUS: Final = 0xA2  # F·A2 state; C·A2 acknowledge the hang-up
CMD_STOP: Final = 0xA3  # F·A3 stop; C·A3 write prices
CMD_AUTHORISE: Final = 0xA5
CMD_WRITE_DISPLAY: Final = 0xA6
CMD_TOTALS: Final = 0xA9
CMD_PRICES: Final = 0xAC

#: A command is its prefix and its code.
Command = tuple[int, int]

READ_ID: Final[Command] = (PREFIX_F, CMD_ID)
READ_DISPLAY: Final[Command] = (PREFIX_F, CMD_DISPLAY)
READ_STATUS: Final[Command] = (PREFIX_F, CMD_STATUS)
READ_TOTALS: Final[Command] = (PREFIX_F, CMD_TOTALS)
READ_PRICES: Final[Command] = (PREFIX_F, CMD_PRICES)
READ_NOZZLE: Final[Command] = (PREFIX_C, CMD_DISPLAY)
STOP: Final[Command] = (PREFIX_F, CMD_STOP)
AUTHORISE: Final[Command] = (PREFIX_F, CMD_AUTHORISE)
WRITE_DISPLAY: Final[Command] = (PREFIX_F, CMD_WRITE_DISPLAY)
ACK_HANGUP: Final[Command] = (PREFIX_C, CMD_STATUS)
WRITE_PRICES: Final[Command] = (PREFIX_C, CMD_STOP)

#: Nozzles per side in the price commands: the FCC fixes 4 (019:157; "4
#: nozzles, 4 grades per side" 019:1001-1002). Other hose counts: an option.
PRICE_NOZZLES: Final = 4
MAX_PRICE_NOZZLES: Final = 8

#: Command → (request data bytes, reply data bytes); ``N`` marks a count per
#: price nozzle (see :func:`request_data_len`).
_LENGTHS: Final[dict[Command, tuple[int, int]]] = {
    READ_ID: (0, 1),
    READ_DISPLAY: (0, 9),
    READ_STATUS: (0, 1),
    READ_TOTALS: (1, 11),
    READ_PRICES: (0, -1),  # 2·N + 1
    READ_NOZZLE: (0, 1),
    STOP: (0, 1),
    AUTHORISE: (9, 1),
    WRITE_DISPLAY: (8, 1),
    ACK_HANGUP: (0, 1),
    WRITE_PRICES: (-1, 1),  # 4·N
}

NAMES: Final[dict[Command, str]] = {
    READ_ID: "read_id",
    READ_DISPLAY: "read_display",
    READ_STATUS: "read_status",
    READ_TOTALS: "read_totals",
    READ_PRICES: "read_prices",
    READ_NOZZLE: "read_nozzle",
    STOP: "stop",
    AUTHORISE: "authorise",
    WRITE_DISPLAY: "write_display",
    ACK_HANGUP: "ack_hangup",
    WRITE_PRICES: "write_prices",
}

#: What a controller sends that changes the pump (never sent by the collector).
PUMP_CHANGING: Final = frozenset({STOP, AUTHORISE, WRITE_DISPLAY, ACK_HANGUP, WRITE_PRICES})

#: Pump states (019:31-41); the FCC switches on ``state & 0xF9`` (019:543).
STATE_MASK: Final = 0xF9
ST_UNINITIALISED: Final = 0x2F  # must get its display written (019:1721-1724)
ST_IDLE: Final = 0x20
ST_LIFTED_CASH: Final = 0xA0
ST_LIFTED_CREDIT: Final = 0xA1
ST_AUTHORISED: Final = 0x90
ST_FUELLING_SLOW: Final = 0xD0  # small valve open
ST_FUELLING_FAST: Final = 0xF0  # large valve open
ST_SUSPENDED: Final = 0x98
STATE_NAMES: Final[dict[int, str]] = {
    ST_UNINITIALISED: "uninitialised",
    ST_IDLE: "idle",
    ST_LIFTED_CASH: "lifted (cash)",
    ST_LIFTED_CREDIT: "lifted (credit)",
    ST_AUTHORISED: "authorised",
    ST_FUELLING_SLOW: "fuelling (small valve)",
    ST_FUELLING_FAST: "fuelling (large valve)",
    ST_SUSPENDED: "suspended",
}
#: States of a nozzle out of its holster: a fill cycle is open.
ACTIVE_STATES: Final = frozenset(
    {
        ST_LIFTED_CASH,
        ST_LIFTED_CREDIT,
        ST_AUTHORISED,
        ST_FUELLING_SLOW,
        ST_FUELLING_FAST,
        ST_SUSPENDED,
    }
)
FUELLING_STATES: Final = frozenset({ST_FUELLING_SLOW, ST_FUELLING_FAST})

#: C·A2 and C·A3 are accepted with this byte (019:2122, 2206).
ACCEPTED: Final = 0xB0


def masked(state: int) -> int:
    """The state as the FCC reads it: bits 1 and 2 ignored (019:543)."""
    return state & STATE_MASK


def request_data_len(command: Command, nozzles: int = PRICE_NOZZLES) -> int | None:
    """Data bytes after the command pair, or None for a command we do not know."""
    lengths = _LENGTHS.get(command)
    if lengths is None:
        return None
    return 4 * nozzles if lengths[0] < 0 else lengths[0]


def reply_data_len(command: Command, nozzles: int = PRICE_NOZZLES) -> int:
    """Data bytes of the reply to a known command (the FCC's wantLen / 2)."""
    reply = _LENGTHS[command][1]
    return 2 * nozzles + 1 if reply < 0 else reply


def double(data: bytes) -> bytes:
    """Each byte followed by its complement (double talk, 019:825)."""
    out = bytearray()
    for b in data:
        out += bytes((b, b ^ 0xFF))
    return bytes(out)


def single(raw: bytes) -> bytes | None:
    """Double-talk bytes → the data; None when a complement is wrong (019:2380-2397)."""
    if len(raw) % 2:
        return None
    data = raw[0::2]
    # Every pair complements: the two halves XOR to all ones (one int op, not a loop).
    if int.from_bytes(data) ^ int.from_bytes(raw[1::2]) != (1 << 4 * len(raw)) - 1:
        return None
    return data


def build_request(command: Command, pump: int, data: bytes = b"") -> bytes:
    """A request on the wire. ``pump`` is the wire number 0–15 (address − 1)."""
    if not 0 <= pump <= MAX_PUMP:
        raise ValueError(f"pump {pump} is not 0..{MAX_PUMP}")
    prefix, code = command
    return double(bytes((prefix | pump, code)) + data)


def le_bcd(raw: bytes) -> int | None:
    """BCD, least significant byte first (019:1167)."""
    return bcd_decode(raw[::-1])


def le_bcd_encode(value: int, width: int) -> bytes:
    return bcd_encode(value, width)[::-1]


@dataclass(frozen=True, slots=True)
class Display:
    """The F·A1 reply: the running fill or the last sale, and the state.

    Data layout (019:1277-1294): price [0] low, [1] high; amount [2..4];
    volume [5..7] (each least significant first); state [8]. Counts are
    raw digit values; the decimal places are the port's options.
    """

    price: int
    amount: int
    volume: int
    state: int

    @property
    def empty(self) -> bool:
        return self.amount == 0 and self.volume == 0


def parse_display(data: bytes) -> Display | None:
    """None when a digit field is not BCD."""
    price, amount, volume = le_bcd(data[0:2]), le_bcd(data[2:5]), le_bcd(data[5:8])
    if price is None or amount is None or volume is None or len(data) != 9:
        return None
    return Display(price, amount, volume, data[8])


def build_display(display: Display) -> bytes:
    """The F·A1 reply data (simulator, tests)."""
    return (
        le_bcd_encode(display.price, 2)
        + le_bcd_encode(display.amount, 3)
        + le_bcd_encode(display.volume, 3)
        + bytes((display.state,))
    )


def totals_selector(nozzle: int) -> int:
    """The F·A9 data byte for ``nozzle`` (019:1361 "single hose, running total, cash")."""
    return 0x40 | ((nozzle - 1) << 1)


def nozzle_of_selector(m: int) -> int | None:
    """The nozzle a F·A9 selector names; None for one the FCC never sends."""
    if m & ~0x3E != 0x40:
        return None
    return ((m >> 1) & 0x1F) + 1


@dataclass(frozen=True, slots=True)
class NozzleTotals:
    """The F·A9 reply: volume [0..4] and amount [5..9] totals, least significant
    byte first (019:1388-1398); [10] is not read by the FCC."""

    volume: int
    amount: int

    @property
    def digits(self) -> str:
        """The volume total's ten digits as on the wire, most significant first."""
        return f"{self.volume:010d}"


def parse_totals(data: bytes) -> NozzleTotals | None:
    volume, amount = le_bcd(data[0:5]), le_bcd(data[5:10])
    if volume is None or amount is None or len(data) != 11:
        return None
    return NozzleTotals(volume, amount)


def build_totals(totals: NozzleTotals) -> bytes:
    return le_bcd_encode(totals.volume, 5) + le_bcd_encode(totals.amount, 5) + b"\x00"


def parse_prices(data: bytes) -> tuple[list[int], int] | None:
    """The F·AC reply: each nozzle's price (low byte first), then the number of
    grades configured (019:1929, 1947-1952)."""
    if len(data) % 2 != 1:
        return None
    prices = [le_bcd(data[i : i + 2]) for i in range(0, len(data) - 1, 2)]
    if any(p is None for p in prices):
        return None
    return [p for p in prices if p is not None], data[-1]


def build_prices(prices: list[int], grades: int) -> bytes:
    return b"".join(le_bcd_encode(p, 2) for p in prices) + bytes((grades,))


def lifted_nozzle(data: bytes) -> int:
    """The C·A1 reply: the nozzle lifted, 0 when none (019:1896-1899)."""
    return data[0] & 0x7F


@dataclass(frozen=True, slots=True)
class Authorisation:
    """The F·A5 data (019:824-847, 1483-1506): slow-flow offset, price, then a
    money and a volume preset (zero: no preset), each least significant first."""

    slow_flow: int
    price: int
    amount: int
    volume: int


def parse_authorisation(data: bytes) -> Authorisation | None:
    price, amount, volume = le_bcd(data[1:3]), le_bcd(data[3:6]), le_bcd(data[6:9])
    if price is None or amount is None or volume is None or len(data) != 9:
        return None
    return Authorisation(data[0], price, amount, volume)


def build_authorisation(auth: Authorisation) -> bytes:
    """Only a station controller sends this (the POS simulator); never the collector."""
    return (
        bytes((auth.slow_flow,))
        + le_bcd_encode(auth.price, 2)
        + le_bcd_encode(auth.amount, 3)
        + le_bcd_encode(auth.volume, 3)
    )


def parse_price_write(data: bytes) -> list[tuple[int, int]] | None:
    """The C·A3 data: per nozzle the cash and the credit price, most significant
    byte first (019:1016-1037)."""
    if len(data) % 4:
        return None
    out = []
    for i in range(0, len(data), 4):
        cash, credit = bcd_decode(data[i : i + 2]), bcd_decode(data[i + 2 : i + 4])
        if cash is None or credit is None:
            return None
        out.append((cash, credit))
    return out
