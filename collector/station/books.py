"""A relay or listening port's reconciliation with the station's books, wired
to the store: collector/station/reconcile.py decides, this stores (store first).

The port's sink hands it every batch of events it parsed (:meth:`observe`)
and every order it committed (:meth:`order_stored`); the port's task runs
:meth:`tick` every :data:`TICK_S` while the line is open. Whether the POS is
on the line is read from the monitor's ``master_frames`` count (frames the
POS side sent), so no event per poll is needed.

Every finding becomes an ``alarm`` record handed to the store's writer. A
finding has a stable rid (the sale's key, the window's start), so one that
is handed again is stored once. One the writer's full queue did not take
waits here (at most :data:`MAX_WAITING`, beyond which the oldest is dropped
and counted) and is handed again at the next tick. ``LINK_BYPASSED`` is a
state: the reconciler's state advances only once the writer took the
transition, and after a restart it starts from the last one stored.

A finding that comes after its order was stored (``SALE_UNCONFIRMED``,
``CONFIRM_MISMATCH``) cannot go into the order's ``flags``: the order is
hashed into its nozzle's chain and may already be on the platform (F2).
The alarm names the order instead — ``detail.order`` (its rid, once
committed) and ``detail.order_key`` (nozzle / the dispenser's record key,
always) — the same tie the edge findings' alarms carry (docs/alarms.md).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from collector.station.reconcile import LINK_BYPASSED, BooksSettings, Finding, Reconciler
from collector.station.records import alarm_record, nozzle_key
from collector.station.selfcheck import alarm_raised
from protocols.events import Confirmation, Event, Sale

if TYPE_CHECKING:
    from datetime import timezone

    from buffer.store import OrderStore

log = structlog.get_logger("collector.station.books")


class _Counted(Protocol):
    @property
    def errors(self) -> dict[str, int]: ...


class Port(Protocol):
    """What the books need of their port's sink (collector/station/sink.py ``PortSink``,
    which holds them: the books name what they use instead of importing it)."""

    @property
    def number(self) -> int: ...

    @property
    def store(self) -> OrderStore: ...

    @property
    def tz(self) -> timezone: ...

    @property
    def stats(self) -> _Counted: ...

    def alarm(self, code: str, source: str, raised: bool, detail: dict[str, Any]) -> bool: ...

    def store_record(self, kind: str, rid: str, body: dict[str, Any]) -> bool: ...


#: Timeouts are whole seconds or more (docs/alarms.md): a check a second is
#: plenty and costs nothing on an idle port.
TICK_S = 1.0

#: Findings the writer did not take, held for the next tick: only while the
#: store refuses and the writer's queue is full; then the alarms STORE_FAULT
#: and the counter say so.
MAX_WAITING = 1024


class PortBooks:
    """The reconciler of one port, its clock and its way to the store."""

    def __init__(
        self,
        sink: Port,
        monitor: Any,
        settings: BooksSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] | None = None,
    ) -> None:
        self.sink = sink
        self.monitor = monitor
        self.clock = clock
        self._wall_clock = wall
        self.reconciler = Reconciler(sink.number, settings, clock(), self._wall())
        self.reconciler.bypass_taken(alarm_raised(sink.store, f"p{sink.number:02d}", LINK_BYPASSED))
        self._master_frames = monitor.master_frames
        self._waiting: deque[tuple[str, dict[str, Any]]] = deque()  # (rid, body)
        self.findings: dict[str, int] = {}  # stored, by code
        self._timer: asyncio.TimerHandle | None = None

    def _wall(self) -> datetime:
        """The station's local time now (aware): the day windows' clock."""
        return datetime.now(self.sink.tz) if self._wall_clock is None else self._wall_clock()

    # ------------------------------------------------------------ fed by the sink

    def observe(self, events: list[Event]) -> None:
        """Every batch a port parsed: most are polls and idle reports, which
        cost a clock read and a counter compare (bench/books.py)."""
        now = self.clock()
        findings = self._pos_check(now)
        wall: datetime | None = None
        for event in events:
            if isinstance(event, Sale):
                wall = wall or self._wall()
                key = nozzle_key(self.sink.number, event.address, event.nozzle)
                findings += self.reconciler.sale(key, event, now, wall)
            elif isinstance(event, Confirmation):
                wall = wall or self._wall()
                findings += self.reconciler.confirmation(event, now, wall)
        if findings:
            self._store(findings)

    def order_stored(self, sale: Sale, rid: str) -> None:
        number = sale.number
        if number is not None:
            self._store(self.reconciler.order_stored(sale.address, number, sale.key, rid))

    # ------------------------------------------------------------ the port's timer

    def tick(self) -> None:
        now = self.clock()
        findings = self._pos_check(now)
        findings += self.reconciler.tick(now, self._wall())
        waiting, self._waiting = list(self._waiting), deque()
        for rid, body in waiting:
            self._hand(rid, body)
        self._store(findings)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Tick every :data:`TICK_S` on ``loop`` until :meth:`stop`."""

        def again() -> None:
            self._timer = loop.call_later(TICK_S, again)
            self.tick()

        self._timer = loop.call_later(TICK_S, again)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None

    # ------------------------------------------------------------ internals

    def _pos_check(self, now: float) -> list[Finding]:
        frames = self.monitor.master_frames
        if frames == self._master_frames:
            return []
        self._master_frames = frames
        return self.reconciler.pos_active(now)

    def _store(self, findings: list[Finding]) -> None:
        for finding in findings:
            if finding.code == LINK_BYPASSED:
                self._state(finding)
                continue
            # The body is made once: one handed again is the same record.
            now = self._wall().replace(tzinfo=None)
            _, body = alarm_record(finding.source, finding.code, True, now, self.sink.tz,
                                   finding.detail)  # fmt: skip
            self._hand(finding.rid, body)

    def _hand(self, rid: str, body: dict[str, Any]) -> None:
        code = body["code"]
        if self.sink.store_record("alarm", rid, body):
            self.findings[code] = self.findings.get(code, 0) + 1
            log.warning("books_finding", rid=rid, code=code, source=body["source"])
            return
        self._waiting.append((rid, body))
        if len(self._waiting) > MAX_WAITING:
            lost, _ = self._waiting.popleft()
            errors = self.sink.stats.errors
            errors["books_lost"] = errors.get("books_lost", 0) + 1
            log.error("books_finding_lost", rid=lost)

    def _state(self, finding: Finding) -> None:
        """LINK_BYPASSED raised or cleared; not taken: the reconciler asks again."""
        if finding.raised == self.reconciler.bypassed:
            return  # already where the store is
        source = finding.source
        if self.sink.alarm(LINK_BYPASSED, source, finding.raised, finding.detail):
            self.reconciler.bypass_taken(finding.raised)


@contextmanager
def ticking(books: PortBooks | None, loop: asyncio.AbstractEventLoop) -> Iterator[None]:
    """A relay's or a tap's books tick on ``loop`` while the port runs inside
    (their timeouts); None: the port has no books."""
    if books is None:
        yield
        return
    books.start(loop)
    try:
        yield
    finally:
        books.stop()
