"""Changkong Uninfo as a read-only poll master, sans-IO.

:class:`UninfoPoller` implements :class:`protocols.base.PollDriver` for one
two-wire current loop with up to 16 fuelling points (addresses 1..16; the
wire's nibble is the address mod 16, ``fangym0335/first
src/lischn011.c:113-114``).

Commands (SPEC D20), each through one choke point, :meth:`_emit`: ``A``
status, ``8`` running display, ``B`` totals, ``C`` last sale — reads that
change nothing (docs/protocols/uninfo.md). Never ``9`` authorise, ``7`` /
``FE`` stop or a ``D`` block (preset, price).

A turn, one fuelling point at a time, each step one request (the port sends
the next after the line's gap while :attr:`UninfoPoller.mid_exchange`):

1. ``A`` status → the point's state (:mod:`protocols.uninfo.reading`);
2. fuelling (4): ``8`` for the live volume and amount (``live_display``);
3. idle, lifted or fill ended (1, 2, 6: no fill on; the FCC reads totals in
   these and in 5, ``:1785-1789``) and the totals are due — never read, a
   fill may have happened since (3, 4 or 5 seen), a sale is not yet stored,
   or ``totals_every`` turns passed: ``B`` until ``reads`` good reads are
   alike (at most ``reads`` + :data:`EXTRA_TRIES` requests);
4. they count (:class:`Totals` per nozzle); if they moved since the last
   sale accounted (or none is accounted yet, after start or a link loss):
   ``C`` the same way, then ``A`` again. When the point is still not
   fuelling, the record is a sale, attributed and keyed as
   :mod:`protocols.uninfo.reading` says, paired with the totals of step 3.

Each reply's check word is 4 bits (``:1308-1309``): a reply garbled in two
words passes it one time in sixteen; ``reads`` alike do not (a line does not
garble two reads the same way).

Store first: the totals the sale was paired with become the accounted
ones only at :meth:`sale_committed`; until then each turn reads them and
the record again and emits the same sale (same key, same ``ended_at``). A
record that is no sale (volume 0, a key already committed) or that names
no nozzle (reported) is accounted at once.

Replies: :class:`protocols.uninfo.framer.ReplyReader` (with ``echo``, the
request's own byte first). Events: :class:`Sale`, :class:`Totals` per
nozzle from each ``B``, :class:`NozzleStatus` on change, :class:`PumpLink`
online at a pump's first reply and offline after ``offline_after`` requests
in a row to it without one.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import ClassVar, Literal, Unpack

from protocols.base import ForbiddenCommand, answered, at_least_one, missed
from protocols.events import Event, ProtocolError, Sale
from protocols.saleline import SaleLine, SaleOptions
from protocols.uninfo.framer import Reply, ReplyReader, request_of
from protocols.uninfo.messages import (
    CMD_DISPLAY,
    CMD_SALE,
    CMD_STATUS,
    CMD_TOTALS,
    MAX_ADDRESS,
    MIN_ADDRESS,
    ST_FUELLING,
    Display,
    GradeTotals,
    SaleRecord,
    request_byte,
)
from protocols.uninfo.reading import READ_STATES, FuellingPoint

#: Turns of a pump between two totals reads when nothing else asks for one:
#: each sale brings its own, this only catches fuel drawn with no record.
TOTALS_EVERY = 50

#: Good reads alike of the totals, and of the record, before they count: two.
#: Each reply's check word is 4 bits; a line that garbles a reply into one
#: that passes it does not garble two reads alike.
READS = 2

#: Reads of the totals or the record beyond ``reads`` a turn may spend on
#: replies that failed or differ: the FCC tries each read 5 times
#: (``TRY_TIME``, ``:37``).
EXTRA_TRIES = 3

#: Committed sale keys remembered per line: one record per pump.
MAX_COMMITTED = 64

Purpose = Literal["poll", "confirm"]


class UninfoPoller(SaleLine):
    """Read-only master of one Uninfo loop (port mode ``poll``)."""

    name: ClassVar[str] = "uninfo"
    # The only command nibbles that may ever leave this driver (SPEC D20).
    ALLOWED_COMMANDS: ClassVar[frozenset[int]] = frozenset(
        {CMD_STATUS, CMD_DISPLAY, CMD_TOTALS, CMD_SALE}
    )

    def __init__(
        self,
        addresses: Sequence[int],
        *,
        echo: bool = False,
        live_display: bool = True,
        reads: int = READS,
        totals_every: int = TOTALS_EVERY,
        **options: Unpack[SaleOptions],
    ) -> None:
        """``options``: :class:`~protocols.saleline.SaleLine`'s."""
        if not addresses or len(set(addresses)) != len(addresses):
            raise ValueError("at least one pump, each address once")
        if not all(MIN_ADDRESS <= a <= MAX_ADDRESS for a in addresses):
            raise ValueError(f"Uninfo addresses are {MIN_ADDRESS}..{MAX_ADDRESS}")
        at_least_one(reads=reads, totals_every=totals_every)
        super().__init__(**options)
        self._points = {
            a: FuellingPoint(a, scale=self._scale, grades=self._grades, clock=self._clock)
            for a in addresses
        }
        self._order = list(addresses)
        self._live_display = live_display
        self._reads = reads
        self._totals_every = totals_every
        self._reader = ReplyReader(echo=echo)
        self._turn = -1
        self._plan: deque[tuple[int, Purpose]] = deque()
        self._step: tuple[int, int, Purpose] | None = None  # (command, address, purpose)
        self._online: dict[int, bool | None] = dict.fromkeys(addresses)
        self._misses = dict.fromkeys(addresses, 0)
        self._since_totals = dict.fromkeys(addresses, 0)
        self._max_tries = reads + EXTRA_TRIES
        self._tries = 1  # requests of the current totals or record phase
        self._phase: list[Reply] = []  # its good reads so far
        self._record: Reply | None = None  # the record its reads agreed on
        self._deferred: list[Event] = []  # errors found between two calls
        #: Address → (key, totals) of a sale emitted and not yet committed.
        self._pending: dict[int, tuple[str, tuple[GradeTotals, ...]]] = {}
        self._committed: dict[str, None] = {}
        self._counts = dict.fromkeys(
            ("timeouts", "requests", "replies", "totals_moving", "records_moving"), 0
        )

    # ------------------------------------------------------------ PollDriver

    @property
    def awaiting_response(self) -> bool:
        return self._reader.waiting is not None

    @property
    def mid_exchange(self) -> bool:
        """A turn has steps left: the next goes after the line's gap."""
        return bool(self._plan)

    @property
    def counters(self) -> dict[str, int]:
        return {**self._reader.counters, **self._counts}

    def next_request(self) -> bytes | None:
        if not self._plan:
            self._turn = (self._turn + 1) % len(self._order)
            self._plan.append((CMD_STATUS, "poll"))
            self._phase.clear()
            self._record = None
            self._tries = 1
        address = self._order[self._turn]
        command, purpose = self._plan.popleft()
        wire = self._emit(command, address)
        self._step = (command, address, purpose)
        self._counts["requests"] += 1
        # Anything the reader still held belonged to no request: reported next.
        for held in self._reader.expect(request_of(wire[0])):
            if isinstance(held, ProtocolError):
                self._deferred.append(held)
        return wire

    def receive_data(self, data: bytes) -> list[Event]:
        events, self._deferred = self._deferred, []
        for item in self._reader.receive_data(data):
            if isinstance(item, Reply):
                events += self._on_reply(item)
            else:
                events.append(item)
                if self._step is not None and self._reader.waiting is None:
                    self._failed()  # a whole reply that failed its checks
        return events

    def response_timeout(self) -> list[Event]:
        events, self._deferred = self._deferred, []
        if self._step is None:
            return events
        events += [e for e in self._reader.flush() if isinstance(e, ProtocolError)]
        command, address, _ = self._step
        self._counts["timeouts"] += 1
        events.append(
            ProtocolError("timeout", f"no answer to {command:X} of pump {address}", address)
        )
        self._failed()
        down = missed(self._online, self._misses, address, self._offline_after)
        if down:
            self._abort()
            self._points[address].forget()
            self._pending.pop(address, None)
        events += down
        return events

    def sale_committed(self, sale: Sale) -> None:
        self._committed[sale.key] = None
        while len(self._committed) > MAX_COMMITTED:
            del self._committed[next(iter(self._committed))]
        pending = self._pending.get(sale.address)
        if pending is not None and pending[0] == sale.key:
            del self._pending[sale.address]
            self._points[sale.address].before = {g.nozzle: g for g in pending[1]}

    # ------------------------------------------------------------ requests

    def _emit(self, command: int, address: int) -> bytes:
        """The single choke point every request passes through (SPEC D20)."""
        if command not in self.ALLOWED_COMMANDS:
            raise ForbiddenCommand(f"command {command:X} is not read-only (D20)")
        byte = request_byte(command, address)
        if byte >> 4 not in self.ALLOWED_COMMANDS:
            raise ForbiddenCommand(f"request byte {byte:02X} is not read-only (D20)")
        return bytes([byte])

    def _abort(self) -> None:
        """The turn ends here: its remaining steps are dropped."""
        self._step = None
        self._plan.clear()
        self._phase.clear()
        self._record = None

    def _failed(self) -> None:
        """The step in flight got no good reply: a read of the totals or the
        record is tried again while its tries last, anything else ends the turn."""
        step, self._step = self._step, None
        if step is None:
            return
        command, _, purpose = step
        if command in (CMD_TOTALS, CMD_SALE) and self._tries < self._max_tries:
            self._tries += 1
            self._plan.appendleft((command, purpose))
        else:
            self._abort()

    # ------------------------------------------------------------ replies

    def _on_reply(self, reply: Reply) -> list[Event]:
        step = self._step
        if step is None:
            return []
        command, address, purpose = step
        self._step = None
        self._counts["replies"] += 1
        events = answered(self._online, self._misses, address)
        point = self._points[address]
        value = reply.value
        if command == CMD_STATUS:
            assert isinstance(value, int)
            events += point.status(value)
            if purpose == "confirm":
                events += self._decide(point)
            else:
                self._plan_after_status(point, value)
        elif command == CMD_DISPLAY:
            assert isinstance(value, Display)
            events += point.display(value)
        else:
            events += self._on_read(point, reply)
        return events

    def _on_read(self, point: FuellingPoint, reply: Reply) -> list[Event]:
        """A good read of the totals or the record: the phase ends once
        ``reads`` of its reads are alike (module doc), else it reads again."""
        command = reply.request.command
        self._phase.append(reply)
        alike = [r for r in self._phase if r.words == reply.words]
        if len(alike) < self._reads:
            if self._tries < self._max_tries:
                self._tries += 1
                self._plan.appendleft((command, "poll"))
            else:
                self._counts["totals_moving" if command == CMD_TOTALS else "records_moving"] += 1
                self._abort()
            return []
        self._phase.clear()
        self._tries = 1
        if command == CMD_SALE:
            self._record = reply
            self._plan.append((CMD_STATUS, "confirm"))
            return []
        grades = reply.value
        assert isinstance(grades, tuple)
        self._since_totals[point.address] = 0
        events = point.totals(grades)
        if point.moved:
            self._plan.append((CMD_SALE, "poll"))
        else:
            point.account()
        return events

    def _plan_after_status(self, point: FuellingPoint, state: int) -> None:
        address = point.address
        if state == ST_FUELLING:
            if self._live_display:
                self._plan.append((CMD_DISPLAY, "poll"))
            return
        if state not in READ_STATES:
            return
        self._since_totals[address] += 1
        due = (
            point.after is None
            or point.busy_since_totals
            or point.moved
            or self._since_totals[address] >= self._totals_every
        )
        if due:
            self._plan.append((CMD_TOTALS, "poll"))

    def _decide(self, point: FuellingPoint) -> list[Event]:
        """After the record's reads and a status: is it a sale (module doc)?"""
        reply, self._record = self._record, None
        if reply is None or not point.pairable:
            return []
        record = reply.value
        assert point.after is not None and isinstance(record, SaleRecord)
        found = point.sale(record, reply.words)
        if not isinstance(found, Sale) or found.key in self._committed:
            point.account()
            return [] if found is None or isinstance(found, Sale) else [found]
        self._pending[point.address] = (found.key, point.after)
        return [found]
