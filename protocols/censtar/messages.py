"""正星 Censtar (protocol 5.0) commands and layouts, sans-IO.

Every fact cites ``fangym0335/first src/lischn005.c`` ("005:"), the FCC's
driver for 河南正星 dispensers (no public document of the protocol found).

Frame, both directions: ``FC CMD ADDR data… X`` with ``X`` the XOR of every
byte from CMD to the last data byte (``Check_xor(&cmd[1], n)``, 005:1744,
1764; ``fangym0335/first src/lrc.c:75-85``). A reply repeats ``FC CMD ADDR``
(005:1296, 1773) and its length is fixed by the command (the FCC's
``wantLen``). ``ADDR`` is the fuelling point's configured number (phyfp,
005:115).

=====  ========  =======  ==================================================
cmd    request   reply    meaning (source)
=====  ========  =======  ==================================================
0D     4         5        state [3] (005:1742-1775)
18     4         13       running fill: volume [4..6], amount [7..9] BCD
                          (005:1599-1603, 1634-1637)
0C     4         17       totals: amount [4..7], volume [8..11], 4-byte
                          binary, most significant first (005:1212-1216,
                          1106-1110, 1922, 1940; bcd.c Hex2Double)
12     4         18       price [4..5] BCD (005:1681-1695)
15     4         36       the oldest uncleared sale (005:1268-1303)
13     4         36       history read (005:1397-1402)
17 s   6         5        **remove sale s from the pump's buffer**; reply
                          [3] bit 0x10 still set: not cleared (005:1322-1362)
08 m   5         5        **control mode** (``AA`` open, 005:169, 1960-1966)
06     4         5        **authorise** (005:1543-1548)
05     4         5        **stop** (005:1488-1493)
03 pp  6         6        **price** (005:934-941)
02     9         6        **preset volume** (005:788-814)
01     10        6        **preset amount** (005:791-814)
=====  ========  =======  ==================================================

The 15 record (005:1134-1153, 1325-1326): amount = 20-bit binary in [6],
[7] and the high nibble of [8]; volume = 20-bit binary in the low nibble of
[8], [9], [10]; price [19..20] BCD; the sale's sequence number [23..24],
echoed by the 17 that removes it. A reply with command ``16`` means "no
sale" (005:1303); its length is not in the source (5 assumed: unverified).

State [3] of 0D, 17 and the control replies (005:30-38, 566): low nibble 1
inoperative, 2 closed, 3 idle, 4 calling (lifted), 5 authorised, 6 started,
7 suspended started, 8 fuelling, 9 suspended fuelling; bit 0x10 an
uncleared sale in the pump's buffer (005:585, 631, 2016); bit 0x80 is read
as "the nozzle is still out of its holster" (the FCC clears its lifted
state when it is 0, 005:575-577, 608; its comments at 575 and 591
contradict each other: unverified, only described).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce
from typing import Final

from protocols.bcd import bcd_decode, bcd_encode

START: Final = 0xFC

CMD_PRESET_AMOUNT: Final = 0x01
CMD_PRESET_VOLUME: Final = 0x02
CMD_PRICE: Final = 0x03
CMD_STOP: Final = 0x05
CMD_AUTHORISE: Final = 0x06
CMD_MODE: Final = 0x08
CMD_TOTALS: Final = 0x0C
CMD_STATUS: Final = 0x0D
CMD_PRICE_READ: Final = 0x12
CMD_HISTORY: Final = 0x13
CMD_SALE: Final = 0x15
CMD_NO_SALE: Final = 0x16
CMD_CLEAR: Final = 0x17
CMD_RUNNING: Final = 0x18

#: Command → (request length, reply length), whole frames (the FCC's cmdlen
#: and wantLen; CMD_NO_SALE's 5 is unverified).
LENGTHS: Final[dict[int, tuple[int, int]]] = {
    CMD_STATUS: (4, 5),
    CMD_RUNNING: (4, 13),
    CMD_TOTALS: (4, 17),
    CMD_PRICE_READ: (4, 18),
    CMD_SALE: (4, 36),
    CMD_HISTORY: (4, 36),
    CMD_NO_SALE: (0, 5),
    CMD_CLEAR: (6, 5),
    CMD_MODE: (5, 5),
    CMD_AUTHORISE: (4, 5),
    CMD_STOP: (4, 5),
    CMD_PRICE: (6, 6),
    CMD_PRESET_VOLUME: (9, 6),
    CMD_PRESET_AMOUNT: (10, 6),
}
#: The longest frame (a 15 / 13 record).
MAX_FRAME: Final = 36

NAMES: Final[dict[int, str]] = {
    CMD_STATUS: "status",
    CMD_RUNNING: "running",
    CMD_TOTALS: "totals",
    CMD_PRICE_READ: "price_read",
    CMD_SALE: "sale",
    CMD_HISTORY: "history",
    CMD_NO_SALE: "no_sale",
    CMD_CLEAR: "clear",
    CMD_MODE: "mode",
    CMD_AUTHORISE: "authorise",
    CMD_STOP: "stop",
    CMD_PRICE: "price",
    CMD_PRESET_VOLUME: "preset_volume",
    CMD_PRESET_AMOUNT: "preset_amount",
}

#: What a controller sends that changes the pump (never sent by the collector).
PUMP_CHANGING: Final = frozenset(
    {CMD_CLEAR, CMD_MODE, CMD_AUTHORISE, CMD_STOP, CMD_PRICE, CMD_PRESET_VOLUME}
    | {CMD_PRESET_AMOUNT}
)

#: State, low nibble (005:30-38).
ST_INOPERATIVE: Final = 0x01
ST_CLOSED: Final = 0x02
ST_IDLE: Final = 0x03
ST_CALLING: Final = 0x04
ST_AUTHORISED: Final = 0x05
ST_STARTED: Final = 0x06
ST_SUSPENDED_STARTED: Final = 0x07
ST_FUELLING: Final = 0x08
ST_SUSPENDED_FUELLING: Final = 0x09
STATE_NAMES: Final[dict[int, str]] = {
    ST_INOPERATIVE: "inoperative",
    ST_CLOSED: "closed",
    ST_IDLE: "idle",
    ST_CALLING: "calling",
    ST_AUTHORISED: "authorised",
    ST_STARTED: "started",
    ST_SUSPENDED_STARTED: "suspended (started)",
    ST_FUELLING: "fuelling",
    ST_SUSPENDED_FUELLING: "suspended (fuelling)",
}
#: An uncleared sale is in the pump's buffer (005:585, 631, 2016).
UNCLEARED: Final = 0x10
#: The nozzle is out of its holster (unverified, see the module doc).
NOZZLE_OUT: Final = 0x80
#: Open mode, the FCC's setting (005:169).
MODE_OPEN: Final = 0xAA


def xor(data: bytes) -> int:
    """XOR of ``data`` (005 ``Check_xor``, lrc.c:75-85)."""
    return reduce(lambda a, b: a ^ b, data, 0)


def encode(command: int, address: int, data: bytes = b"") -> bytes:
    """A frame: FC, command, address, data and their XOR."""
    body = bytes((command, address)) + data
    return bytes((START,)) + body + bytes((xor(body),))


@dataclass(frozen=True, slots=True)
class Frame:
    """A checked frame: its command, address and the bytes between them and X."""

    command: int
    address: int
    data: bytes
    request: bool

    @property
    def name(self) -> str:
        return NAMES.get(self.command, f"{self.command:02X}")

    def at(self, index: int) -> int:
        """The byte at ``index`` of the whole frame (the source's numbering)."""
        return self.data[index - 3]

    def span(self, start: int, end: int) -> bytes:
        """Frame bytes ``[start..end]`` inclusive (the source's numbering)."""
        return self.data[start - 3 : end - 2]


@dataclass(frozen=True, slots=True)
class Record:
    """A 15 sale record (005:1134-1153, 1325-1326). Counts are raw."""

    amount: int
    volume: int
    price: int
    seq: bytes


def parse_record(frame: Frame) -> Record | None:
    """None when the price is not BCD."""
    b6, b7, b8, b9, b10 = (frame.at(i) for i in range(6, 11))
    price = bcd_decode(frame.span(19, 20))
    if price is None:
        return None
    amount = (b6 << 12) | (b7 << 4) | (b8 >> 4)
    volume = ((b8 & 0x0F) << 16) | (b9 << 8) | b10
    return Record(amount, volume, price, frame.span(23, 24))


def record_data(record: Record, state: int, extra: bytes = bytes(10)) -> bytes:
    """The data of a 15 reply (simulator, tests): [3] state, [6..10] amount and
    volume, [19..20] price, [23..24] sequence; ``extra`` fills [25..34]; the
    bytes the source does not read are zero."""
    if not (0 <= record.amount < 1 << 20 and 0 <= record.volume < 1 << 20):
        raise ValueError("amount and volume are 20-bit counts")
    a, v = record.amount, record.volume
    packed = bytes(((a >> 12) & 0xFF, (a >> 4) & 0xFF, ((a & 0x0F) << 4) | (v >> 16)))
    packed += bytes(((v >> 8) & 0xFF, v & 0xFF))
    data = bytes((state, 0, 0)) + packed + bytes(8) + bcd_encode(record.price, 2) + bytes(2)
    return data + record.seq + extra


@dataclass(frozen=True, slots=True)
class Totals:
    """A 0C reply: amount [4..7] and volume [8..11], 4-byte binary, most
    significant first (005:1106-1110)."""

    amount: int
    volume: int


def parse_totals(frame: Frame) -> Totals:
    return Totals(int.from_bytes(frame.span(4, 7), "big"), int.from_bytes(frame.span(8, 11), "big"))


def totals_data(totals: Totals, state: int) -> bytes:
    return (
        bytes((state,))
        + totals.amount.to_bytes(4, "big")
        + totals.volume.to_bytes(4, "big")
        + bytes(4)
    )


def parse_running(frame: Frame) -> tuple[int, int] | None:
    """An 18 reply: (volume, amount) raw BCD counts (005:1634-1637)."""
    volume, amount = bcd_decode(frame.span(4, 6)), bcd_decode(frame.span(7, 9))
    if volume is None or amount is None:
        return None
    return volume, amount


def running_data(volume: int, amount: int, state: int) -> bytes:
    return bytes((state,)) + bcd_encode(volume, 3) + bcd_encode(amount, 3) + bytes(2)


def parse_price(frame: Frame) -> int | None:
    """A 12 reply: the price at [4..5] BCD (005:1681)."""
    return bcd_decode(frame.span(4, 5))
