"""What a station POS sends besides its reads: authorisations and prices.

A real POS owns its pumps: it authorises each fill and sets the prices —
what SPEC D20 forbids the collector. ``python -m hil.pos --commands
authorise,price`` interleaves such frames between its reads (which are our
own poll driver's), so relay and listen tests see a line as a station has
it. One class per protocol that has them: DART and Furen.

DART (the layouts the sources of protocols/dart/monitor.py give):

- ``authorise``: one DATA frame ``[CD2 allowed nozzles, CD1 DCC 06]`` to a
  pump — its nozzles seen so far (nozzle 1 before any), then authorise;
- ``price``: ``[CD5 prices]`` — the price of nozzles 1..n as last read
  from the pump's DC3 (so the simulated pump's prices, and the ground
  truth, do not change); skipped until every nozzle up to n has been seen.

Each goes to the next pump in turn and waits for its ACK or NAK. Its
sequence nibble is the POS's own per pump (the simulated pump does not
check it).

Furen Haosheng (fangym0335/first src/lischn009.c):

- ``authorise``: ``61 01``, ctrl 00 (``:1283-1293``);
- ``price``: ``51 <price, 2 BCD bytes> 01`` to nozzle n, ctrl ``F0 | n-1``
  (``:822-834``) — the price of nozzle n as last read in a sale (so the
  simulated pump's prices, and the ground truth, do not change); nothing
  before a sale was read.

Each waits for the pump's acknowledgement (``[7]`` 01 accepted).

Changkong Uninfo (fangym0335/first src/lischn011.c):

- ``authorise``: ``9 | pump``, one byte, no answer (``:1475-1477``);
- ``price``: the ``D`` block of ``ChangePrice`` (``:953-991``): ``FF``, length,
  ``FD``, function 001, ``F5`` + nozzle, ``F3`` + 6 price words + ``E2``, ``F4`` + the
  same + ``E2``, ``FC``, check word, ``F0`` — the nozzle's price as last read in a
  sale (nothing before one was read); answered by 12 words (``:992``, ``:1014-1042``).

With ``echo`` (an echoing loop) each command also waits for its own copy.

These frames are built here, in ``hil/``, never in ``protocols/``: no
product code can send them.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from protocols.bcd import bcd_encode
from protocols.dart.framer import SEQ_MASK, Frame, FrameDecoder, encode_frame
from protocols.dart.messages import PRICE_BCD
from protocols.dart.monitor import CD1_COMMANDS
from protocols.dart.pumpstate import ADR_OFFSET
from protocols.events import Event, NozzleStatus, Sale
from protocols.furen.framer import Frame as FurenFrame
from protocols.furen.framer import FrameDecoder as FurenDecoder
from protocols.furen.framer import encode_frame as furen_encode
from protocols.furen.framer import nozzle_ctrl
from protocols.uninfo.framer import Reply as UninfoReply
from protocols.uninfo.framer import ReplyReader as UninfoReplies
from protocols.uninfo.framer import Request as UninfoRequest
from protocols.uninfo.framer import RequestReader as UninfoRequests
from protocols.uninfo.framer import request_of as uninfo_request_of
from protocols.uninfo.messages import CMD_AUTHORISE as UNINFO_AUTHORISE
from protocols.uninfo.messages import FN_PRICE as UNINFO_FN_PRICE
from protocols.uninfo.messages import build_block as uninfo_block
from protocols.uninfo.messages import digit_words as uninfo_digits
from protocols.uninfo.messages import request_byte as uninfo_request_byte

TRANS_CD1, TRANS_CD2, TRANS_CD5 = 0x01, 0x02, 0x05
DCC_AUTHORISE = next(dcc for dcc, name in CD1_COMMANDS.items() if name == "authorise")
#: Price decimals of the simulated pumps (0.01 yuan/L, hil/dispenser/model.py).
PRICE_DECIMALS = 2


class DartCommands:
    """Authorise / price frames for DART pumps, round robin (module doc)."""

    KINDS = ("authorise", "price")

    def __init__(self, addresses: Sequence[int], kinds: Sequence[str]) -> None:
        unknown = set(kinds) - set(self.KINDS)
        if unknown or not kinds:
            raise ValueError(f"commands must be among {', '.join(self.KINDS)}: {sorted(unknown)}")
        self.addresses = list(addresses)
        self.kinds = list(kinds)
        self.turn = 0
        self.seq: dict[int, int] = {}
        self.prices: dict[int, dict[int, Decimal]] = {a: {} for a in addresses}
        self.decoder = FrameDecoder()
        self.waiting: int | None = None  # ADR whose ACK / NAK we wait for
        self.sent: dict[str, int] = {}
        self.acked = 0  # commands the pump acknowledged (NAK: refused)

    def observe(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, NozzleStatus) and event.price is not None:
                self.prices.setdefault(event.address, {})[event.nozzle] = event.price

    def next_frame(self) -> bytes | None:
        """The next command on the wire; None when it has nothing to say yet."""
        kind = self.kinds[self.turn % len(self.kinds)]
        address = self.addresses[(self.turn // len(self.kinds)) % len(self.addresses)]
        self.turn += 1
        known = self.prices.get(address, {})
        if kind == "authorise":
            nozzles = bytes(sorted(known) or [1])
            items = [(TRANS_CD2, nozzles), (TRANS_CD1, bytes([DCC_AUTHORISE]))]
        else:
            count = max(known, default=0)
            if not count or any(n not in known for n in range(1, count + 1)):
                return None
            raw = [int(known[n].scaleb(PRICE_DECIMALS)) for n in range(1, count + 1)]
            items = [(TRANS_CD5, b"".join(bcd_encode(p, PRICE_BCD) for p in raw))]
        adr = ADR_OFFSET + address
        seq = self.seq.get(adr, 0)
        self.seq[adr] = (seq + 1) & SEQ_MASK
        self.waiting = adr
        self.sent[kind] = self.sent.get(kind, 0) + 1
        return encode_frame(Frame.data(adr, seq, items))

    def answered(self, data: bytes) -> bool:
        """Did ``data`` bring the pump's ACK or NAK to the last command?"""
        for item in self.decoder.receive_data(data):
            if isinstance(item, Frame) and item.adr == self.waiting and item.kind in ("ack", "nak"):
                self.waiting = None
                self.acked += item.kind == "ack"
                return True
        return False

    def gave_up(self) -> None:
        """No answer within the deadline: forget it (and any half frame)."""
        self.waiting = None
        self.decoder.flush()


class FurenCommands:
    """Authorise / price frames for a Furen fuelling point, in turn (module doc)."""

    KINDS = ("authorise", "price")

    def __init__(self, addresses: Sequence[int], kinds: Sequence[str]) -> None:
        unknown = set(kinds) - set(self.KINDS)
        if unknown or not kinds:
            raise ValueError(f"commands must be among {', '.join(self.KINDS)}: {sorted(unknown)}")
        self.kinds = list(kinds)
        self.turn = 0
        self.prices: dict[int, Decimal] = {}  # nozzle → price last read in a sale
        self.decoder = FurenDecoder()
        self.waiting: int | None = None  # the command whose acknowledgement we wait for
        self.sent: dict[str, int] = {}
        self.acked = 0

    def observe(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, Sale):
                self.prices[event.nozzle] = event.price

    def next_frame(self) -> bytes | None:
        """The next command on the wire; None when it has nothing to say yet."""
        kind = self.kinds[self.turn % len(self.kinds)]
        self.turn += 1
        if kind == "authorise":
            frame = FurenFrame(0x00, 0x00, 0x00, b"\x61\x01")
        elif not self.prices:
            return None
        else:
            nozzle = sorted(self.prices)[self.turn % len(self.prices)]
            raw = int(self.prices[nozzle].scaleb(PRICE_DECIMALS))
            data = b"\x51" + bcd_encode(raw, 2) + b"\x01"
            frame = FurenFrame(0x00, 0x00, nozzle_ctrl(nozzle), data)
        self.waiting = frame.command
        self.sent[kind] = self.sent.get(kind, 0) + 1
        return furen_encode(frame)

    def answered(self, data: bytes) -> bool:
        """Did ``data`` bring the pump's acknowledgement of the last command?"""
        for item in self.decoder.receive_data(data):
            if isinstance(item, FurenFrame) and item.command == self.waiting:
                self.waiting = None
                self.acked += len(item.data) > 1 and item.data[1] == 0x01
                return True
        return False

    def gave_up(self) -> None:
        """No answer within the deadline: forget it (and any half frame)."""
        self.waiting = None
        self.decoder.flush()


class UninfoCommands:
    """Authorise / price commands for Uninfo pumps, in turn (module doc)."""

    KINDS = ("authorise", "price")

    def __init__(
        self, addresses: Sequence[int], kinds: Sequence[str], *, echo: bool = False
    ) -> None:
        unknown = set(kinds) - set(self.KINDS)
        if unknown or not kinds:
            raise ValueError(f"commands must be among {', '.join(self.KINDS)}: {sorted(unknown)}")
        self.addresses = list(addresses)
        self.kinds = list(kinds)
        self.echo = echo
        self.turn = 0
        self.prices: dict[tuple[int, int], Decimal] = {}  # (pump, nozzle) → price last sold at
        self.reader = UninfoReplies(echo=echo)
        self.waiting: UninfoRequest | None = None
        self.echo_left = b""
        self.sent: dict[str, int] = {}
        self.acked = 0

    def observe(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, Sale):
                self.prices[event.address, event.nozzle] = event.price

    @property
    def expects_answer(self) -> bool:
        """False for an authorise on a loop that does not echo: nothing comes back."""
        return self.waiting is not None and (self.waiting.kind != "none" or self.echo)

    def next_frame(self) -> bytes | None:
        """The next command on the wire; None when it has nothing to say yet."""
        kind = self.kinds[self.turn % len(self.kinds)]
        address = self.addresses[(self.turn // len(self.kinds)) % len(self.addresses)]
        self.turn += 1
        if kind == "authorise":
            wire = bytes([uninfo_request_byte(UNINFO_AUTHORISE, address)])
            request = uninfo_request_of(wire[0])
        else:
            sold = sorted(n for a, n in self.prices if a == address)
            if not sold:
                return None
            nozzle = sold[self.turn % len(sold)]
            raw = int(self.prices[address, nozzle].scaleb(PRICE_DECIMALS))
            words = uninfo_digits(raw, 6)
            fields = (
                bytes([0xF5, 0xE0 | (nozzle - 1), 0xF3]) + words + b"\xe2\xf4" + words + b"\xe2"
            )
            wire = uninfo_block(address, UNINFO_FN_PRICE, fields)
            [read] = UninfoRequests().receive_data(wire)
            assert isinstance(read, UninfoRequest)
            request = read
        self.waiting = request
        self.echo_left = wire if self.echo else b""
        self.reader.expect(request)
        self.sent[kind] = self.sent.get(kind, 0) + 1
        return wire

    def answered(self, data: bytes) -> bool:
        """Did ``data`` complete the last command's echo and answer?"""
        if self.waiting is None:
            return False
        if self.waiting.kind == "none":
            while data and self.echo_left and data[0] == self.echo_left[0]:
                data, self.echo_left = data[1:], self.echo_left[1:]
            if self.echo_left:
                return False
            self.waiting = None
            return True
        for item in self.reader.receive_data(data):
            if isinstance(item, UninfoReply):
                self.waiting = None
                self.acked += item.value == 0
                return True
        return False

    def gave_up(self) -> None:
        """No answer within the deadline: forget it (and any half reply)."""
        self.waiting = None
        self.reader.flush()


#: protocol → its commands class (``--commands`` is refused for the others).
COMMANDS: dict[str, type[DartCommands] | type[FurenCommands] | type[UninfoCommands]] = {
    "dart": DartCommands,
    "furen": FurenCommands,
    "uninfo": UninfoCommands,
}
