"""Changkong Uninfo line watched passively (port modes ``relay`` and ``listen``), sans-IO.

The station's controller (an FCC such as ``fangym0335/first
src/lischn011.c``, or a POS) is the master; the collector only watches.
Bytes in → events out, nothing ever out: a monitor has no request to build,
so it cannot write to a pump at all (SPEC D19, D20).

Directions (a two-wire current loop: one pair, both directions):

- :meth:`UninfoMonitor.receive_request` — bytes the controller sent (relay:
  its side): request bytes and D blocks
  (:class:`~protocols.uninfo.framer.RequestReader`). Each request opens the
  window of its reply on the pump's side and closes the one before (held
  bytes of a reply that did not end are reported ``truncated``).
- :meth:`UninfoMonitor.receive_response` — bytes the pump side carried
  (relay: read from the dispenser; with ``echo`` the loop's copy of each
  request comes first and is skipped).
- :meth:`UninfoMonitor.receive_bus` — the loop itself (``listen``): a request
  byte's high nibble is a command (7..D, or FE), a status reply's a state
  (0..6), so a request is told from a status; a data reply follows the
  request that fixes its length and checks
  (:class:`~protocols.uninfo.framer.BusReader`, docs/protocols/uninfo.md).

Pump replies are read with the poll driver's
:class:`~protocols.uninfo.reading.FuellingPoint`: the same NozzleStatus,
Totals and Sale — same ``key`` — so the store keeps a record the controller
and we both read once. A sale: a record (``C``) the controller read, paired
with a totals reply (``B``) of that pump right next to it — no other reply
of the pump, no reply that failed its checks, no fill between them — in
either order (the FCC reads the totals and at once the record, ``DoEot``,
``:1128-1180``; a record read first waits for the totals right after it,
one per pump, else it is dropped: ``records_unpaired``). A looser pairing
would let a record meet totals from before its fill when the replies that
told of the fill were garbled. Its nozzle and key as in
:mod:`protocols.uninfo.reading`, against the totals the monitor saw before
the fill (a monitor started between two fills takes the first totals it
sees then). A record whose totals did not move since the last one
accounted is not new (``records_again``); one key is reported once.

Requests that change a pump are counted by name, ``pos_cmd_authorise``,
``pos_cmd_stop``, ``pos_cmd_price``, ``pos_cmd_preset`` (a D block by its
function, ``:759-762``, ``:960-963``), and a D block's answer in ``acks``.

Link state: online from a pump's first reply; offline after
``offline_after`` requests to it in a row with no reply (seen only where the
requests are: relay, or the loop itself). Pumps not in ``addresses`` are
counted in ``foreign_addresses``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import ClassVar

from protocols.events import Event, ProtocolError, Sale
from protocols.passive import OFFLINE_AFTER, PassiveMonitor, Tap, Wire, walk
from protocols.uninfo.framer import BusReader, Reply, ReplyReader, Request, RequestReader
from protocols.uninfo.messages import (
    CMD_DATA,
    CMD_DISPLAY,
    CMD_SALE,
    CMD_STATUS,
    FN_PRESET,
    FN_PRICE,
    MAX_ADDRESS,
    MIN_ADDRESS,
    READ_COMMANDS,
    REQUEST_NAMES,
    Display,
    SaleRecord,
)
from protocols.uninfo.reading import FuellingPoint, Scale, nozzle_grades

_BLOCK_NAMES = {FN_PRICE: "price", FN_PRESET: "preset"}


class UninfoMonitor(PassiveMonitor, Tap):
    """Passive interpreter of one Uninfo loop (relay or listen); see the module doc."""

    name: ClassVar[str] = "uninfo"
    #: Its pumps' replies are counted ``replies``.
    _SHARED = ("requests", "replies", "foreign")
    _COUNTERS = ("records_again", "records_unpaired", "acks")

    def __init__(
        self,
        addresses: Sequence[int],
        *,
        echo: bool = False,
        offline_after: int = OFFLINE_AFTER,
        volume_decimals: int = 2,
        amount_decimals: int = 2,
        price_decimals: int = 2,
        grades: Mapping[int, str] | Mapping[str, str] | None = None,
        clock: Callable[[], datetime] = datetime.now,
    ) -> None:
        if not addresses or not all(MIN_ADDRESS <= a <= MAX_ADDRESS for a in addresses):
            raise ValueError(f"Uninfo addresses are {MIN_ADDRESS}..{MAX_ADDRESS}")
        super().__init__(addresses, offline_after=offline_after, clock=clock)
        scale = Scale(volume_decimals, amount_decimals, price_decimals)
        by_nozzle = nozzle_grades(grades)
        self._points = {
            a: FuellingPoint(a, scale=scale, grades=by_nozzle, clock=clock) for a in addresses
        }
        self._responses = ReplyReader(echo=echo)
        self._wire(
            Wire(RequestReader(), self._on_relayed),
            Wire(self._responses, self._on_reply, spoilt=self._spoilt),
            Wire(BusReader(echo=echo), self._on_bus, spoilt=self._spoilt),
        )
        #: Pump → a record seen before the totals it pairs with.
        self._waiting: dict[int, Reply] = {}
        #: Pump → its last good reply when it was totals or a record with no
        #: other reply of it, nor a failed one, since (module doc).
        self._chain: dict[int, str] = {}
        self._last_key: dict[int, str] = {}

    # ------------------------------------------------------------ each side

    def _on_relayed(self, request: Request) -> list[Event]:
        """A request on the controller's side: it closes the window of the
        reply before (held bytes: ``truncated``) and opens its own."""
        held = walk(self._responses.expect(request), self._on_reply, spoilt=self._spoilt)
        return held + self._on_request(request)

    def _on_bus(self, item: Request | Reply) -> list[Event]:
        return self._on_request(item) if isinstance(item, Request) else self._on_reply(item)

    def _on_request(self, request: Request) -> list[Event]:
        self._count("requests")
        command, address = request.command, request.address
        if command not in READ_COMMANDS:
            name = REQUEST_NAMES[command]
            if request.block is not None:
                name = _BLOCK_NAMES.get(request.block.function, name)
            self._command(name)
        if address is None or not self._known(address) or request.kind == "none":
            return []
        return self._asking(address)

    def _offline(self, address: int) -> None:
        self._points[address].forget()
        self._waiting.pop(address, None)

    def _spoilt(self, error: ProtocolError) -> None:
        """A reply that failed breaks its pump's pairing (every pump's when
        the error names none): a record never pairs across it."""
        for address in self._points if error.address is None else [error.address]:
            self._break(address)

    def _break(self, address: int) -> None:
        self._chain.pop(address, None)
        if self._waiting.pop(address, None) is not None:
            self._counts["records_unpaired"] += 1

    def _on_reply(self, reply: Reply) -> list[Event]:
        address = reply.request.address
        if address is None or not self._known(address):
            return []
        self._count("replies")
        events = self._answered(address)
        point = self._points[address]
        value = reply.value
        command = reply.request.command
        if command in (CMD_STATUS, CMD_DISPLAY, CMD_DATA):
            self._break(address)
        if command == CMD_STATUS:
            assert isinstance(value, int)
            return events + point.status(value)
        if command == CMD_DISPLAY:
            assert isinstance(value, Display)
            return events + point.display(value)
        if command == CMD_DATA:
            self._counts["acks"] += value == 0
            return events
        if command == CMD_SALE:
            if self._chain.get(address) == "totals" and point.pairable:
                return events + self._decide(point, reply)
            self._waiting[address] = reply
            self._chain[address] = "record"
            return events
        assert isinstance(value, tuple)
        if point.busy_since_totals and point.before is None and point.after is not None:
            # The first totals this monitor saw stand before this fill (module doc).
            point.account()
        events += point.totals(value)
        waiting = self._waiting.pop(address, None)
        paired = waiting is not None and self._chain.get(address) == "record"
        self._chain[address] = "totals"
        if paired:
            assert waiting is not None
            events += self._decide(point, waiting)
        elif waiting is not None:
            self._counts["records_unpaired"] += 1
        return events

    def _decide(self, point: FuellingPoint, reply: Reply) -> list[Event]:
        record = reply.value
        assert isinstance(record, SaleRecord)
        if not point.moved:
            self._count("records_again")
            return []
        found = point.sale(record, reply.words)
        point.account()
        if not isinstance(found, Sale):
            return [] if found is None else [found]
        if self._last_key.get(point.address) == found.key:
            return []
        self._last_key[point.address] = found.key
        return [found]
