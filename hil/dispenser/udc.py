"""Simulated 恒山 UDC pumps (protocols/udc/messages.py) over :class:`PumpModel` state.

:class:`UdcResponder` is one current loop: several pumps, each answering
only requests with its wire number (address − 1), none while powered off.
Every reply is double talk (each byte, then its complement). What each
request gets:

- F·A2 state: 20 idle; A0 a nozzle lifted, 90 once the controller
  authorised it (F·A5); F0 fuelling, D0 in the last tenth of the fill
  (small valve).
- F·A1 display: the running fill (price, live amount and volume, state),
  zeros while a nozzle is lifted, else the last sale — shown until the next
  lift, also after it was acknowledged.
- F·A9 m: the named nozzle's volume and amount totals.
- F·AC: every nozzle's price (zero for the hoses it lacks), then the
  number of grades. F·A0: the pump identity byte ``01``.
- C·A1: the lifted nozzle (0 when none).
- C·A2 acknowledge the hang-up: ``B0``; the pending sale is taken
  (:meth:`PumpModel.take`). Until then the pump starts no fill: it ignores
  the next lift, as the source says a UDC pump does (the controller "masks
  the lift" until the transaction is handled, lischn019.c:546-565) —
  :attr:`PumpModel.one_fill_at_a_time`.
- F·A5 authorise: a lifted nozzle goes to 90 and fuel may flow — not
  before: the controller authorises every fill
  (:attr:`PumpModel.authorisation_required`); answered with the state.
  F·A3 stop, F·A6 write display and C·A3 write prices are answered (state,
  state, ``B0``) and change nothing.
- anything else: silence.

The sale the collector can report: no transaction number exists, so
``order_no`` is the nozzle's volume total after the sale, ten digits (what
the monitor reports when the controller read the totals, as the POS
simulator does); the grade is the nozzle's (the port maps grades by
nozzle); ``ended_at`` is when the monitor saw the end, not the pump's clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from hil.dispenser.model import NozzleModel, PumpModel, SimSale
from hil.dispenser.responder import answering
from protocols.udc.framer import Request, RequestDecoder
from protocols.udc.messages import (
    ACCEPTED,
    ACK_HANGUP,
    AUTHORISE,
    PRICE_NOZZLES,
    READ_DISPLAY,
    READ_ID,
    READ_NOZZLE,
    READ_PRICES,
    READ_STATUS,
    READ_TOTALS,
    ST_AUTHORISED,
    ST_FUELLING_FAST,
    ST_FUELLING_SLOW,
    ST_IDLE,
    ST_LIFTED_CASH,
    STOP,
    WRITE_DISPLAY,
    WRITE_PRICES,
    Display,
    NozzleTotals,
    build_display,
    build_prices,
    build_totals,
    double,
    nozzle_of_selector,
)

#: Fuelling points 1..16: the wire number is address − 1 in four bits.
MAX_ADDRESS = 16

#: The pump identity byte F·A0 answers (the source only compares two reads).
PUMP_ID = 0x01

#: Fraction of a fill after which the small valve is open (state D0).
SLOW_FLOW_FROM = 0.9


def order_no_of(sale: SimSale) -> str:
    """The order_no the collector reports for ``sale``: its volume total, ten digits."""
    return f"{sale.totalizer_volume_end:010d}"


class UdcResponder:
    """Every simulated UDC pump on one loop (see the module doc)."""

    protocol: ClassVar[str] = "udc"
    #: F·A9 carries the amount total too.
    AMOUNT_TOTALIZER: ClassVar[bool] = True

    def __init__(self, pumps: Sequence[PumpModel]) -> None:
        self.pumps: dict[int, PumpModel] = {}
        for pump in pumps:
            if not 1 <= pump.address <= MAX_ADDRESS or pump.address in self.pumps:
                raise ValueError(f"pump address {pump.address}: not 1..16 or used twice")
            if not 1 <= len(pump.nozzles) <= PRICE_NOZZLES:
                raise ValueError(f"a UDC pump has 1..{PRICE_NOZZLES} nozzles")
            pump.one_fill_at_a_time = pump.authorisation_required = True
            self.pumps[pump.address] = pump
        self.decoder = RequestDecoder()
        self.shown: dict[int, SimSale] = {}  # the last sale on each display
        self.ignored = 0

    def truth(self, sale: SimSale, port_number: int) -> dict[str, Any]:
        return {
            **sale.truth(port_number, amount_totalizer=True),
            "order_no": order_no_of(sale),
        }

    def receive_data(self, data: bytes, now: float) -> bytes:
        out = bytearray()
        for item in self.decoder.receive_data(data):
            if not isinstance(item, Request):
                continue
            pump = self.pumps.get(item.address)
            if pump is None or not answering(pump, now):
                continue
            reply = self.answer(pump, item, now)
            if reply is None:
                self.ignored += 1
                continue
            out += double(reply)
        return bytes(out)

    def answer(self, pump: PumpModel, request: Request, now: float) -> bytes | None:
        """The data ``pump`` answers ``request`` with; None: it stays silent."""
        if pump.pending:
            self.shown[pump.address] = pump.pending[-1]
        busy = next((n for n in pump.nozzles if n.busy), None)
        command = request.command
        if command in (READ_STATUS, STOP, WRITE_DISPLAY):
            return bytes((self.state(pump, busy, now),))
        if command == READ_DISPLAY:
            return build_display(self.display(pump, busy, now))
        if command == READ_TOTALS:
            nzn = nozzle_of_selector(request.data[0])
            if nzn is None or not 1 <= nzn <= len(pump.nozzles):
                return None
            nozzle = pump.nozzle(nzn)
            return build_totals(NozzleTotals(nozzle.totalizer_volume, nozzle.totalizer_amount))
        if command == READ_PRICES:
            prices = [n.price for n in pump.nozzles]
            prices += [0] * (PRICE_NOZZLES - len(prices))
            return build_prices(prices, len(pump.nozzles))
        if command == READ_ID:
            return bytes((PUMP_ID,))
        if command == READ_NOZZLE:
            return bytes((0 if busy is None else busy.nzn,))
        if command == ACK_HANGUP:
            if pump.pending:
                pump.take(pump.pending[0].txn_no)
            return bytes((ACCEPTED,))
        if command == AUTHORISE:
            if busy is not None:
                pump.authorise(busy)
            return bytes((self.state(pump, busy, now),))
        if command == WRITE_PRICES:
            return bytes((ACCEPTED,))
        return None

    def state(self, pump: PumpModel, busy: NozzleModel | None, now: float) -> int:
        if busy is None:
            return ST_IDLE
        if busy.state == "lifted":
            return ST_AUTHORISED if busy.nzn in pump.authorised else ST_LIFTED_CASH
        if busy.live_volume(now) >= SLOW_FLOW_FROM * busy.target:
            return ST_FUELLING_SLOW
        return ST_FUELLING_FAST

    def display(self, pump: PumpModel, busy: NozzleModel | None, now: float) -> Display:
        state = self.state(pump, busy, now)
        if busy is not None:
            return Display(busy.price, busy.live_amount(now), busy.live_volume(now), state)
        sale = self.shown.get(pump.address)
        if sale is None:
            return Display(0, 0, 0, state)
        return Display(sale.price, sale.amount, sale.volume, state)
