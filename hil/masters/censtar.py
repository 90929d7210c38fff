"""A Censtar station controller for the POS simulator: the master the
collector never is (it sets the mode, authorises and removes sales),
modelled on the FCC's own loop (``fangym0335/first src/lischn005.c:416-712``).

Each turn polls one pump's state (0D), round robin, and queues what the FCC
does in that state:

- at start, per pump: open mode (08 AA, 005:169), the price (12) and the
  totals (0C, InitPumpTotal 005:1903-1950);
- idle with an uncleared sale (bit 0x10): the totals, then the sale (15),
  then — once it is read — its removal (17 + its sequence number), as
  DoEot and GetTransData do (005:570-589, 1071-1125, 1255-1362); the
  totals are read only after a fill, else (clr_offline_trans, 005:2007-2024)
  the sale alone;
- idle, every :data:`TOTALS_EVERY` turns of a pump: its totals (a back
  office reading them);
- calling, nothing uncleared: authorise (06; the FCC lets no nozzle fuel
  while a sale is uncleared, 005:630-645); a pump still calling
  :data:`REAUTHORISE_TURNS` turns later is authorised again (counted
  ``reauthorised``: the simulator's own recovery, so that an authorise lost
  on a loaded test machine does not leave a pump calling for ever; the
  source says nothing of it);
- fuelling: the running fill (18, 005:667-693).

A reply that fails its XOR or does not come repeats the request (up to
:data:`TRIES`, 005:40 TRY_TIME). Sales are what a
:class:`~protocols.censtar.monitor.CenstarMonitor` fed with this
controller's own traffic reports.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from protocols.censtar.framer import decode_at
from protocols.censtar.messages import (
    CMD_AUTHORISE,
    CMD_CLEAR,
    CMD_MODE,
    CMD_PRICE_READ,
    CMD_RUNNING,
    CMD_SALE,
    CMD_STATUS,
    CMD_TOTALS,
    LENGTHS,
    MODE_OPEN,
    ST_CALLING,
    ST_FUELLING,
    ST_IDLE,
    UNCLEARED,
    Frame,
    encode,
)
from protocols.censtar.monitor import CenstarMonitor
from protocols.events import Event

#: Attempts of one request before the controller moves on (005:40 TRY_TIME).
TRIES = 5

#: Requests in a row without a reply before a pump is started again when it
#: answers (005:424-512).
OFFLINE_AFTER = 3

#: Turns of an idle pump between two reads of its totals.
TOTALS_EVERY = 20

#: Turns a pump may stay calling after its authorise before it is sent again.
REAUTHORISE_TURNS = 5


@dataclass
class _Step:
    address: int
    command: int
    data: bytes = b""
    tries: int = 0


@dataclass
class _Pump:
    address: int
    started: bool = False
    fuelled: bool = False  # a fill was seen since the last sale read
    authorised: bool = False
    authorised_at: int = 0  # the turn of the last authorise
    turns: int = 0
    silent: int = 0  # requests in a row without a reply


class Master:
    """Station controller for ``hil/pos.py`` (the PollDriver surface)."""

    name: ClassVar[str] = "censtar"

    def __init__(self, addresses: Sequence[int]) -> None:
        self.pumps = {a: _Pump(a) for a in addresses}
        self.order = deque(addresses)
        self.queue: deque[_Step] = deque()
        self.monitor = CenstarMonitor(addresses)
        self.step: _Step | None = None
        self.buffer = bytearray()
        self.counters: dict[str, int] = {
            "requests": 0,
            "timeouts": 0,
            "retries": 0,
            "reauthorised": 0,
        }

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
        self.buffer.clear()
        self.counters["requests"] += 1
        request = encode(step.command, step.address, step.data)
        self.monitor.receive_request(request)
        return request

    def receive_data(self, data: bytes) -> list[Event]:
        events = self.monitor.receive_response(data)
        step = self.step
        if step is None:
            return events
        self.buffer += data
        start = self.buffer.find(0xFC)
        if start < 0 or len(self.buffer) - start < 2 or self.buffer[start + 1] not in LENGTHS:
            return events
        if len(self.buffer) - start < LENGTHS[self.buffer[start + 1]][1]:
            return events
        frame, _ = decode_at(self.buffer, start, "reply")
        self.step = None
        if isinstance(frame, Frame) and frame.address == step.address:
            self._handle(step, frame)
        else:
            self._retry(step)
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
        """The POS keeps its own books; 17 follows the read at once."""

    # ------------------------------------------------------------ internals

    def _queue(self, address: int, command: int, data: bytes = b"") -> None:
        self.queue.append(_Step(address, command, data))

    def _retry(self, step: _Step) -> None:
        if step.tries < TRIES and step.command != CMD_STATUS:
            self.counters["retries"] += 1
            self.queue.appendleft(step)

    def _turn(self, pump: _Pump) -> None:
        pump.turns += 1
        if not pump.started:
            pump.started = True
            self._queue(pump.address, CMD_MODE, bytes((MODE_OPEN,)))
            self._queue(pump.address, CMD_PRICE_READ)
            self._queue(pump.address, CMD_TOTALS)
        self._queue(pump.address, CMD_STATUS)

    def _handle(self, step: _Step, frame: Frame) -> None:
        pump = self.pumps[step.address]
        pump.silent = 0
        if step.command == CMD_SALE and frame.command == CMD_SALE:
            self._queue(pump.address, CMD_CLEAR, frame.span(23, 24))  # 005:1322-1327
        elif step.command == CMD_STATUS:
            self._state(pump, frame.at(3))

    def _state(self, pump: _Pump, state: int) -> None:
        low, address = state & 0x0F, pump.address
        if low == ST_IDLE:
            pump.authorised = False
            if state & UNCLEARED:
                if pump.fuelled:
                    self._queue(address, CMD_TOTALS)
                pump.fuelled = False
                self._queue(address, CMD_SALE)
            elif pump.turns % TOTALS_EVERY == 0:
                self._queue(address, CMD_TOTALS)
        elif low == ST_CALLING and not state & UNCLEARED:
            if pump.authorised and pump.turns - pump.authorised_at < REAUTHORISE_TURNS:
                return
            if pump.authorised:
                self.counters["reauthorised"] += 1
            pump.authorised = pump.fuelled = True
            pump.authorised_at = pump.turns
            self._queue(address, CMD_AUTHORISE)
        elif low == ST_FUELLING:
            pump.fuelled = True
            self._queue(address, CMD_RUNNING)
