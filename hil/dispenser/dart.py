"""Simulated Wayne DART pumps (protocols.md §3) over :class:`PumpModel` state.

:class:`DartResponder` is one RS-485 bus: several pumps, the pump whose
``PumpModel.address`` is n answering ADR ``0x4F + n`` only, none while
powered off (``responder.answering``).

Link level (the behaviour protocols/dart/driver.py expects of a pump):

- DATA from the master → ACK with its seq. Its read transactions (CD1 DCC
  00 / 04, CD101) are the command answered at the next POLL; a reply not
  yet acknowledged is dropped (the master moved on).
- A station POS also sends what a collector never may (SPEC D20): the
  commands named in :data:`protocols.dart.monitor.CD1_COMMANDS` and
  :data:`~protocols.dart.monitor.POS_TRANSACTIONS` (authorise, reset, stop,
  allowed nozzles, presets, price update …). They are ACKed and counted by
  name in :attr:`DartResponder.writes` — the D20 witness: a poll driver run
  against this pump must leave it empty. Only a price update acts: each
  3-byte BCD price goes to the nozzle of its position, if idle (the
  customers of the simulator fill on their own, authorised or not).
  Anything else (an unknown TRANS or DCC, a layout that does not fit) →
  NAK, counted in :attr:`DartResponder.refused`.
- POLL → the reply not yet acknowledged, again with its seq; else the answer
  to the last command as a new DATA frame (our seq + 1, cycling 0–15); else
  EOT (nothing to say).
- ACK with the seq of our reply → delivered. NAK → the reply again as seq 0
  (the sequence restarts after a NAK, protocols.md §3).

Answers (layouts in protocols/dart/messages.py):

- CD1 00 return status → DC1, DC3 (price, NOZIO), one DC5 per active alarm,
  DC9 (the pump's identity).
- CD1 04 return filling information → DC1, DC2 (volume, amount), DC3.
- CD101 n → DC101 of nozzle n: volume total, amount total, fillings (the
  pump-wide transaction counter, as the simulator has no per-nozzle one).
  For a nozzle the pump does not have: DC1 only.

What the pump shows (a DART fuelling point uses one nozzle at a time):

1. the oldest pending sale: DC1 5 filling completed, its nozzle (out if
   that nozzle is busy again), its price, final volume and amount, and for
   CD101 of its nozzle the totals AFTER it (``SimSale.totalizer_*_end``);
2. else a fuelling nozzle: DC1 4 filling, out, the live volume and amount;
   a lifted one: DC1 2 authorised, out, volume and amount 0;
3. else DC1 1 reset, the last nozzle used (nozzle 1 at first), in.

Pending sales go before a busy nozzle: the simulator queues fills that a
real pump would not (it holds one completed fill until the next starts).
Models driven with several nozzles busy at once show the first one only.

Delivery: a sale is taken (:meth:`PumpModel.take`) once the master has
acknowledged a reply carrying its DC2 and, in that reply or a later one, its
DC101 — the read is the handshake, as DART has no confirmation
(protocols/dart/driver.py, which asks both in one frame).

Ground truth: DART carries no transaction number; the collector's order_no
is the volume totalizer after the sale as a raw BCD integer, i.e.
:func:`order_no_of` (``str(sale.totalizer_volume_end)`` at 2 decimals).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from hil.dispenser.model import PumpModel, SimSale
from hil.dispenser.responder import answering
from protocols.bcd import bcd_decode
from protocols.dart.framer import SEQ_MASK, Frame, FrameDecoder, Transaction, encode_frame
from protocols.dart.messages import (
    DCC_RETURN_FILLING_INFO,
    DCC_RETURN_STATUS,
    MAX_NOZZLE,
    PRICE_BCD,
    ST_AUTHORISED,
    ST_FILLING,
    ST_FILLING_COMPLETED,
    ST_RESET,
    Cd1,
    Cd101,
    Dc1,
    Dc2,
    Dc3,
    Dc5,
    Dc9,
    Dc101,
    Request,
    build,
    parse_request,
)
from protocols.dart.monitor import CD1_COMMANDS, POS_TRANSACTIONS
from protocols.dart.pumpstate import ADR_OFFSET, MAX_PUMP, MIN_PUMP

#: Read-only requests a simulated pump answers (all the collector may send, D20).
READ_DCC = frozenset({DCC_RETURN_STATUS, DCC_RETURN_FILLING_INFO})

#: LNG a POS command must have to be accepted (the sources of
#: protocols/dart/monitor.py: presets are 4 BCD bytes, a price 3 per nozzle).
PRESET_LNG = 4
TRANS_CD2, TRANS_CD3, TRANS_CD4, TRANS_CD5 = 0x02, 0x03, 0x04, 0x05


def write_name(trans: int, data: bytes) -> str | None:
    """The name of a POS command this pump accepts (module doc); None: refused."""
    if trans == 0x01:
        dcc = data[0] if len(data) == 1 else None
        return CD1_COMMANDS.get(dcc) if dcc is not None and dcc not in READ_DCC else None
    fits = {
        TRANS_CD2: 1 <= len(data) <= MAX_NOZZLE and all(1 <= n <= MAX_NOZZLE for n in data),
        TRANS_CD3: len(data) == PRESET_LNG and bcd_decode(data) is not None,
        TRANS_CD4: len(data) == PRESET_LNG and bcd_decode(data) is not None,
        TRANS_CD5: 0 < len(data) <= PRICE_BCD * MAX_NOZZLE and len(data) % PRICE_BCD == 0,
    }
    return POS_TRANSACTIONS[trans] if fits.get(trans, False) else None


def order_no_of(sale: SimSale) -> str:
    """The order_no the collector reports for ``sale`` (volume totalizer, raw BCD)."""
    return str(sale.totalizer_volume_end)


@dataclass(frozen=True)
class _View:
    """What the pump shows now (see the module doc), raw units."""

    status: int
    nozzle: int
    out: bool
    price: int
    volume: int
    amount: int
    sale: SimSale | None


@dataclass(frozen=True)
class _Reply:
    frame: Frame
    dc2_of: int | None  # txn_no of the pending sale whose DC2 it carries
    dc101_of: int | None  # txn_no of the pending sale whose DC101 it carries


@dataclass
class _Link:
    pump: PumpModel
    seq: int = 0  # seq of our next new DATA frame
    command: tuple[Request, ...] | None = None  # to answer at the next POLL
    unacked: _Reply | None = None
    dc2_read: int | None = None  # txn_no whose DC2 the master acknowledged
    last_nozzle: int = 1


class DartResponder:
    """Every simulated DART pump on one bus (see the module doc)."""

    protocol: ClassVar[str] = "dart"
    #: DC101 carries the amount totalizer: the truth lines include it.
    AMOUNT_TOTALIZER: ClassVar[bool] = True

    def truth(self, sale: SimSale, port_number: int) -> dict[str, Any]:
        """DART carries no transaction number: the order number the collector
        reports is the volume totalizer (the grade comes from the port's config)."""
        line = sale.truth(port_number, amount_totalizer=self.AMOUNT_TOTALIZER)
        line["order_no"] = order_no_of(sale)
        return line

    def __init__(self, pumps: Sequence[PumpModel]) -> None:
        self.links: dict[int, _Link] = {}
        for pump in pumps:
            adr = ADR_OFFSET + pump.address
            if not MIN_PUMP <= pump.address <= MAX_PUMP or adr in self.links:
                raise ValueError(f"pump address {pump.address}: not 1..32 or used twice")
            if not 1 <= len(pump.nozzles) <= MAX_NOZZLE:
                raise ValueError(f"a DART pump has 1..{MAX_NOZZLE} nozzles")
            self.links[adr] = _Link(pump)
        self.decoder = FrameDecoder()
        self.refused = 0  # DATA frames with a transaction we do not implement
        self.writes: dict[str, int] = {}  # POS commands accepted, by name (D20 witness)

    def receive_data(self, data: bytes, now: float) -> bytes:
        out = bytearray()
        for item in self.decoder.receive_data(data):
            if not isinstance(item, Frame):
                continue
            link = self.links.get(item.adr)
            if link is None or not answering(link.pump, now):
                continue
            reply = self.answer(link, item, now)
            if reply is not None:
                out += encode_frame(reply)
        return bytes(out)

    def answer(self, link: _Link, frame: Frame, now: float) -> Frame | None:
        """The frame ``link``'s pump answers ``frame`` with; None: silence."""
        adr, kind, unacked = frame.adr, frame.kind, link.unacked
        if kind == "data":
            reads: list[Request] = []
            writes: list[tuple[str, int, bytes]] = []
            for trans, data in frame.transactions:
                request, name = parse_request(trans, data), write_name(trans, data)
                if name is not None:
                    writes.append((name, trans, data))
                elif self._readable(request):
                    assert isinstance(request, Cd1 | Cd101)
                    reads.append(request)
                else:
                    self.refused += 1
                    return Frame.nak(adr, frame.seq)
            for name, trans, data in writes:
                self.writes[name] = self.writes.get(name, 0) + 1
                if trans == TRANS_CD5:
                    self.set_prices(link.pump, data)
            link.command = tuple(reads) or None
            link.unacked = None
            return Frame.ack(adr, frame.seq)
        if kind == "poll":
            if unacked is not None:
                return unacked.frame
            if link.command is None:
                return Frame.eot(adr, link.seq)
            reply = self.render(link, link.command, now)
            link.command, link.unacked = None, reply
            link.seq = (link.seq + 1) & SEQ_MASK
            return reply.frame
        if kind == "ack" and unacked is not None and frame.seq == unacked.frame.seq:
            link.unacked = None
            self.delivered(link, unacked)
        elif kind == "nak" and unacked is not None:
            again = Frame.data(adr, 0, unacked.frame.transactions)
            link.unacked, link.seq = _Reply(again, unacked.dc2_of, unacked.dc101_of), 1
            return again
        return None

    @staticmethod
    def set_prices(pump: PumpModel, data: bytes) -> None:
        """A CD5 price list: price i (3 BCD bytes) for nozzle i, applied while it is idle."""
        for i in range(0, len(data), PRICE_BCD):
            price = bcd_decode(data[i : i + PRICE_BCD])
            nzn = i // PRICE_BCD + 1
            if price and nzn <= len(pump.nozzles) and not pump.nozzle(nzn).busy:
                pump.nozzle(nzn).price = price

    @staticmethod
    def _readable(request: object) -> bool:
        if isinstance(request, Cd1):
            return request.dcc in READ_DCC
        return isinstance(request, Cd101)

    @staticmethod
    def delivered(link: _Link, reply: _Reply) -> None:
        """The master acknowledged ``reply``: after DC2 then DC101, the sale is taken."""
        pending = link.pump.pending
        head = pending[0].txn_no if pending else None
        if reply.dc2_of is not None and reply.dc2_of == head:
            link.dc2_read = head
        if reply.dc101_of is not None and reply.dc101_of == head == link.dc2_read:
            link.pump.take(head)
            link.dc2_read = None

    def view(self, link: _Link, now: float) -> _View:
        pump = link.pump
        if pump.pending:
            sale = pump.pending[0]
            link.last_nozzle = sale.nozzle
            out = pump.nozzle(sale.nozzle).busy
            status = ST_FILLING_COMPLETED
            return _View(status, sale.nozzle, out, sale.price, sale.volume, sale.amount, sale)
        fuelling = [n for n in pump.nozzles if n.state == "fuelling"]
        lifted = [n for n in pump.nozzles if n.state == "lifted"]
        if fuelling:
            n = fuelling[0]
            link.last_nozzle = n.nzn
            volume, amount = n.live_volume(now), n.live_amount(now)
            return _View(ST_FILLING, n.nzn, True, n.price, volume, amount, None)
        if lifted:
            n = lifted[0]
            link.last_nozzle = n.nzn
            return _View(ST_AUTHORISED, n.nzn, True, n.price, 0, 0, None)
        n = pump.nozzle(link.last_nozzle)
        return _View(ST_RESET, n.nzn, False, n.price, 0, 0, None)

    def render(self, link: _Link, command: tuple[Request, ...], now: float) -> _Reply:
        """Our DATA frame answering ``command`` (module doc), with what it delivers."""
        pump, view = link.pump, self.view(link, now)
        sale = view.sale
        status, nozio = build(Dc1(view.status)), build(Dc3(view.price, view.nozzle, view.out))
        items: list[Transaction] = []
        dc2_of = dc101_of = None
        for request in command:
            if isinstance(request, Cd1) and request.dcc == DCC_RETURN_STATUS:
                items += [status, nozio, *(build(Dc5(c)) for c in sorted(pump.alarms))]
                items.append(build(Dc9(pump.identity)))
            elif isinstance(request, Cd1):
                items += [status, build(Dc2(view.volume, view.amount)), nozio]
                dc2_of = sale.txn_no if sale is not None else None
            elif not 1 <= request.counter <= len(pump.nozzles):
                items.append(status)
            elif sale is not None and sale.nozzle == request.counter:
                totals = (sale.totalizer_volume_end, sale.totalizer_amount_end, sale.txn_no)
                items.append(build(Dc101(request.counter, *totals)))
                dc101_of = sale.txn_no
            else:
                nozzle = pump.nozzle(request.counter)
                totals = (nozzle.totalizer_volume, nozzle.totalizer_amount, pump.next_txn - 1)
                items.append(build(Dc101(request.counter, *totals)))
        frame = Frame.data(ADR_OFFSET + pump.address, link.seq, items)
        return _Reply(frame, dc2_of, dc101_of)
