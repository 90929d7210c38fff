"""The store's one writer: append, or keep it pending and retry.

Every record the daemon makes goes through :class:`RecordWriter`. A part of
the collector (a port's sink, the gauge, the seals, the line checks, the
uplink's alarms, a command's reply) *submits* a record with the state
change that waits on it — ``then(outcome)`` — and one task commits what is
queued, in submission order, many records per transaction (one fsync for
all). Only once the commit is done does ``then`` run: a poll port confirms
the sale to its pump there, nowhere else. Nothing here runs in a port's
read callback; a submit is an append to a deque.

When the store refuses a commit (disk full, I/O error, a lock held):

* what was submitted stays queued, in order, and is tried again with
  backoff (:data:`RETRY_MIN_S` doubling to :data:`RETRY_MAX_S`) — except a
  record whose *source* keeps it (``source_keeps``: a poll port's sale is
  still in the pump, which offers it again), which is handed back at once
  (``then`` with ``REFUSED``) so the source's state does not advance;
* the episode is one ``STORE_FAULT`` alarm, raised with the time of the first
  refusal and cleared, both committed in the first transaction the store
  takes again (``detail``: the first error, refused commits, records handed
  back, records not taken), and :attr:`RecordWriter.refused_commits` counts;
* the queue holds at most :data:`MAX_QUEUED` records (bounded memory on a
  64 MB gateway); a submit beyond it is not taken: ``submit`` answers False,
  ``then`` never runs, the caller's state stays where it was (it asks again
  later, or the loss is counted in :attr:`RecordWriter.not_taken` and in the
  ``STORE_FAULT`` alarm).

No caller can ignore the result: the state that depends on a record changes
only in its ``then``, and ``submit``'s answer says whether it was taken
(tests/test_writer.py checks that no daemon code appends to the store
directly, nor drops that answer). Records queued but not committed when the
process is killed are lost with the process — what was confirmed to a
dispenser never is (it was committed first).

Eviction (buffer/capacity.py) runs here too, one bounded step between
commits, after the records that caused it are stored: a failed step is
counted and logged, never a refused record.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog

from buffer.commits import Item, NewRecord, Outcome, Result
from buffer.schema import StoreError

log = structlog.get_logger("buffer.writer")

#: Records committed in one transaction at most: a backlog (pumps re-offering
#: after an outage) goes in a few commits, each short enough that the ports
#: are served between them.
MAX_BATCH = 256

#: Records the queue holds while the store refuses them. A record waiting is
#: a few hundred bytes of Python objects; 1024 of them is well under a MB,
#: and minutes of a busy station's alarms and nozzle states.
MAX_QUEUED = 1024

#: Pause before trying a refused commit again, doubling per refusal: a disk
#: freed is noticed within seconds, a failing one is not hammered.
RETRY_MIN_S, RETRY_MAX_S = 0.05, 5.0

FAULT_CODE = "STORE_FAULT"

Then = Callable[[Outcome], None]
ThenAll = Callable[[list[Outcome]], None]


@dataclass(slots=True)
class _Group:
    """Items committed in one transaction, and what waits on them."""

    items: Sequence[Item]
    then: ThenAll
    source_keeps: bool


@dataclass(slots=True)
class _Fault:
    """One episode of refused commits, for its STORE_FAULT alarm."""

    since_ms: int
    error: str
    refused_commits: int = 0
    handed_back: int = 0
    not_taken: int = 0

    def counts(self) -> dict[str, int]:
        """What the episode cost: its alarm's detail and its end's log line."""
        return {
            "refused_commits": self.refused_commits,
            "handed_back": self.handed_back,
            "not_taken": self.not_taken,
        }


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


class Committing(Protocol):
    """What the writer needs of the store (buffer/store.py ``OrderStore``):
    one transaction of items, one eviction step, and where its failures count."""

    eviction_errors: int
    last_eviction_error: str

    def commit(self, items: Sequence[Item]) -> list[Outcome]: ...

    def evict_step(self) -> bool: ...


class RecordWriter:
    """Queue records, commit them in batches, retry what the store refused."""

    def __init__(self, store: Committing, *, max_queued: int = MAX_QUEUED) -> None:
        self.store = store
        self.max_queued = max_queued
        #: Called after each commit that stored something new (the uplink's wake).
        self.on_commit: Callable[[], None] = lambda: None
        self._groups: deque[_Group] = deque()
        self._queued = 0
        self._ready = asyncio.Event()
        self._fault: _Fault | None = None
        self._delay = 0.0
        #: Transactions committed, records newly stored by them.
        self.commits = 0
        self.records_stored = 0
        #: Commits the store refused (all episodes), records handed back to
        #: their source, records not taken for a full queue.
        self.refused_commits = 0
        self.handed_back = 0
        self.not_taken = 0
        #: ``then`` callbacks that raised (logged with their traceback).
        self.callback_errors = 0

    # -- submitting --------------------------------------------------------------

    def submit(self, item: Item, then: Then, *, source_keeps: bool = False) -> bool:
        """Queue ``item``; ``then(outcome)`` runs once it is decided. False: not
        taken (the queue is full) — ``then`` never runs, nothing changes."""
        return self.submit_all([item], lambda out: then(out[0]), source_keeps=source_keeps)

    def submit_all(
        self, items: Sequence[Item], then: ThenAll, *, source_keeps: bool = False
    ) -> bool:
        """Queue ``items`` to be committed in one transaction (all or none);
        ``then(outcomes)`` runs once they are decided. False: not taken."""
        if not items:
            then([])
            return True
        if not self.has_room(len(items)):
            self.not_taken += len(items)
            if self._fault is not None:
                self._fault.not_taken += len(items)
            log.warning("record_not_taken", records=len(items), queued=self._queued)
            return False
        self._groups.append(_Group(items, then, source_keeps))
        self._queued += len(items)
        self._ready.set()
        return True

    def has_room(self, records: int) -> bool:
        """Whether ``records`` more would be taken now (a caller about to
        advance its state on a whole report asks first)."""
        return self._queued + records <= self.max_queued

    async def stored(self, item: Item) -> Outcome:
        """Submit ``item`` and wait for its outcome (``REFUSED`` when not taken).
        For tasks that may wait (a command's reply), while :meth:`run` runs."""
        done: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        if not self.submit(item, done.set_result):
            return Outcome(Result.REFUSED, None, "the store's queue is full")
        return await done

    @property
    def queued(self) -> int:
        return self._queued

    @property
    def faulty(self) -> bool:
        """True while the store refuses commits (a STORE_FAULT episode runs)."""
        return self._fault is not None

    def stats(self) -> dict[str, Any]:
        return {
            "queued": self._queued,
            "fault": None if self._fault is None else {
                "since_ms": self._fault.since_ms, "error": self._fault.error,
                "refused_commits": self._fault.refused_commits,
            },
            "commits": self.commits, "stored": self.records_stored,
            "refused_commits": self.refused_commits, "handed_back": self.handed_back,
            "not_taken": self.not_taken, "callback_errors": self.callback_errors,
        }  # fmt: skip

    # -- committing --------------------------------------------------------------

    async def run(self) -> None:
        """Forever: commit what is queued; back off while the store refuses;
        after each commit, one eviction step while the store is over its cap."""
        while True:
            if self._groups:
                if not self.commit_once():
                    self._delay = min(RETRY_MAX_S, max(RETRY_MIN_S, self._delay * 2))
                    await asyncio.sleep(self._delay)
                    continue
                self._delay = 0.0
            if self._evict_step() or self._groups:
                await asyncio.sleep(0)  # the ports' callbacks go between two steps
                continue
            self._ready.clear()
            await self._ready.wait()

    def flush(self) -> bool:
        """Commit everything queued now (a clean stop; tests). False when the
        store refused (what it refused stays queued, or was handed back)."""
        while self._groups:
            if not self.commit_once():
                return False
        return True

    def commit_once(self) -> bool:
        """One transaction of the oldest queued groups (at most :data:`MAX_BATCH`
        records, a group never split); True when it committed."""
        batch: list[_Group] = []
        size = 0
        for group in self._groups:
            if batch and size + len(group.items) > MAX_BATCH:
                break
            batch.append(group)
            size += len(group.items)
        fault = self._fault_records()
        items = [*fault, *(item for group in batch for item in group.items)]
        try:
            outcomes = self.store.commit(items)
        except StoreError as exc:
            self._refused(batch, str(exc))
            return False
        except Exception as exc:  # a bug: said with its traceback, retried like a refusal
            log.exception("commit_failed", records=len(items))
            self._refused(batch, f"{type(exc).__name__}: {exc}")
            return False
        for _ in batch:
            self._groups.popleft()
        self._queued -= size
        if self._fault is not None:
            fault_ended = self._fault
            self._fault = None
            log.warning(
                "store_takes_records_again", **fault_ended.counts(), since_ms=fault_ended.since_ms
            )
        outcomes = outcomes[len(fault) :]
        self.commits += 1
        new = sum(o.result is Result.STORED for o in outcomes)
        self.records_stored += new
        at = 0
        for group in batch:
            n = len(group.items)
            self._call(group, outcomes[at : at + n])
            at += n
        if new:
            self.on_commit()
        return True

    def _refused(self, batch: list[_Group], error: str) -> None:
        self.refused_commits += 1
        if self._fault is None:
            self._fault = _Fault(_now_ms(), error)
            log.error("store_refused_records", error=error, queued=self._queued)
        self._fault.refused_commits += 1
        for group in batch:
            if group.source_keeps:
                self._groups.remove(group)
                self._queued -= len(group.items)
                self.handed_back += len(group.items)
                self._fault.handed_back += len(group.items)
                self._call(group, [Outcome(Result.REFUSED, None, error)] * len(group.items))

    def _fault_records(self) -> list[NewRecord]:
        """STORE_FAULT raised (at its start) and cleared (now), for the first
        commit the store takes after refusing: stored with that commit or not at all."""
        fault = self._fault
        if fault is None:
            return []
        now = _now_ms()
        detail = {"error": fault.error, **fault.counts()}
        out = []
        for state, ms, what in (("raised", fault.since_ms, detail), ("cleared", now, {})):
            body = {"code": FAULT_CODE, "state": state, "source": "store", "at": _iso(ms)}
            rid = f"store:{FAULT_CODE}:{state}:{ms}"
            out.append(NewRecord("alarm", rid, {**body, "detail": what}))
        return out

    def _call(self, group: _Group, outcomes: list[Outcome]) -> None:
        try:
            group.then(outcomes)
        except Exception:
            # The record's fate is decided and stored; a bug in what waits on
            # it must not take the writer (and every other record) down.
            self.callback_errors += 1
            log.exception("record_callback_failed", kinds=[i.kind for i in group.items])

    def _evict_step(self) -> bool:
        """One eviction step if the store is over its cap; True when it did one."""
        try:
            return self.store.evict_step()
        except StoreError as exc:
            self.store.eviction_errors += 1
            self.store.last_eviction_error = str(exc)
            log.error("eviction_failed", error=str(exc))
            return False
