"""Lanfeng commands and the replies to the read-only ones: build and parse.

Citations ``:N`` are ``fangym0335/first src/lischn017.c:N``. Framing:
:mod:`protocols.lanfeng.framer`. Every request is
``addr | 00 | C | eight data bytes | check``.

Read-only queries (data all ``00``):

======  ======================  =============================================
``B8``  status and the sale      reply: price ``[2..3]``, amount ``[4..6]``,
        shown                    volume ``[7..9]`` (BCD), state ``[10]``
                                 (``:1384-1432``; the sale read ``:946-972``)
``AD``  volume totals            reply: ``[5..10]``, 6-byte BCD (``:1076-1121``, ``:923``)
``AC``  amount totals            reply: ``[5..10]``, 6-byte BCD (``:1024-1069``, ``:934``)
======  ======================  =============================================

The B8 reply has no room for an echo of its command (the price starts at
``[2]``, read there by ``:969-972``, ``:1537-1538``, ``:820-821``,
``:1808``; the comment at ``:1330`` says ``[4..5]`` but every use reads
``[2..3]``).
Whether the totals replies echo AD / AC at ``[2]`` is not in the source;
nothing here relies on it: a reply is read as the reply to the question
before it.

Commands that change the pump — never sent by the collector (SPEC D20):
``A0`` host control (``:1650-1663``; its reply echoes A0 at ``[2]``,
``:1686``), ``A1`` authorise (``:1189-1202``), ``A2`` / ``A3`` preset
amount / volume, three BCD bytes at ``[3..5]`` (``:660-680``; reply echoes
at ``[2]``, ``:703``), ``A4`` set price, two BCD bytes at ``[3..4]``
(``:785-798``), ``B1`` stop (``:1136-1149``).

State ``[10]`` (``:23-26``): ``41`` idle, ``C1`` nozzle lifted (call),
``C2`` fuelling; bit ``40`` is host control (``FP_CONTROL``; the FCC sends
A0 whenever it is clear, ``:1428-1434`` — we never do). Without host
control the same states read ``01``, ``81``, ``82``: the state is read
with bit 40 masked (inferred from ``FP_CONTROL``, unverified).

Decimal places are not on the wire: the FCC stores volume and amount with
IFSF leading byte ``06`` over 8 BCD digits (``:950-966``), price ``04``
over 6 (``:969-972``) and totals ``0A`` over 12 (``:922-923``, ``:933-934``)
— two decimals each (the leading byte counts the digits before the point,
protocols/ck1313/messages.py). Configurable per port.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from protocols.bcd import bcd_decode, bcd_encode, bcd_field
from protocols.events import NozzleState, ProtocolError
from protocols.lanfeng.framer import Frame, encode_frame

CMD_STATUS = 0xB8
CMD_VOLUME_TOTAL = 0xAD
CMD_AMOUNT_TOTAL = 0xAC
CMD_HOST_CONTROL = 0xA0
CMD_AUTHORISE = 0xA1
CMD_PRESET_AMOUNT = 0xA2
CMD_PRESET_VOLUME = 0xA3
CMD_SET_PRICE = 0xA4
CMD_STOP = 0xB1

COMMAND_NAMES: dict[int, str] = {
    CMD_STATUS: "status",
    CMD_VOLUME_TOTAL: "volume totals",
    CMD_AMOUNT_TOTAL: "amount totals",
    CMD_HOST_CONTROL: "host control",
    CMD_AUTHORISE: "authorise",
    CMD_PRESET_AMOUNT: "preset amount",
    CMD_PRESET_VOLUME: "preset volume",
    CMD_SET_PRICE: "set price",
    CMD_STOP: "stop",
}

#: The queries that only ask (module doc).
READ_COMMANDS = frozenset({CMD_STATUS, CMD_VOLUME_TOTAL, CMD_AMOUNT_TOTAL})

#: BCD bytes a request carries at [3..]: presets 3, price 2, the rest none.
REQUEST_DATA = {CMD_PRESET_AMOUNT: 3, CMD_PRESET_VOLUME: 3, CMD_SET_PRICE: 2}

#: BCD widths: price 2, amount and volume 3, totals 6.
PRICE_WIDTH, SALE_WIDTH, TOTAL_WIDTH = 2, 3, 6

#: Digits of a totalizer on the wire (the ``order_no`` and the key).
TOTAL_DIGITS = 2 * TOTAL_WIDTH

HOST_CONTROL_BIT = 0x40
STATE_OF: dict[int, NozzleState] = {
    0x01: NozzleState.IDLE,
    0x81: NozzleState.LIFTED,
    0x82: NozzleState.FUELLING,
}
STATE_NAMES = {0x01: "idle", 0x81: "nozzle lifted", 0x82: "fuelling"}


def build_request(address: int, command: int, data: bytes = b"") -> bytes:
    """``addr | 00 | command | data padded with 00 | check``; the driver sends only
    :data:`READ_COMMANDS`, with no data."""
    if len(data) > 8:
        raise ValueError("at most eight data bytes")
    return encode_frame(address, bytes([0, command, *data]) + bytes(8 - len(data)))


def request_command(frame: Frame) -> int | None:
    """The command of a frame laid out as a request (module doc), else None."""
    raw = frame.raw
    command = raw[2]
    if raw[1] != 0 or command not in COMMAND_NAMES:
        return None
    width = REQUEST_DATA.get(command, 0)
    if any(raw[3 + width : 11]):
        return None
    if width and bcd_decode(raw[3 : 3 + width]) is None:
        return None
    return command


# ---------------------------------------------------------------- replies


@dataclass(frozen=True, slots=True)
class StatusShown:
    """The B8 reply: the state, and the sale shown (the fill while fuelling)."""

    price: int
    amount: int
    volume: int
    status: int
    command: ClassVar[int] = CMD_STATUS

    @property
    def state(self) -> NozzleState:
        return STATE_OF[self.status & ~HOST_CONTROL_BIT]

    @property
    def host_control(self) -> bool:
        return bool(self.status & HOST_CONTROL_BIT)

    def part(self) -> dict[str, int]:
        return {"price": self.price, "amount": self.amount, "volume": self.volume}


@dataclass(frozen=True, slots=True)
class TotalShown:
    """The AD or AC reply: one totalizer."""

    command: int
    total: int
    state: ClassVar[None] = None  # not a status

    def part(self) -> dict[str, int]:
        name = "volume_total" if self.command == CMD_VOLUME_TOTAL else "amount_total"
        return {name: self.total}


Reply = StatusShown | TotalShown


def parse_reply(frame: Frame, command: int) -> Reply | ProtocolError:
    """The reply to the read-only query ``command`` carried by ``frame``."""
    raw = frame.raw
    if command in (CMD_VOLUME_TOTAL, CMD_AMOUNT_TOTAL):
        total = bcd_field(raw[5:11], COMMAND_NAMES[command])
        return total if isinstance(total, ProtocolError) else TotalShown(command, total)
    if command != CMD_STATUS:
        return ProtocolError("bad_message", f"{command:02X} is not a read-only query")
    price = bcd_field(raw[2:4], "price")
    amount = bcd_field(raw[4:7], "amount")
    volume = bcd_field(raw[7:10], "volume")
    for value in (price, amount, volume):
        if isinstance(value, ProtocolError):
            return value
    assert isinstance(price, int) and isinstance(amount, int) and isinstance(volume, int)
    if raw[10] & ~HOST_CONTROL_BIT not in STATE_OF:
        detail = f"state {raw[10]:02X} is not 41, C1, C2 (or 01, 81, 82)"
        return ProtocolError("bad_message", detail)
    return StatusShown(price, amount, volume, raw[10])


def build_reply(address: int, reply: Reply) -> bytes:
    """A pump's reply frame (the simulator and tests). ``[1]`` is 00; a totals
    reply echoes its command at ``[2]`` and carries 00 at ``[3..4]`` (unverified)."""
    if isinstance(reply, StatusShown):
        body = (
            bytes([0])
            + bcd_encode(reply.price, PRICE_WIDTH)
            + bcd_encode(reply.amount, SALE_WIDTH)
            + bcd_encode(reply.volume, SALE_WIDTH)
            + bytes([reply.status])
        )
    else:
        body = bytes([0, reply.command, 0, 0]) + bcd_encode(reply.total, TOTAL_WIDTH)
    return encode_frame(address, body)
