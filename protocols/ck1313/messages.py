"""CK1313 commands and the replies to the read-only ones: build and parse.

Citations ``:N`` are ``fangym0335/first src/lischn006.c:N`` (``lischn010.c``
is the same protocol, ``:13-14``). Framing: :mod:`protocols.ck1313.framer`.

Read-only queries, each ``F5 (addr<<4 | 2) C X`` (four bytes):

======  =====================  ==========================================
``D5``  status                 reply 5 bytes, status at ``[2]`` (``:1525-1566``)
``D9``  last sale              reply 10 bytes: volume ``[2..4]``, amount
                               ``[5..7]``, 3-byte BCD (``:1331-1359``, ``:1180-1188``)
``C5``  totals                 reply 14 bytes: volume total ``[2..6]``, amount
                               total ``[7..11]``, 5-byte BCD (``:1046-1078``,
                               ``:1124-1130``)
``B6``  unit price             reply 6 bytes: price ``[2..3]`` BCD
                               (``:1769-1800``, ``:1169-1171``)
======  =====================  ==========================================

Commands that change the pump — never sent by the collector (SPEC D20),
known here to name them in ``forecourt decode`` and in a relay's counts:
``E5`` host control (``:1725-1730``), ``C3`` authorise (``:1384-1389``),
``CA`` stop (``:1823-1828``), ``B2`` set price (``F5 (addr|4) P P B2 X``,
``:633-640``), ``B9`` / ``B5`` preset volume / amount
(``F5 (addr|5) n n n B9 X``, ``:508-529``). Their replies: E5 echoes E5
at ``[2]`` (4 bytes, ``:1744``), C3 and B2 answer ``59`` at ``[2]`` (5
bytes, ``:1408``, ``:675``), a preset echoes B9/B5 at ``[2]`` (4 bytes,
``:545``), CA answers 4 bytes (``:1828``).

Status (``:31-33``, ``:926``): ``status & A0`` is ``80`` nozzle hung up,
``00`` nozzle lifted (call), ``20`` fuelling, ``A0`` authorised (the FCC's
``PUMP_AUTH``; both bits set, read as "authorised with the nozzle hung up",
so idle — unverified). Bit ``08`` means the pump is under host control, on
the models that report it (``:165-173``, ``:857-865``).

Decimal places are not on the wire: the FCC stores volume and amount as
IFSF ``bin8 + bcd`` with 6 integer digits of 8 (``volume[0] = 0x06``,
``:1180-1188``), the totals with 10 of 12 (``0x0A``, ``:1121-1130``), the
price with 4 of 6 (``0x04``, ``:1167-1171``). Read as the count of digits
before the point (``fangym0335/first src/ifsf_dspprod.c:666`` writes ``06``
for a six-digit price with "no point"; inferred), that is two decimals
each. Configurable per port.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from protocols.bcd import bcd_encode, bcd_field
from protocols.ck1313.framer import Frame, encode_frame
from protocols.events import NozzleState, ProtocolError

CMD_STATUS = 0xD5
CMD_SALE = 0xD9
CMD_TOTALS = 0xC5
CMD_PRICE = 0xB6
CMD_HOST_CONTROL = 0xE5
CMD_AUTHORISE = 0xC3
CMD_STOP = 0xCA
CMD_SET_PRICE = 0xB2
CMD_PRESET_VOLUME = 0xB9
CMD_PRESET_AMOUNT = 0xB5

COMMAND_NAMES: dict[int, str] = {
    CMD_STATUS: "status",
    CMD_SALE: "last sale",
    CMD_TOTALS: "totals",
    CMD_PRICE: "unit price",
    CMD_HOST_CONTROL: "host control",
    CMD_AUTHORISE: "authorise",
    CMD_STOP: "stop",
    CMD_SET_PRICE: "set price",
    CMD_PRESET_VOLUME: "preset volume",
    CMD_PRESET_AMOUNT: "preset amount",
}

#: The queries that only ask (module doc).
READ_COMMANDS = frozenset({CMD_STATUS, CMD_SALE, CMD_TOTALS, CMD_PRICE})

#: Reply length per read-only query: the FCC's ``wantLen`` (module doc).
REPLY_LEN: dict[int, int] = {CMD_STATUS: 5, CMD_SALE: 10, CMD_TOTALS: 14, CMD_PRICE: 6}

#: The acknowledgement byte of C3 and B2 replies (``:1408``, ``:675``).
ACK = 0x59

#: BCD widths: sale volume and amount 3 bytes, totals 5, price 2.
SALE_WIDTH, TOTAL_WIDTH, PRICE_WIDTH = 3, 5, 2

#: Digits of a totalizer on the wire (the ``order_no`` and the key).
TOTAL_DIGITS = 2 * TOTAL_WIDTH

#: ``status & STATE_BITS`` names the state (``:926``).
STATE_BITS = 0xA0
HOST_CONTROL_BIT = 0x08
STATUS_IDLE, STATUS_LIFTED, STATUS_FUELLING, STATUS_AUTHORISED = 0x80, 0x00, 0x20, 0xA0

STATE_OF: dict[int, NozzleState] = {
    STATUS_IDLE: NozzleState.IDLE,
    STATUS_LIFTED: NozzleState.LIFTED,
    STATUS_FUELLING: NozzleState.FUELLING,
    STATUS_AUTHORISED: NozzleState.IDLE,
}
STATE_NAMES: dict[int, str] = {
    STATUS_IDLE: "nozzle hung up",
    STATUS_LIFTED: "nozzle lifted",
    STATUS_FUELLING: "fuelling",
    STATUS_AUTHORISED: "authorised",
}

#: (frame length, command) of requests: queries, set price, presets.
REQUEST_SHAPES = frozenset(
    {(4, c) for c in (*READ_COMMANDS, CMD_HOST_CONTROL, CMD_AUTHORISE, CMD_STOP)}
    | {(6, CMD_SET_PRICE), (7, CMD_PRESET_VOLUME), (7, CMD_PRESET_AMOUNT)}
)
#: (frame length, command) of replies.
REPLY_SHAPES = frozenset(
    {(length, c) for c, length in REPLY_LEN.items()}
    | {(5, CMD_AUTHORISE), (5, CMD_SET_PRICE), (4, CMD_PRESET_VOLUME), (4, CMD_PRESET_AMOUNT)}
    | {(4, CMD_HOST_CONTROL), (4, CMD_STOP)}
)


def direction(frame: Frame) -> str | None:
    """``"master"``, ``"pump"``, ``"either"`` (the 4-byte E5 and CA frames: the
    pump's acknowledgement looks like the request) or None (no CK1313 frame)."""
    shape = (len(frame.raw), frame.command)
    master, pump = shape in REQUEST_SHAPES, shape in REPLY_SHAPES
    if master and pump:
        return "either"
    if master or pump:
        return "master" if master else "pump"
    return None


def build_request(address: int, command: int, payload: bytes = b"") -> bytes:
    """A request frame; the driver sends only :data:`READ_COMMANDS` without payload."""
    return encode_frame(address, payload, command)


# ---------------------------------------------------------------- replies


@dataclass(frozen=True, slots=True)
class Status:
    """The D5 reply: the status byte."""

    status: int
    command: ClassVar[int] = CMD_STATUS

    @property
    def state(self) -> NozzleState:
        return STATE_OF[self.status & STATE_BITS]

    @property
    def host_control(self) -> bool:
        return bool(self.status & HOST_CONTROL_BIT)

    def part(self) -> dict[str, int]:
        return {}


@dataclass(frozen=True, slots=True)
class SaleShown:
    """The D9 reply: the current fill while fuelling, else the last sale."""

    volume: int
    amount: int
    command: ClassVar[int] = CMD_SALE
    state: ClassVar[None] = None  # not a status

    def part(self) -> dict[str, int]:
        return {"volume": self.volume, "amount": self.amount}


@dataclass(frozen=True, slots=True)
class TotalsShown:
    """The C5 reply: the fuelling point's volume and amount totalizers."""

    volume_total: int
    amount_total: int
    command: ClassVar[int] = CMD_TOTALS
    state: ClassVar[None] = None

    def part(self) -> dict[str, int]:
        return {"volume_total": self.volume_total, "amount_total": self.amount_total}


@dataclass(frozen=True, slots=True)
class PriceShown:
    """The B6 reply: the unit price."""

    price: int
    command: ClassVar[int] = CMD_PRICE
    state: ClassVar[None] = None

    def part(self) -> dict[str, int]:
        return {"price": self.price}


Reply = Status | SaleShown | TotalsShown | PriceShown

#: Payload bytes of each reply (its length minus F5, A, C, X).
PAYLOAD_LEN = {command: length - 4 for command, length in REPLY_LEN.items()}


def parse_reply(frame: Frame, command: int) -> Reply | ProtocolError:
    """The reply to the read-only query ``command`` carried by ``frame``.

    ``frame.command`` is not checked here: the driver checks it for D9, C5
    and B6 as the FCC does, and not for D5 (framer doc).
    """
    payload = frame.payload
    want = PAYLOAD_LEN.get(command)
    if want is None:
        return ProtocolError("bad_message", f"{command:02X} is not a read-only query")
    if len(payload) != want:
        name = COMMAND_NAMES[command]
        detail = f"{name} reply with {len(payload)} payload bytes, not {want}"
        return ProtocolError("bad_message", detail)
    if command == CMD_STATUS:
        return Status(payload[0])
    if command == CMD_PRICE:
        price = bcd_field(payload, "price")
        return price if isinstance(price, ProtocolError) else PriceShown(price)
    width = SALE_WIDTH if command == CMD_SALE else TOTAL_WIDTH
    first, second = bcd_field(payload[:width], "volume"), bcd_field(payload[width:], "amount")
    if isinstance(first, ProtocolError):
        return first
    if isinstance(second, ProtocolError):
        return second
    return SaleShown(first, second) if command == CMD_SALE else TotalsShown(first, second)


def build_reply(address: int, reply: Reply) -> bytes:
    """A pump's reply frame (the simulator and tests; ``k`` as the framer writes it)."""
    if isinstance(reply, Status):
        payload = bytes([reply.status])
    elif isinstance(reply, SaleShown):
        payload = bcd_encode(reply.volume, SALE_WIDTH) + bcd_encode(reply.amount, SALE_WIDTH)
    elif isinstance(reply, TotalsShown):
        payload = bcd_encode(reply.volume_total, TOTAL_WIDTH)
        payload += bcd_encode(reply.amount_total, TOTAL_WIDTH)
    else:
        payload = bcd_encode(reply.price, PRICE_WIDTH)
    return encode_frame(address, payload, reply.command)
