"""The raw evidence of every line: ports → bounded buffer → raw log (buffer/rawlog.py).

A port's read callback and its writes call :func:`collector.station.capture.feed`,
which hands the chunk to :meth:`EvidenceRecorder.feed`: one tuple appended
to a list, nothing else (the hot path pays an append; bench/evidence.py).
One task (:meth:`EvidenceRecorder.run`) wakes every :data:`FLUSH_S`, takes
what the ports handed in and, **in a worker thread**, moves it into each
port's open block (runs of identical exchanges kept once, the rest as
deltas, buffer/rawblocks.py) and commits the blocks that are old or large
enough, all in one transaction. The thread: sealing a busy block (LZMA2)
takes ≈ 35 ms here, ten times that on the gateway — never on the event
loop the ports read on (``lzma`` and ``sqlite3`` let the loop run
meanwhile). One batch at a time, in the order taken (:attr:`_turn`); the
builders and the file are only touched under :attr:`_work_lock`, which
``evidence.fetch`` takes too to seal the open blocks and read a period
(:meth:`sealed_then`).

Bounded: what waits for the task is at most :data:`MAX_PENDING_BYTES`
(beyond it a chunk is dropped and counted: ``dropped_chunks``); an open
block is sealed at :data:`BLOCK_RAW_MAX`; sealed blocks the file refused
(disk full) wait, at most :data:`MAX_UNSTORED_BLOCKS`, then the oldest are
dropped and counted (``lost_blocks``). Any of these, or a refused append,
raises ``EVIDENCE_FAULT`` (:attr:`EvidenceRecorder.on_alarm`, docs/alarms.md),
cleared by the first turn after it that stores with nothing lost. The raw
log is evidence beside the records, never a record itself: a record is
never held back for it.

Power loss costs at most the open blocks: :data:`BLOCK_S` of each line.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import structlog

from buffer.rawblocks import BLOCK_ENTRIES_MAX, BUS, RX, TX, BlockBuilder, RawLogError
from buffer.rawlog import RawLog

log = structlog.get_logger("collector.station.evidence")

#: How often the task takes what the ports handed in, s: bounds the pending
#: memory to about a second of every line.
FLUSH_S = 1.0

#: A block is sealed (committed, chained) once it spans this long, s. An
#: idle line's exchanges are new once per block and runs after that, so the
#: block's span is most of an idle port's cost: 44 KB of bodies a day at
#: 1 h, 186 KB at 10 min (bench/evidence.py). The price: a power cut loses
#: up to this long of each line's raw log (never a record: records are
#: stored first, and the cut is alarmed as UNCLEAN_STOP).
BLOCK_S = 3600.0

#: ... or once it holds this many bytes of entries (before compression): a
#: busy line's block stays small enough to inflate and hash at once on the gateway.
BLOCK_RAW_MAX = BLOCK_ENTRIES_MAX

#: Bytes the ports may hand in between two runs of the task: 32 ports at
#: 9600 baud both ways carry ≈ 60 KB/s; 1 MiB is > 15 s of that.
MAX_PENDING_BYTES = 1024 * 1024

#: Sealed blocks kept while the file refuses them (disk full): ≈ 1 h of 32
#: busy ports; beyond it the oldest go, counted.
MAX_UNSTORED_BLOCKS = 256

_DIRECTION = {"tx": TX, "rx": RX, "bus": BUS}

Sealed = tuple[int, int, int, int, int, bytes]
Pending = list[tuple[int, int, int, bytes]]
T = TypeVar("T")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class EvidenceRecorder:
    """Every port's chunks into the raw log, off the read path."""

    def __init__(self, rawlog: RawLog, *, block_s: float = BLOCK_S) -> None:
        self.rawlog = rawlog
        self.block_ms = int(block_s * 1000)
        self._pending: Pending = []
        self._pending_bytes = 0
        self._builders: dict[int, BlockBuilder] = {}
        self._unstored: list[Sealed] = []
        #: Chunks dropped for a full pending buffer; sealed blocks dropped
        #: while the file refused them; appends the file refused.
        self.dropped_chunks = 0
        self.lost_blocks = 0
        self.append_errors = 0
        self.last_error = ""
        #: ``(raised, detail)`` → the store (collector/daemon.py): EVIDENCE_FAULT.
        self.on_alarm: Callable[[bool, dict[str, Any]], None] | None = None
        self._faulty = False  # EVIDENCE_FAULT raised and not cleared
        self._losses = (0, 0, 0)  # the counters at the last turn
        self._refusing = False  # the last append was refused
        self._turn = asyncio.Lock()  # one batch at a time, in the order taken
        self._work_lock = threading.Lock()  # the builders and the file

    # -- the hot path: a port's callback --------------------------------------------

    def feed(self, port: int, direction: str, data: bytes) -> None:
        """``data`` written (``tx``), read (``rx``) or tapped (``bus``) on ``port``."""
        if self._pending_bytes + len(data) > MAX_PENDING_BYTES:
            self.dropped_chunks += 1
            return
        self._pending.append((_now_ms(), port, _DIRECTION[direction], bytes(data)))
        self._pending_bytes += len(data)

    # -- the task -------------------------------------------------------------------

    async def run(self) -> None:
        try:
            while True:
                await asyncio.sleep(FLUSH_S)
                try:
                    await self.sealed_then(lambda: None)
                except Exception as exc:  # a bug here must not stop the collector
                    log.exception("raw_log_turn_failed")
                    self.append_errors += 1  # counted and alarmed like a refusal
                    self.last_error = f"{type(exc).__name__}: {exc}"
                self.report()
        finally:
            # A clean stop keeps the open blocks (waiting, on the loop, for a
            # batch a cancelled turn left in the thread).
            try:
                self.tick(_now_ms(), seal_all=True)
            except Exception:
                log.exception("raw_log_turn_failed")

    async def sealed_then(self, read: Callable[[], T], *, seal_all: bool = False) -> T:
        """Take what the ports handed in, commit the blocks due (all open
        ones with ``seal_all``), then ``read()`` — in a worker thread, under
        the lock: what ``read`` sees of the file is what was just committed."""
        async with self._turn:
            pending = self._take()
            now_ms = _now_ms()

            def work() -> T:
                with self._work_lock:
                    self._build(pending, now_ms, seal_all)
                    return read()

            return await asyncio.to_thread(work)

    def report(self) -> None:
        """After a turn, on the loop: EVIDENCE_FAULT raised when anything was
        lost or refused since the last turn, cleared by a clean turn."""
        losses = (self.dropped_chunks, self.lost_blocks, self.append_errors)
        lost_now = losses != self._losses
        self._losses = losses
        if self.on_alarm is None:
            return
        detail: dict[str, Any] = {
            "dropped_chunks": self.dropped_chunks,
            "lost_blocks": self.lost_blocks,
            "append_errors": self.append_errors,
        }
        if lost_now and not self._faulty:
            self._faulty = True
            self.on_alarm(True, {**detail, "error": self.last_error or None})
        elif not lost_now and self._faulty and not self._refusing and not self._unstored:
            self._faulty = False
            self.on_alarm(False, detail)

    def _take(self) -> Pending:
        pending, self._pending, self._pending_bytes = self._pending, [], 0
        return pending

    def tick(self, now_ms: int, *, seal_all: bool = False) -> int:
        """Take what the ports handed in; commit the blocks due, here and now
        (a stop; tests). Blocks stored."""
        pending = self._take()
        with self._work_lock:
            return self._build(pending, now_ms, seal_all)

    def _build(self, pending: Pending, now_ms: int, seal_all: bool) -> int:
        builders = self._builders
        for at_ms, port, direction, data in pending:
            builder = builders.get(port)
            if builder is None:
                builder = builders[port] = BlockBuilder(port)
            builder.add(at_ms, direction, data)
            if builder.pending_bytes >= BLOCK_RAW_MAX:
                self._seal(builder)
        for builder in builders.values():
            first = builder.first_ms
            if first is not None and (seal_all or now_ms - first >= self.block_ms):
                self._seal(builder)
        return self._store()

    def _seal(self, builder: BlockBuilder) -> None:
        sealed = builder.seal()
        if sealed is not None:
            self._unstored.append(sealed)
        if len(self._unstored) > MAX_UNSTORED_BLOCKS:
            del self._unstored[0]
            self.lost_blocks += 1

    def _store(self) -> int:
        if not self._unstored:
            return 0
        blocks = self._unstored
        try:
            self.rawlog.append(blocks)
        except RawLogError as exc:
            self._refusing = True
            self.append_errors += 1
            if str(exc) != self.last_error:
                log.error("raw_log_refused", error=str(exc), blocks=len(blocks))
            self.last_error = str(exc)
            return 0
        self._unstored = []
        self._refusing = False
        return len(blocks)

    def flush(self) -> int:
        """Everything handed in so far sealed and stored now (a stop; tests)."""
        return self.tick(_now_ms(), seal_all=True)

    def stats(self) -> dict[str, Any]:
        return {
            "pending_bytes": self._pending_bytes,
            "open_blocks": sum(not b.empty for b in self._builders.values()),
            "unstored_blocks": len(self._unstored),
            "blocks_stored": self.rawlog.appended,
            "blocks_evicted": self.rawlog.evicted,
            "dropped_chunks": self.dropped_chunks,
            "lost_blocks": self.lost_blocks,
            "append_errors": self.append_errors,
        }
