"""The tank gauge task: thin I/O around :mod:`protocols.tls` and the pure logic.

One connection to the console, over RS-232 (pyserial-asyncio) or TCP
(``asyncio.open_connection``, consoles serve port 10001). TLS is command /
response, so one request is on the line at a time; each report has its own
period (inventory, deliveries, alarms, leak tests), and whichever is due
first goes next. Every response goes to :class:`~collector.station.gauge_records.GaugeState`
(what it means, what to store, what the wet-stock checks find); this task
hands the records of one response to the store's writer as one commit
(buffer/writer.py): held and retried while the store refuses them, in
order. When the writer cannot take them (its queue full during a long
fault), the state goes back to before the response — the next read of the
report yields the same change again. Deliveries the edge detected and that
wait for the gauge's i202 are stored (local records) and read back at start.

Only read-only inquiries leave: :func:`protocols.tls.build_command` refuses
anything else (SPEC D20).

The console being off or unplugged is a state, not a failure of the
collector: the link is retried with backoff, and ``offline_after`` missed
answers in a row (a timeout, a refused connection, a serial device that is
not there) raise ATG_OFFLINE; the first answer clears it.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal

import structlog

from buffer.commits import Item, NewRecord, Outcome, Result
from buffer.store import OrderStore, StoreError
from collector.logs import Repeats
from collector.retry import Retry
from collector.station.gauge_records import DETECTED, GaugeState
from collector.station.wetstock import delivery_from
from protocols.tls import (
    Deliveries,
    Inventory,
    LeakTestResults,
    Report,
    SystemStatus,
    TankAlarms,
    TlsDecoder,
    TlsError,
    build_command,
)

log = structlog.get_logger("collector.station.gauge")

#: Responses the console rejected or that arrived garbled: per target and
#: kind once a minute in full plus one summary line (collector/logs.py).
REJECTED = Repeats(log, "gauge_rejected", source_field="target")

#: Bytes asked of the reader per read: a 16-tank i201 is ~1.1 kB; larger
#: reports simply take more reads (the decoder buffers them).
READ_CHUNK = 4096
#: Backoff bounds (seconds) for reconnecting to the console: fast enough to
#: notice a console switched back on, slow enough not to flood a serial
#: server that refuses us.
RETRY_MIN_S, RETRY_MAX_S = 0.5, 30.0
#: A link that lived this long was healthy: the next failure starts the
#: backoff from the minimum again.
HEALTHY_AFTER_S = 60.0

#: The inquiries and what each one reads (protocols.md §1, read-only).
INVENTORY, DELIVERIES, TANK_STATUS, SYSTEM_STATUS, LEAK_RESULTS = (
    "i201",
    "i202",
    "i205",
    "i101",
    "i208",
)


@dataclass(frozen=True, slots=True)
class GaugeSettings:
    link: str  # "serial" | "tcp"
    device: str | None
    baudrate: int
    bytesize: int
    parity: str
    stopbits: int
    host: str
    port: int
    security_code: str | None
    periods: Mapping[str, float]  # inquiry → seconds between reads
    response_timeout_s: float
    offline_after: int

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}" if self.link == "tcp" else str(self.device)


class GaugeTask:
    def __init__(
        self,
        settings: GaugeSettings,
        state: GaugeState,
        store: OrderStore,
        nozzles: Mapping[int, Sequence[str]],
        tz: timezone,
        on_commit: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.state = state
        self.store = store
        self.nozzles = {tank: list(keys) for tank, keys in nozzles.items() if keys}
        self.tz = tz
        self.on_commit = on_commit
        self.clock = clock
        self.online = False
        self.misses = 0
        self.counters: dict[str, int] = {}
        # Sales are counted from here on: the wet-stock samples carry the
        # litres sold since this moment (collector/station/wetstock.py).
        self.started_ms = time.time_ns() // 1_000_000
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._decoder = TlsDecoder()
        self._restored = False

    # ------------------------------------------------------------ the link

    async def open(self) -> None:
        s = self.settings
        if s.link == "tcp":
            async with asyncio.timeout(s.response_timeout_s):  # not wait_for: see port.py
                self._reader, self._writer = await asyncio.open_connection(s.host, s.port)
        else:
            import termios

            import serial_asyncio

            try:
                self._reader, self._writer = await serial_asyncio.open_serial_connection(
                    url=s.device,
                    baudrate=s.baudrate,
                    bytesize=s.bytesize,
                    parity=s.parity,
                    stopbits=s.stopbits,
                )
            except termios.error as exc:
                raise OSError(f"the device refuses its line settings: {exc.args[-1]}") from exc
        self._decoder = TlsDecoder()
        log.info("gauge_open", link=s.link, target=s.name)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    def restore(self) -> None:
        """The detected deliveries a previous run left waiting (A3, A5): decided
        at the next i202 read."""
        self._restored = True
        try:
            waiting = [delivery_from(r) for r in self.store.records(DETECTED)]
        except (StoreError, sqlite3.Error, KeyError, ValueError) as exc:
            log.error("detected_deliveries_not_read", error=str(exc))
            return
        self.state.wetstock.restore(waiting)
        if waiting:
            log.info("detected_deliveries_waiting", count=len(waiting))

    async def run(self) -> None:
        """Forever: connect, read on schedule; on failure reconnect with backoff."""
        if not self._restored:
            self.restore()
        retry = Retry(RETRY_MIN_S, RETRY_MAX_S)
        while True:
            began = self.clock()
            try:
                await self.open()
                await self._serve()
            except (OSError, ConnectionError, TimeoutError, ValueError) as exc:
                log.warning("gauge_link_failed", target=self.settings.name, error=str(exc))
                self._miss()
            finally:
                self.close()
            self.online = False
            if self.clock() - began > HEALTHY_AFTER_S:
                retry.reset()
            await asyncio.sleep(retry.next_delay())

    async def _serve(self) -> None:
        periods = self.settings.periods
        due = dict.fromkeys(periods, self.clock())  # everything once at the start
        while True:
            code = min(due, key=lambda c: due[c])
            wait = due[code] - self.clock()
            if wait > 0:
                await asyncio.sleep(wait)
            # Keep the cadence; after a long stall start over from now.
            due[code] = max(due[code] + periods[code], self.clock())
            item = await self.request(code)
            self._handle(code, item)

    async def request(self, code: str) -> Report | TlsError | None:
        """Send one inquiry; its report, a rejected response, or None (no answer)."""
        assert self._reader is not None and self._writer is not None
        command = build_command(code, 0, security_code=self.settings.security_code)
        self._writer.write(command)
        await self._writer.drain()
        deadline = self.clock() + self.settings.response_timeout_s
        while True:
            remaining = deadline - self.clock()
            if remaining <= 0:
                for dropped in self._decoder.flush():
                    self._count(dropped.kind if isinstance(dropped, TlsError) else "late")
                return None
            try:
                async with asyncio.timeout(
                    remaining
                ):  # not wait_for: see collector/station/port.py
                    chunk = await self._reader.read(READ_CHUNK)
            except TimeoutError:
                continue
            if not chunk:
                raise ConnectionError(f"{self.settings.name}: the console closed the link")
            for item in self._decoder.receive_data(chunk):
                if isinstance(item, TlsError):
                    self._count(item.kind)
                    if item.kind == "garbage" or (item.function or code)[:4] != code:
                        continue  # noise, or the late answer to an earlier request
                    return item
                if getattr(item, "function", code)[:4] == code:
                    return item

    # ------------------------------------------------------------ results

    def _handle(self, code: str, item: Report | TlsError | None) -> None:
        if item is None:
            self._miss()
            return
        self.misses = 0
        self.online = True
        before = self._snapshot()
        records = self.state.answered(self._wall())
        if isinstance(item, TlsError):
            REJECTED.add(item.kind, self.settings.name, function=code, detail=item.detail)
        elif isinstance(item, Inventory):
            records += self.state.inventory(item, self.clock(), self._sold())
        elif isinstance(item, Deliveries):
            records += self.state.deliveries(item)
        elif isinstance(item, TankAlarms):
            records += self.state.alarms(item)
        elif isinstance(item, SystemStatus):
            records += self.state.system(item)
        elif isinstance(item, LeakTestResults):
            records += self.state.leak_results(item)
        self._store(records, before)

    def _miss(self) -> None:
        self.misses += 1
        self.online = False
        self._count("no_answer")
        offline_after = self.settings.offline_after
        before = self._snapshot()
        self._store(self.state.missed(self._wall(), self.misses, offline_after), before)

    def _sold(self) -> dict[int, Decimal]:
        return {
            tank: self.store.order_volume_since(keys, self.started_ms)
            for tank, keys in self.nozzles.items()
        }

    def _snapshot(self) -> object | None:
        """The state before a response, when the writer may not take its records:
        with the queue under half full, any response's records fit."""
        writer = self.store.writer
        return self.state.snapshot() if writer.queued * 2 > writer.max_queued else None

    def _store(self, records: list[Item], before: object | None) -> None:
        """One response's records, one commit; not taken: the state goes back."""
        if not records:
            return
        if self.store.writer.submit_all(records, self._decided):
            for r in records:  # a transition is said when decided, stored or not yet
                if isinstance(r, NewRecord) and r.kind == "alarm":
                    body = r.body
                    log.warning("gauge_alarm", source=body["source"], code=body["code"],
                                state=body["state"])  # fmt: skip
            return
        self._count("not_taken")
        if before is not None:
            self.state.restore(before)
            log.error("gauge_records_not_taken", records=len(records), state="restored")
        else:  # cannot happen below half a queue; said if it does
            log.error("gauge_records_not_taken", records=len(records), state="advanced")

    def _decided(self, outcomes: list[Outcome]) -> None:
        for outcome in outcomes:
            record = outcome.record
            if record is not None and record.kind not in ("tank", DETECTED):
                log.info("gauge_record", kind=record.kind, rid=record.rid)
            if not outcome.kept:  # a body the store can never take (a bug): said
                self._count("store")
                log.error("gauge_record_not_stored", error=outcome.detail)
        if any(o.result is Result.STORED for o in outcomes):
            self.on_commit()

    def _wall(self) -> datetime:
        """Now on the station's wall clock, naive like the console's times."""
        return datetime.now(self.tz).replace(tzinfo=None)

    def _count(self, kind: str) -> None:
        self.counters[kind] = self.counters.get(kind, 0) + 1
