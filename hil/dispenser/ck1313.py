"""Simulated CK1313 pumps (宝德尔 / 老长空 non-card): the wire half of a simulated dispenser.

Renders :class:`~hil.dispenser.model.PumpModel` objects in the frames of
:mod:`protocols.ck1313` (framer and messages docs: layouts and sources).
One nozzle per fuelling point (the protocol has no nozzle number); pump
``address`` 1..6 answers on nibble 0x9 + address. Every read-only query is
answered at once, anything else is not (the simulator implements no
control command):

- ``D5`` status ``[2]``: 80 idle while a finished sale is shown, else the
  nozzle's state (00 lifted, 20 fuelling, 80 idle); ``[3]`` = D5.
- ``D9``: the oldest finished sale not yet collected; else the fill in
  progress (0 until fuel flows); else the last collected sale; else zeros.
- ``C5``: the totals right after that sale (``SimSale.totalizer_*_end``);
  with no sale pending, the nozzle's present totals.
- ``B6``: that sale's price, else the nozzle's.

Collection. No acknowledgement exists: a real pump shows only its last
sale, and a fill started before the master read it overwrites it. So that
tests can count every sale, the simulator queues finished sales and shows
the oldest until it is *collected*: at the first status poll after its
C5, D9 and B6 were all answered. While sales are queued the status says
idle. Values roll over at their digit counts like a display.

Sale fields as the collector reports them: ``order_no`` = the volume total
after the sale, 10 digits (:func:`order_no_of`); ``grade`` "" (the wire
carries none); ``ended_at`` is when the collector first saw the end.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from hil.dispenser.model import PumpModel, SimSale
from hil.dispenser.responder import answering
from protocols.ck1313.framer import Frame, FrameDecoder, unit_of
from protocols.ck1313.messages import (
    CMD_PRICE,
    CMD_SALE,
    CMD_STATUS,
    CMD_TOTALS,
    PRICE_WIDTH,
    SALE_WIDTH,
    STATUS_FUELLING,
    STATUS_IDLE,
    STATUS_LIFTED,
    TOTAL_DIGITS,
    PriceShown,
    Reply,
    SaleShown,
    Status,
    TotalsShown,
    build_reply,
)

#: The reads that collect a shown sale once each is answered.
_COLLECTING = frozenset({CMD_TOTALS, CMD_SALE, CMD_PRICE})


def order_no_of(sale: SimSale) -> str:
    """The order_no the collector reports for ``sale``: its volume total, 10 digits."""
    return f"{sale.totalizer_volume_end % 10**TOTAL_DIGITS:0{TOTAL_DIGITS}d}"


class Ck1313Responder:
    """Every simulated fuelling point on one CK1313 loop."""

    protocol: ClassVar[str] = "ck1313"
    #: The C5 reply carries the amount totalizer and the driver reports it.
    AMOUNT_TOTALIZER: ClassVar[bool] = True

    def truth(self, sale: SimSale, port_number: int) -> dict[str, Any]:
        """No transaction number and no grade on the wire: the order number is
        the volume total, the grade empty."""
        line = sale.truth(port_number, amount_totalizer=self.AMOUNT_TOTALIZER)
        line["order_no"] = order_no_of(sale)
        line["grade"] = ""
        return line

    def __init__(self, pumps: Sequence[PumpModel]) -> None:
        self._pumps: dict[int, PumpModel] = {}
        for pump in pumps:
            unit = unit_of(pump.address)  # ValueError beyond 1..6
            if len(pump.nozzles) != 1:
                raise ValueError(f"pump {pump.address}: a CK1313 fuelling point has one nozzle")
            self._pumps[unit] = pump
        self._decoder = FrameDecoder()
        #: Reads answered for the shown sale with this txn_no, per pump.
        self._answered: dict[int, tuple[int, set[int]]] = {}
        #: The last collected sale, per pump.
        self._last: dict[int, SimSale] = {}

    def receive_data(self, data: bytes, now: float) -> bytes:
        out = bytearray()
        for item in self._decoder.receive_data(data):
            if not isinstance(item, Frame) or len(item.raw) != 4:
                continue  # noise, or a request with data (price, preset): not implemented
            pump = self._pumps.get(item.unit)
            if pump is None or not answering(pump, now):
                continue
            reply = self._reply(pump, item.command, now)
            if reply is not None:
                out += build_reply(pump.address, reply)
        return bytes(out)

    # ------------------------------------------------------------ internals

    def _reply(self, pump: PumpModel, command: int, now: float) -> Reply | None:
        if command == CMD_STATUS:
            self._collect(pump)
            return Status(self._status(pump))
        if command not in _COLLECTING:
            return None
        sale = self._shown(pump, command)
        nozzle = pump.nozzle(1)
        if command == CMD_TOTALS:
            if sale is not None and pump.pending:
                volume, amount = sale.totalizer_volume_end, sale.totalizer_amount_end
            else:
                volume, amount = nozzle.totalizer_volume, nozzle.totalizer_amount
            return TotalsShown(volume % 10**TOTAL_DIGITS, amount % 10**TOTAL_DIGITS)
        if command == CMD_PRICE:
            price = sale.price if sale is not None and pump.pending else nozzle.price
            return PriceShown(price % 10 ** (2 * PRICE_WIDTH))
        if not pump.pending and nozzle.busy:
            volume, amount = nozzle.live_volume(now), nozzle.live_amount(now)
        elif sale is not None:
            volume, amount = sale.volume, sale.amount
        else:
            volume = amount = 0
        top = 10 ** (2 * SALE_WIDTH)
        return SaleShown(volume % top, amount % top)

    def _shown(self, pump: PumpModel, command: int) -> SimSale | None:
        """The sale shown: the oldest pending one (noting what was read of it), else the last."""
        if not pump.pending:
            return self._last.get(pump.address)
        sale = pump.pending[0]
        txn_no, answered = self._answered.get(pump.address, (-1, set()))
        if txn_no != sale.txn_no:
            answered = set()
        self._answered[pump.address] = (sale.txn_no, answered | {command})
        return sale

    def _collect(self, pump: PumpModel) -> None:
        if not pump.pending:
            return
        head = pump.pending[0]
        txn_no, answered = self._answered.get(pump.address, (-1, set()))
        if txn_no == head.txn_no and answered >= _COLLECTING:
            pump.take(head.txn_no)
            self._last[pump.address] = head
            del self._answered[pump.address]

    def _status(self, pump: PumpModel) -> int:
        nozzle = pump.nozzle(1)
        if pump.pending or not nozzle.busy:
            return STATUS_IDLE
        return STATUS_FUELLING if nozzle.state == "fuelling" else STATUS_LIFTED
