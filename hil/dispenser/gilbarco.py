"""Simulated Gilbarco two-wire pumps: the wire half of a simulated dispenser.

Renders :class:`~hil.dispenser.model.PumpModel` objects in the layouts of
:mod:`protocols.gilbarco.messages` — the real ones (protocols.md §4 and the
FCC's driver, docs/protocols/gilbarco.md). Every pump answers the nibble of
its ``address`` (1..16, 16 as nibble 0).

The loop's echo. On a two-wire loop every byte the master sends comes back
to it before the reply (§4). The simulator sits on a pty, so it plays the
loop too: with ``echo`` (the default) it writes back each byte it received,
then that byte's reply. On a simulated loop that echoes by itself
(``python -m hil.bus --loop``) the simulator runs with ``--no-echo``.

Commands (high nibble; bytes from 0x70 up are not commands and get no reply):

- ``0p`` status: the oldest pending sale as A (end of transaction, not yet
  collected); else a busy nozzle as 9 (fuelling) or 7 (lifted, call); else
  the last collected sale as B until a nozzle is lifted; else 6 (off).
- ``4p`` transaction data of the sale shown: the oldest pending one, else
  the last collected one; silence when the pump never sold anything.
  ``FF F1 F8 B p−1 0 0 0 F6 g−1 F4 F7 price×4 F9 volume×6 FA money×6 FB lrc F0``.
- ``5p`` totals, one entry per nozzle (grade = nozzle number):
  ``F6 g−1 F9 volume×8 FA money×8 F4 price×4 F5 price×4``; the sale's
  nozzle shows the totals right after that sale (``SimSale.totalizer_*_end``),
  the others their present totals. Values roll over like a display.
- ``6p`` running display: the fuelling nozzle's money so far, six data words.
- anything else (1 authorise, 2 data next, 3 stop): silence — the
  simulator implements no control command.

Collection. Gilbarco has no acknowledgement, so the pump infers it: a
pending sale is collected (:meth:`PumpModel.take`) at the first status poll
after both its 4 and its 5 were answered — a master that lost a reply asks
4 / 5 again instead of polling status. The pump then shows its next pending
sale (A) or the collected one (B). A real pump holds one finished
transaction; only the simulator queues several.

Sale fields as the collector's Gilbarco driver reports them: ``nozzle`` =
``grade`` = ``SimSale.nozzle`` (``Sale.grade`` is ``str(nozzle)``, not
``SimSale.grade``); ``order_no`` = ``SimSale.totalizer_volume_end`` as 8
digits (not ``txn_no``, see :func:`order_no_of`); price, volume, amount and
both end totalizers in hundredths, as the model keeps them (decimals 2, the
driver's defaults); ``ended_at`` is when the driver first saw the end.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from hil.dispenser.model import PumpModel, SimSale
from hil.dispenser.responder import answering
from protocols.gilbarco.codes import (
    CMD_RUNNING,
    CMD_STATUS,
    CMD_TOTALS,
    CMD_TRANSACTION,
    COMMAND_LIMIT,
    NIBBLE,
    STATUS_BUSY,
    STATUS_CALL,
    STATUS_FEOT,
    STATUS_OFF,
    STATUS_PEOT,
    pump_nibble,
    status_byte,
)
from protocols.gilbarco.messages import (
    LEVEL_PRICE_DIGITS,
    MAX_GRADES,
    MONEY_DIGITS,
    PRICE_DIGITS,
    RUNNING_DIGITS,
    TOTAL_DIGITS,
    VOLUME_DIGITS,
    GradeTotals,
    TotalsData,
    TransactionData,
    encode_frame,
    running_words,
    totals_body,
    transaction_body,
)

#: A grade is one digit (grade − 1): nozzles 1..10 of a pump can be rendered.
MAX_NOZZLES = MAX_GRADES


def order_no_of(sale: SimSale) -> str:
    """The order_no the collector reports for ``sale``: its volume totalizer, 8 digits."""
    return f"{sale.totalizer_volume_end % 10**TOTAL_DIGITS:0{TOTAL_DIGITS}d}"


class GilbarcoResponder:
    """Every simulated pump on one Gilbarco loop, and the loop's echo."""

    protocol: ClassVar[str] = "gilbarco"
    #: The totals reply carries the money totalizer, and the driver reports it.
    AMOUNT_TOTALIZER: ClassVar[bool] = True

    def truth(self, sale: SimSale, port_number: int) -> dict[str, Any]:
        """Two-wire carries no transaction number and no grade code: the order
        number is the volume totalizer and the grade the hose number."""
        line = sale.truth(port_number, amount_totalizer=self.AMOUNT_TOTALIZER)
        line["order_no"] = order_no_of(sale)
        line["grade"] = str(sale.nozzle)
        return line

    def __init__(self, pumps: Sequence[PumpModel], *, echo: bool = True) -> None:
        self.echo = echo
        self._pumps: dict[int, PumpModel] = {}
        for pump in pumps:
            nibble = pump_nibble(pump.address)  # ValueError beyond 1..16
            if nibble in self._pumps:
                raise ValueError(f"two pumps answer address {pump.address}")
            if not 1 <= len(pump.nozzles) <= MAX_NOZZLES:
                raise ValueError(f"pump {pump.address}: 1..{MAX_NOZZLES} nozzles renderable")
            self._pumps[nibble] = pump
        #: Commands answered for the pending sale with this txn_no, per pump.
        self._answered: dict[int, tuple[int, set[int]]] = {}
        #: The last collected sale, per pump (answered to 4 / 5 when nothing pends).
        self._last: dict[int, SimSale] = {}
        #: Whether that sale is still shown as B (until a nozzle is lifted).
        self._showing: dict[int, bool] = {}

    def receive_data(self, data: bytes, now: float) -> bytes:
        out = bytearray()
        for byte in data:
            if self.echo:
                out.append(byte)  # the loop returns it, whoever listens
            pump = self._pumps.get(byte & NIBBLE)
            if byte >= COMMAND_LIMIT or pump is None or not answering(pump, now):
                continue
            command = byte >> 4
            if any(n.busy for n in pump.nozzles):
                self._showing[pump.address] = False  # a new transaction started
            if command == CMD_STATUS:
                out.append(status_byte(self._status(pump), pump.address))
            elif command in (CMD_TRANSACTION, CMD_TOTALS):
                out += self._data(pump, command)
            elif command == CMD_RUNNING:
                live = sum(n.live_amount(now) for n in pump.nozzles if n.state == "fuelling")
                out += running_words(live % 10**RUNNING_DIGITS)
        return bytes(out)

    # ------------------------------------------------------------ internals

    def _status(self, pump: PumpModel) -> int:
        address = pump.address
        if pump.pending:
            head = pump.pending[0]
            txn_no, answered = self._answered.get(address, (-1, set()))
            if txn_no == head.txn_no and answered >= {CMD_TRANSACTION, CMD_TOTALS}:
                pump.take(head.txn_no)
                self._last[address], self._showing[address] = head, True
                del self._answered[address]
        if pump.pending:
            return STATUS_PEOT
        if any(n.state == "fuelling" for n in pump.nozzles):
            return STATUS_BUSY
        if any(n.busy for n in pump.nozzles):
            return STATUS_CALL
        if self._showing.get(address) and address in self._last:
            return STATUS_FEOT
        return STATUS_OFF

    def _data(self, pump: PumpModel, command: int) -> bytes:
        address = pump.address
        sale: SimSale | None
        if pump.pending:
            sale = pump.pending[0]
            txn_no, answered = self._answered.get(address, (-1, set()))
            if txn_no != sale.txn_no:
                answered = set()
            self._answered[address] = (sale.txn_no, answered | {command})
        else:
            sale = self._last.get(address)
        if command == CMD_TOTALS:
            return encode_frame(totals_body(_totals(pump, sale)))
        if sale is None:
            return b""
        return encode_frame(transaction_body(_transaction(sale)))


def _transaction(sale: SimSale) -> TransactionData:
    return TransactionData(
        pump=sale.address,
        grade=sale.nozzle,
        price=sale.price % 10**PRICE_DIGITS,
        volume=sale.volume % 10**VOLUME_DIGITS,
        money=sale.amount % 10**MONEY_DIGITS,
    )


def _totals(pump: PumpModel, sale: SimSale | None) -> TotalsData:
    grades = []
    for nozzle in pump.nozzles:
        if sale is not None and nozzle.nzn == sale.nozzle:
            volume, money = sale.totalizer_volume_end, sale.totalizer_amount_end
        else:
            volume, money = nozzle.totalizer_volume, nozzle.totalizer_amount
        price = nozzle.price % 10**LEVEL_PRICE_DIGITS
        grades.append(
            GradeTotals(
                nozzle.nzn,
                volume % 10**TOTAL_DIGITS,
                money % 10**TOTAL_DIGITS,
                price_1=price,
                price_2=price,
            )
        )
    return TotalsData(tuple(grades))
