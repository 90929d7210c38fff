"""A UDC station controller for the POS simulator: the master the collector
never is (it authorises and acknowledges), modelled on the FCC's own loop
(``fangym0335/first src/lischn019.c:450-680``).

Each turn polls one pump's state (F·A2), round robin, and queues what the
FCC does in that state:

- at start, per pump: acknowledge (C·A2), read the display, the prices and
  then the totals of every nozzle the price read counts (019:2031-2136
  Wait4PumpReady, 1917-1929, 1976-2020 InitPumpTotal);
- lifted (A0/A1) and not yet authorised: read the nozzle (C·A1), then
  authorise it at its price, no preset (F·A5, 019:1462-1506); any other
  state of a fill whose nozzle is not read yet: read it (019:642-649);
- fuelling: read the display (the running fill, 019:1554-1600);
- idle after a fill: that nozzle's totals (every nozzle's when the nozzle
  read came too late), the display (the sale), the hang-up acknowledgement,
  the display again (019:544-575, 1216-1342);
- idle, every :data:`TOTALS_EVERY` turns of a pump: every nozzle's totals
  (a back office reading them; it gives a monitor its readings before the
  next fill);
- uninitialised (2F): write a zero display (019:1721-1724).

A reply that fails its complements, or none, repeats the request (up to
:data:`TRIES`, as the FCC's TRY_TIME, 019:42). Sales are what a
:class:`~protocols.udc.monitor.UdcMonitor` fed with this controller's own
traffic reports: the POS prints the same sales a tap on its line records.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from protocols.events import Event
from protocols.udc.messages import (
    ACK_HANGUP,
    ACTIVE_STATES,
    AUTHORISE,
    FUELLING_STATES,
    PRICE_NOZZLES,
    READ_DISPLAY,
    READ_NOZZLE,
    READ_PRICES,
    READ_STATUS,
    READ_TOTALS,
    ST_IDLE,
    ST_LIFTED_CASH,
    ST_LIFTED_CREDIT,
    ST_UNINITIALISED,
    WRITE_DISPLAY,
    Authorisation,
    Command,
    build_authorisation,
    build_request,
    lifted_nozzle,
    masked,
    parse_prices,
    reply_data_len,
    single,
    totals_selector,
)
from protocols.udc.monitor import UdcMonitor

#: Attempts of one request before the controller moves on (019:42 TRY_TIME).
TRIES = 5

#: Requests in a row without a reply before a pump is started again when it
#: answers (019:462-500, DoOffline / DoOnline).
OFFLINE_AFTER = 3

#: Turns of an idle pump between two reads of all its totals.
TOTALS_EVERY = 20

#: F·A5's slow-flow offset byte, as the FCC sends it (019:828).
SLOW_FLOW = 0x05


@dataclass
class _Step:
    address: int
    command: Command
    data: bytes = b""
    tries: int = 0


@dataclass
class _Pump:
    address: int
    started: bool = False
    open: bool = False  # a fill cycle is under way
    lifted: bool = False  # its last state was lifted (A0 / A1)
    authorised: bool = False
    nozzle: int = 0
    known: bool = False  # the cycle's nozzle was read (C·A1)
    turns: int = 0
    silent: int = 0  # requests in a row without a reply
    prices: list[int] = field(default_factory=list)
    grades: int = 0  # nozzles in use, from the price read (019:1929)


class Master:
    """Station controller for ``hil/pos.py`` (the PollDriver surface)."""

    name: ClassVar[str] = "udc"

    def __init__(self, addresses: Sequence[int], nozzles: int = PRICE_NOZZLES) -> None:
        self.pumps = {a: _Pump(a) for a in addresses}
        self.order = deque(addresses)
        self.nozzles = nozzles
        self.queue: deque[_Step] = deque()
        self.monitor = UdcMonitor(addresses, price_nozzles=nozzles)
        self.step: _Step | None = None
        self.want = 0
        self.buffer = bytearray()
        self.counters: dict[str, int] = {"requests": 0, "timeouts": 0, "retries": 0}

    @property
    def awaiting_response(self) -> bool:
        return self.step is not None

    def next_request(self) -> bytes | None:
        if not self.queue:
            address = self.order[0]
            self.order.rotate(-1)
            self._turn(self.pumps[address])
        step = self.step = self.queue.popleft()
        step.tries += 1
        self.want = 2 * reply_data_len(step.command, self.nozzles)
        self.buffer.clear()
        self.counters["requests"] += 1
        request = build_request(step.command, step.address - 1, step.data)
        self.monitor.receive_request(request)
        return request

    def receive_data(self, data: bytes) -> list[Event]:
        events = self.monitor.receive_response(data)
        step = self.step
        if step is None:
            return events
        self.buffer += data
        if len(self.buffer) < self.want:
            return events
        reply = single(bytes(self.buffer[: self.want]))
        self.step = None
        if reply is None:
            self._retry(step)
        else:
            self._handle(step, reply)
        return events

    def response_timeout(self) -> list[Event]:
        step, self.step = self.step, None
        self.counters["timeouts"] += 1
        if step is not None:
            pump = self.pumps[step.address]
            pump.silent += 1
            if pump.silent >= OFFLINE_AFTER:
                pump.started = False  # back online: start it again, as the FCC does
            self._retry(step)
        return []

    def sale_committed(self, sale: object) -> None:
        """The POS keeps its own books: nothing to confirm on the wire."""

    # ------------------------------------------------------------ internals

    def _queue(self, address: int, command: Command, data: bytes = b"") -> None:
        self.queue.append(_Step(address, command, data))

    def _retry(self, step: _Step) -> None:
        if step.tries < TRIES and step.command != READ_STATUS:
            self.counters["retries"] += 1
            self.queue.appendleft(step)

    def _turn(self, pump: _Pump) -> None:
        pump.turns += 1
        if not pump.started:
            pump.started = True
            self._queue(pump.address, ACK_HANGUP)
            self._queue(pump.address, READ_DISPLAY)
            self._queue(pump.address, READ_PRICES)  # then every nozzle's totals
        self._queue(pump.address, READ_STATUS)

    def _all_totals(self, pump: _Pump) -> None:
        for n in range(1, pump.grades + 1):
            self._queue(pump.address, READ_TOTALS, bytes((totals_selector(n),)))

    def _handle(self, step: _Step, reply: bytes) -> None:
        pump = self.pumps[step.address]
        pump.silent = 0
        if step.command == READ_PRICES:
            found = parse_prices(reply)
            if found is not None:
                pump.prices, pump.grades = found[0], min(found[1], self.nozzles)
                self._all_totals(pump)
        elif step.command == READ_NOZZLE:
            nozzle = lifted_nozzle(reply)
            if nozzle:
                pump.nozzle, pump.known = nozzle, True
            if pump.lifted and not pump.authorised:
                pump.authorised = True
                price = pump.prices[nozzle - 1] if len(pump.prices) >= nozzle > 0 else 0
                auth = Authorisation(SLOW_FLOW, price, 0, 0)
                self._queue(pump.address, AUTHORISE, build_authorisation(auth))
        elif step.command == READ_STATUS:
            self._state(pump, masked(reply[0]))

    def _state(self, pump: _Pump, state: int) -> None:
        address = pump.address
        if state in ACTIVE_STATES:
            pump.open = True
            pump.lifted = state in (ST_LIFTED_CASH, ST_LIFTED_CREDIT)
            if not pump.known or (pump.lifted and not pump.authorised):
                self._queue(address, READ_NOZZLE)  # then F·A5 when lifted (019:596-617)
            elif state in FUELLING_STATES:
                self._queue(address, READ_DISPLAY)
        elif state == ST_IDLE and pump.open:
            pump.open = pump.authorised = pump.lifted = False
            if pump.known:
                self._queue(address, READ_TOTALS, bytes((totals_selector(pump.nozzle),)))
            else:  # the lift was missed: every nozzle's (the one that moved is the sale's)
                self._all_totals(pump)
            self._queue(address, READ_DISPLAY)
            self._queue(address, ACK_HANGUP)
            self._queue(address, READ_DISPLAY)
            pump.known = False
        elif state == ST_IDLE and pump.turns % TOTALS_EVERY == 0:
            self._all_totals(pump)
        elif state == ST_UNINITIALISED:
            self._queue(address, WRITE_DISPLAY, bytes(8))
