"""Simulated Lanfeng pumps (温州蓝峰): the wire half of a simulated dispenser.

Renders :class:`~hil.dispenser.model.PumpModel` objects in the frames of
:mod:`protocols.lanfeng` (framer and messages docs: layouts and sources).
One nozzle per pump; pump ``address`` 1..15 answers frames whose ``[0]``
is its address. Every read-only query is answered at once, anything else
is not (the simulator implements no control command). ``[1]`` of a reply
is 00; a totals reply echoes its command at ``[2]`` (unverified: nothing
reads it).

- ``B8``: while a finished sale is shown, its price, amount and volume with
  the state idle; else the nozzle's state (lifted, fuelling with the fill's
  running values) or idle with the last collected sale. The state has no
  host-control bit (40): nobody sent A0 (a pump under a poll-mode
  collector stays as it is).
- ``AD`` / ``AC``: the volume / amount totals right after the sale shown
  (``SimSale.totalizer_*_end``); with no sale shown, the nozzle's present
  totals.

Collection. No acknowledgement exists: a real pump shows only its last
sale, and a fill started before the master read it overwrites it. So that
tests can count every sale, the simulator queues finished sales and shows
the oldest until it is *collected*: at the first status poll (a B8 that
does not follow an AC, i.e. not the last step of a reading: our driver
asks a reading's steps consecutively, a spoilt reply restarts it from AD)
after its AD, AC and B8 were all answered. While sales are queued the
state says idle.

Sale fields as the collector reports them: ``order_no`` = the volume total
after the sale, 12 digits (:func:`order_no_of`); ``grade`` ""; ``ended_at``
is when the collector first saw the end.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from hil.dispenser.model import PumpModel, SimSale
from hil.dispenser.responder import answering
from protocols.lanfeng.framer import MAX_PUMP, MIN_PUMP, Frame, FrameDecoder
from protocols.lanfeng.messages import (
    CMD_AMOUNT_TOTAL,
    CMD_STATUS,
    CMD_VOLUME_TOTAL,
    PRICE_WIDTH,
    READ_COMMANDS,
    SALE_WIDTH,
    TOTAL_DIGITS,
    Reply,
    StatusShown,
    TotalShown,
    build_reply,
    request_command,
)

#: States without the host-control bit (messages doc).
IDLE, LIFTED, FUELLING = 0x01, 0x81, 0x82


def order_no_of(sale: SimSale) -> str:
    """The order_no the collector reports for ``sale``: its volume total, 12 digits."""
    return f"{sale.totalizer_volume_end % 10**TOTAL_DIGITS:0{TOTAL_DIGITS}d}"


class LanfengResponder:
    """Every simulated pump on one Lanfeng RS-422 line."""

    protocol: ClassVar[str] = "lanfeng"
    #: The AC reply carries the amount totalizer and the driver reports it.
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
            if not MIN_PUMP <= pump.address <= MAX_PUMP:
                raise ValueError(f"Lanfeng pump addresses are {MIN_PUMP}..{MAX_PUMP}")
            if len(pump.nozzles) != 1:
                raise ValueError(f"pump {pump.address}: a Lanfeng pump has one nozzle")
            self._pumps[pump.address] = pump
        self._decoder = FrameDecoder()
        #: Reads answered for the shown sale with this txn_no, per pump.
        self._answered: dict[int, tuple[int, set[int]]] = {}
        #: The last collected sale, and the last command asked, per pump.
        self._last: dict[int, SimSale] = {}
        self._asked: dict[int, int] = {}

    def receive_data(self, data: bytes, now: float) -> bytes:
        out = bytearray()
        for item in self._decoder.receive_data(data):
            if not isinstance(item, Frame):
                continue
            command = request_command(item)
            pump = self._pumps.get(item.raw[0])
            if command not in READ_COMMANDS or pump is None or not answering(pump, now):
                continue  # noise, a command that changes the pump (not implemented)
            assert command is not None
            reply = self._reply(pump, command, now)
            self._asked[pump.address] = command
            out += build_reply(pump.address, reply)
        return bytes(out)

    # ------------------------------------------------------------ internals

    def _reply(self, pump: PumpModel, command: int, now: float) -> Reply:
        if command == CMD_STATUS and self._asked.get(pump.address) != CMD_AMOUNT_TOTAL:
            self._collect(pump)  # a status poll, not the last step of a reading
        sale = self._shown(pump, command)
        nozzle = pump.nozzle(1)
        if command in (CMD_VOLUME_TOTAL, CMD_AMOUNT_TOTAL):
            shown = sale is not None and pump.pending
            if command == CMD_VOLUME_TOTAL:
                total = sale.totalizer_volume_end if shown and sale else nozzle.totalizer_volume
            else:
                total = sale.totalizer_amount_end if shown and sale else nozzle.totalizer_amount
            return TotalShown(command, total % 10**TOTAL_DIGITS)
        top = 10 ** (2 * SALE_WIDTH)
        price_top = 10 ** (2 * PRICE_WIDTH)
        if not pump.pending and nozzle.busy:
            state = FUELLING if nozzle.state == "fuelling" else LIFTED
            volume, amount = nozzle.live_volume(now), nozzle.live_amount(now)
            return StatusShown(nozzle.price % price_top, amount % top, volume % top, state)
        if sale is None:
            return StatusShown(nozzle.price % price_top, 0, 0, IDLE)
        return StatusShown(sale.price % price_top, sale.amount % top, sale.volume % top, IDLE)

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
        if txn_no == head.txn_no and answered >= READ_COMMANDS:
            pump.take(head.txn_no)
            self._last[pump.address] = head
            del self._answered[pump.address]
