"""Simulated Changkong Uninfo fuelling points (``fangym0335/first src/lischn011.c``).

:class:`UninfoResponder` is one two-wire current loop with pumps at
addresses 1..16 (the wire names 16 as nibble 0), each with 1..4 nozzles,
silent while powered off (``responder.answering``). What each request gets
(layouts: protocols/uninfo/messages.py):

- ``A`` → ``state << 4 | pump``: 4 while a nozzle fuels, 2 while one is
  lifted, 6 for :data:`END_S` after a fill ended, else 1.
- ``8`` → 25 words, the fuelling nozzle's amount ``[0..7]`` and volume
  ``[9..16]`` (zeros when none fuels).
- ``B`` → ``4 + 40·nozzles`` words, every nozzle's totals and price.
- ``C`` → 73 words, the pump's newest sale (zeros before its first): price
  ``[19..24]``, volume ``[27..34]``, amount ``[37..44]``, pump ``[2]``. The
  protocol has no acknowledgement, the read is all: a sale is taken
  (:meth:`PumpModel.take`) once sent twice and the master then asks the pump
  something else (a poller's two reads and its confirming status) or
  :data:`READ_HOLD_S` after it was first sent (a controller that reads
  once). A pump keeps one record: a new fill waits while the newest sale is
  untaken, and while another nozzle of the pump is busy
  (:meth:`UninfoResponder.may_start`) — a real pump would let the next
  customer overwrite the record, which the ground truth could not follow.
- What a station's controller sends and the collector never may (SPEC D20):
  ``9`` authorise, ``7`` / ``FE`` stop (no answer, ``:1477``, ``:1428``) and a
  ``D`` block (answered by 12 words, ``[0]`` the request byte, ``[8]`` E0 =
  done, ``:808``; a price block sets the nozzle's price when it is idle) —
  counted by name in :attr:`UninfoResponder.writes`. The simulated customers
  fill on their own, authorised or not.
- Anything else → silence, counted in :attr:`UninfoResponder.refused`.

Words the FCC does not read are filled in here Gilbarco-style (``FF``
first, control words ``F1``/``F6``/``F7``/``F9``/``FA``/``F4``/``F5``/``FB``
before fields, ``E0`` elsewhere, ``LRC F0`` last — also on the running
display, which the source does not check): the simulator's choice, not the
pump's layout. The check word is the source's (``:1308-1309``).

``echo=True`` (``--option echo=true``): every request byte is written back
before any answer, as a current loop that echoes would (unverified for
this protocol; protocols.md §4 says a Gilbarco loop does).

Ground truth: Uninfo carries no transaction number; the order number the
collector reports is the volume total after the sale as raw digits
(:meth:`UninfoResponder.truth`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from hil.dispenser.model import NozzleModel, PumpModel, SimSale
from hil.dispenser.responder import answering
from protocols.uninfo.framer import Request, RequestReader
from protocols.uninfo.messages import (
    CMD_DATA,
    CMD_DISPLAY,
    CMD_SALE,
    CMD_STATUS,
    CMD_TOTALS,
    FN_PRICE,
    MAX_GRADES,
    REQUEST_NAMES,
    ST_END,
    ST_FUELLING,
    ST_IDLE,
    ST_LIFTED,
    digit_words,
    pump_nibble,
    read_digits,
    with_check,
)

#: Seconds a pump shows 6 (fill ended) before 1 (idle).
END_S = 0.5

#: Seconds after its first send a sale counts as read though sent once:
#: more than a controller's round over a few pumps.
READ_HOLD_S = 3.0

STX, FB, E0 = 0xFF, 0xFB, 0xE0


def order_no_of(sale: SimSale) -> str:
    """The order_no the collector reports for ``sale`` (volume total, raw)."""
    return str(sale.totalizer_volume_end)


def display_words(amount: int, volume: int) -> bytes:
    body = digit_words(amount, 8) + b"\xf9" + digit_words(volume, 8) + bytes([E0] * 6)
    return with_check(body)


def sale_words(address: int, price: int, volume: int, amount: int) -> bytes:
    head = bytes([STX, 0xF1, E0 | pump_nibble(address)]) + bytes([E0] * 15) + b"\xf7"
    body = head + digit_words(price, 6) + b"\xe0\xf9" + digit_words(volume, 8) + b"\xe0\xfa"
    body += digit_words(amount, 8) + bytes([E0] * 25) + bytes([FB])
    return with_check(body)


def totals_words(nozzles: Sequence[NozzleModel]) -> bytes:
    body = bytearray([STX])
    for nozzle in nozzles:
        body += bytes([0xF6, E0 | (nozzle.nzn - 1), 0xF9])
        body += digit_words(nozzle.totalizer_volume, 9) + b"\xe0\xfa"
        body += digit_words(nozzle.totalizer_amount, 9) + b"\xe0\xf4"
        body += digit_words(nozzle.price, 4) + b"\xf5" + digit_words(nozzle.price, 4)
        body += bytes([E0] * 6)
    body.append(FB)
    return with_check(bytes(body))


class UninfoResponder:
    """The simulated pumps of one loop (see the module doc)."""

    protocol: ClassVar[str] = "uninfo"
    #: A sale is paired with its nozzle's totals, amount total included.
    AMOUNT_TOTALIZER: ClassVar[bool] = True

    def __init__(self, pumps: Sequence[PumpModel], *, echo: bool = False) -> None:
        self.by_nibble: dict[int, PumpModel] = {}
        for pump in pumps:
            if not 1 <= len(pump.nozzles) <= MAX_GRADES:
                raise ValueError(f"an Uninfo fuelling point has 1..{MAX_GRADES} nozzles")
            self.by_nibble[pump_nibble(pump.address)] = pump
        self.echo = echo
        self.decoder = RequestReader()
        self.last: dict[int, SimSale] = {}  # address → its newest sale sent
        self.sent: dict[int, tuple[int, float]] = {}  # txn_no → (sends, first at)
        self.ended: dict[int, tuple[int, float]] = {}  # address → (next_txn, seen at)
        self.refused = 0
        #: Requests that change a pump, by name (the D20 witness: a poll
        #: driver must leave it empty).
        self.writes: dict[str, int] = {}

    def truth(self, sale: SimSale, port_number: int) -> dict[str, Any]:
        """The order number the collector reports is the volume total."""
        line = sale.truth(port_number, amount_totalizer=self.AMOUNT_TOTALIZER)
        line["order_no"] = order_no_of(sale)
        return line

    def may_start(self, pump: PumpModel, nozzle: NozzleModel) -> bool:
        """One fill at a time per point, and not over an unread record (module doc)."""
        return not pump.pending and not any(n.busy for n in pump.nozzles)

    def receive_data(self, data: bytes, now: float) -> bytes:
        for pump in self.by_nibble.values():
            for sale in list(pump.pending):
                sends, first = self.sent.get(sale.txn_no, (0, now))
                if sends and now - first >= READ_HOLD_S:
                    self._take(pump, sale)
        out = bytearray()
        for item in self.decoder.receive_data(data):
            if not isinstance(item, Request):
                continue
            if self.echo:
                out += item.raw
            self._read_twice(item)
            reply = self.answer(item, now)
            if reply is None:
                continue
            out += reply
        return bytes(out)

    def answer(self, request: Request, now: float) -> bytes | None:
        """The words a pump answers ``request`` with; None: silence."""
        if request.address is None:  # FE: stop every pump, no answer
            self._count("stop")
            return None
        pump = self.by_nibble.get(pump_nibble(request.address))
        if pump is None or not answering(pump, now):
            self.refused += pump is None
            return None
        command = request.command
        if command == CMD_STATUS:
            return bytes([self._state(pump, now) << 4 | pump_nibble(pump.address)])
        if command == CMD_DISPLAY:
            fuelling = next((n for n in pump.nozzles if n.state == "fuelling"), None)
            if fuelling is None:
                return display_words(0, 0)
            return display_words(fuelling.live_amount(now), fuelling.live_volume(now))
        if command == CMD_TOTALS:
            return totals_words(pump.nozzles)
        if command == CMD_SALE:
            return self._record(pump, now)
        self._count(REQUEST_NAMES[command])
        if command != CMD_DATA:
            return None
        assert request.block is not None
        if request.block.function == FN_PRICE:
            self._set_price(pump, request.block.raw)
        reply = bytes([request.raw[0], STX]) + bytes([E0] * 6) + bytes([E0, FB])
        return with_check(reply)

    def _read_twice(self, request: Request) -> None:
        """A request other than C to a pump whose newest sale went out twice:
        the master has read it (module doc)."""
        if request.address is None or request.command == CMD_SALE:
            return
        pump = self.by_nibble.get(pump_nibble(request.address))
        if pump is not None and pump.pending:
            newest = pump.pending[-1]
            if self.sent.get(newest.txn_no, (0, 0.0))[0] >= 2:
                self._take(pump, newest)

    def _count(self, name: str) -> None:
        self.writes[name] = self.writes.get(name, 0) + 1

    def _set_price(self, pump: PumpModel, block: bytes) -> None:
        """A price block (``:953-991``): nozzle ``[9] & 0F`` + 1, price from ``[11]``."""
        price = read_digits(block, 11, 6)
        nzn = (block[9] & 0x0F) + 1
        if price and nzn <= len(pump.nozzles) and not pump.nozzle(nzn).busy:
            pump.nozzle(nzn).price = price

    def _state(self, pump: PumpModel, now: float) -> int:
        # A fill ended when the pump's transaction counter moved.
        txn, since = self.ended.get(pump.address, (pump.next_txn, -END_S))
        if txn != pump.next_txn:
            txn, since = pump.next_txn, now
        self.ended[pump.address] = (txn, since)
        if any(n.state == "fuelling" for n in pump.nozzles):
            return ST_FUELLING
        if any(n.state == "lifted" for n in pump.nozzles):
            return ST_LIFTED
        return ST_END if now - since < END_S else ST_IDLE

    def _take(self, pump: PumpModel, sale: SimSale) -> None:
        """``sale`` is read; older ones the record no longer shows are lost."""
        for older in [s for s in pump.pending if s.txn_no <= sale.txn_no]:
            self.sent.pop(older.txn_no, None)
            pump.take(older.txn_no)

    def _record(self, pump: PumpModel, now: float) -> bytes:
        """The newest sale; each send of a pending one counts (module doc)."""
        if pump.pending:
            newest = pump.pending[-1]
            self.last[pump.address] = newest
            sends, first = self.sent.get(newest.txn_no, (0, now))
            self.sent[newest.txn_no] = (sends + 1, first)
        sale = self.last.get(pump.address)
        if sale is None:
            return sale_words(pump.address, 0, 0, 0)
        return sale_words(pump.address, sale.price, sale.volume, sale.amount)
