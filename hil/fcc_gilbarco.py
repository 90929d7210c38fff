"""A Gilbarco master that polls the way the open FCC does, for relay / listen tests.

``fangym0335/first src/lischn001.c`` ``DoPolling`` (line 501 on): a status
poll per pump; on 7 (call) it authorises (``1p``, no reply; ``DoCall`` with
automatic authorisation); on 9 it reads the running display (``6p``,
``DoBusy``); on an end (A / B, or 6 after a fill) it reads the totals
(``5p``) and, when a totalizer moved, the transaction (``4p``) once
(``DoEot``, lines 1400, 1474-1477). At start it reads every pump's totals
(``InitPumpTotal``). Unlike our poller it reads each reply once and sends a
command that changes the pump — it is the station's system, allowed to.

One deviation, for the simulator: on A (PEOT) it always reads the
transaction after the totals. The simulated pump may queue a second sale
on a nozzle whose totals did not move between two renderings; the FCC,
which reads by the lifted nozzle, never meets that.

Same surface as a poll driver (``next_request`` / ``receive_data`` /
``response_timeout`` / ``awaiting_response`` / ``sale_committed``), so
``python -m hil.pos --master fcc`` runs it in place of our poller.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from protocols.events import Event, Sale
from protocols.gilbarco.codes import (
    CMD_AUTHORISE,
    CMD_RUNNING,
    CMD_STATUS,
    CMD_TOTALS,
    CMD_TRANSACTION,
    STATUS_BUSY,
    STATUS_CALL,
    STATUS_FEOT,
    STATUS_OFF,
    STATUS_PEOT,
    command_byte,
    nibble_pump,
)
from protocols.gilbarco.line import DataReply, LineReader, StatusReply
from protocols.gilbarco.messages import (
    Decimals,
    SaleParts,
    TotalsData,
    TransactionData,
    parse_totals,
    parse_transaction,
    sale_of,
)


@dataclass
class _Pump:
    address: int
    fuelled: bool = False
    authorised: bool = False
    totals: TotalsData | None = None  # the last totals read
    queue: deque[int] = field(default_factory=deque)  # commands owed after this poll


class GilbarcoFcc:
    """The FCC's polling, as a poll-driver-shaped master (module doc)."""

    name = "gilbarco-fcc"

    def __init__(self, addresses: Sequence[int]) -> None:
        self._pumps = {a: _Pump(a, queue=deque([CMD_TOTALS])) for a in addresses}
        self._order = tuple(self._pumps.values())
        self._turn = 0
        self._current: _Pump = self._order[0]
        self._reader = LineReader()
        self._awaiting = False
        self._dp = Decimals()

    @property
    def awaiting_response(self) -> bool:
        return self._awaiting

    def next_request(self) -> bytes:
        pump = self._current
        if not pump.queue:
            pump = self._current = self._order[self._turn]
            self._turn = (self._turn + 1) % len(self._order)
            pump.queue.append(CMD_STATUS)
        command = pump.queue.popleft()
        byte = command_byte(command, pump.address)
        self._reader.reset()
        self._reader.sent(byte)
        self._awaiting = True  # an authorise waits for its echo only
        return bytes([byte])

    def receive_data(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        for item in self._reader.receive(data, "pump"):
            if isinstance(item, StatusReply) and item.request is not None:
                self._on_status(self._pumps[item.pump], item.status)
            elif isinstance(item, DataReply) and item.request is not None:
                events += self._on_frame(self._pumps[nibble_pump(item.request)], item)
        if self._reader.pending is None and not self._reader.buffered:
            self._awaiting = False
        return events

    def response_timeout(self) -> list[Event]:
        self._reader.flush()
        self._awaiting = False
        self._current.queue.clear()  # the FCC gives up this pump's turn
        return []

    def sale_committed(self, sale: Sale) -> None:
        """Two-wire has no acknowledgement: nothing to confirm."""

    def _on_status(self, pump: _Pump, status: int) -> None:
        if status == STATUS_CALL and not pump.authorised:
            pump.authorised = True
            pump.queue.append(CMD_AUTHORISE)
        elif status == STATUS_BUSY:
            pump.fuelled, pump.authorised = True, False
            pump.queue.append(CMD_RUNNING)
        elif status in (STATUS_PEOT, STATUS_FEOT) or (status == STATUS_OFF and pump.fuelled):
            pump.queue.append(CMD_TOTALS)
            if status == STATUS_PEOT:
                pump.queue.append(CMD_TRANSACTION)

    def _on_frame(self, pump: _Pump, item: DataReply) -> list[Event]:
        assert item.request is not None
        if item.request >> 4 == CMD_TOTALS:
            totals = parse_totals(item.frame.body)
            if not isinstance(totals, TotalsData):
                pump.queue.clear()
                return []
            moved = pump.totals is not None and totals != pump.totals
            first = pump.totals is None
            pump.totals = totals
            if moved and CMD_TRANSACTION not in pump.queue and not first:
                pump.queue.append(CMD_TRANSACTION)
            return []
        txn = parse_transaction(item.frame.body)
        if not isinstance(txn, TransactionData) or pump.totals is None:
            return []
        grade = pump.totals.of(txn.grade)
        if grade is None:
            return []
        pump.fuelled = False
        sale = sale_of(pump.address, SaleParts(txn, grade), datetime.now(), self._dp)
        return [sale]
