"""The store's eviction steps: the cap kept after the commits, a little at a time.

A mixin of :class:`buffer.store.OrderStore` (its one connection, its kept
counts). buffer/capacity.py says what may go; this keeps the state of the
sweep across steps — the count to get down to, where the next step looks
from, whether it looks at unsent rows — and commits each step. The store's
writer (buffer/writer.py) runs one step after each commit while the store
is over its cap; the direct appends of tests and tools run a whole pass.
"""

from __future__ import annotations

from collections import Counter
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from buffer.capacity import HYSTERESIS, CapacityPolicy, evict, used_bytes
from buffer.outbox import Outbox
from buffer.schema import StoreError

if TYPE_CHECKING:
    from buffer.schema import _Transaction

#: Records one eviction step deletes (one transaction): the loop stays free
#: for the ports between steps; a pass down to 1 % below the cap is ~20 steps.
EVICT_CHUNK = 128

#: Records appended between two measurements of the bytes in use (three
#: PRAGMAs): the byte cap is overshot by at most this many records' worth.
SIZE_CHECK_EVERY = 256


class EvictionSteps(Outbox):
    """Eviction in bounded steps after the commits (OrderStore's part; on the
    outbox, whose PUBACK marks send the sweep back to acknowledged rows)."""

    policy: CapacityPolicy
    _count: int
    _since_size_check: int
    _tx_added: Counter[str]

    if TYPE_CHECKING:

        def _failing(self, what: str) -> AbstractContextManager[None]: ...

        def _transaction(self) -> _Transaction: ...

        def _committed(self, added: Counter[str]) -> None: ...

        def _insert_alarm(
            self, code: str, detail: dict[str, Any], *, rid: str | None = None
        ) -> None: ...

    def _init_eviction(self) -> None:
        #: Records evicted since open (acknowledged / unsent), for the heartbeat and CLI.
        self.evicted_acknowledged = 0
        self.evicted_unsent = 0
        #: Eviction steps that failed after their records were committed.
        self.eviction_errors = 0
        self.last_eviction_error = ""
        #: While evicting: the record count to get down to (hysteresis).
        self._evict_to: int | None = None
        #: After a pass that found nothing that may go: no pass below this count.
        self._nothing_to_evict_below = 0
        #: The sweep: where the next step looks from, how many the current
        #: sweep took, sweeps in a row that took nothing.
        self._evict_cursor = 0
        self._evict_unsent = False
        self._swept_went = 0
        self._idle_sweeps = 0
        self._evict_tops: dict[str, int] = {}  # nozzle → top nseq, for one sweep

    def over_capacity(self) -> bool:
        """True while the store is above its cap (or still evicting down to 1 %
        below it: the hysteresis of buffer/capacity.py). The bytes in use are
        measured every :data:`SIZE_CHECK_EVERY` records (three PRAGMAs)."""
        if self._evict_to is not None:
            return True
        if self._count < self._nothing_to_evict_below:
            return False  # the last pass found nothing that may go: not before 1 % more
        over = self._count > self.policy.max_records
        if not over and self._since_size_check >= SIZE_CHECK_EVERY:
            self._since_size_check = 0
            with self._failing("measure the store"):
                over = used_bytes(self._db) > self.policy.max_bytes
        if over:
            with self._failing("measure the store"):
                self._evict_to = self.policy.target(self._count, used_bytes(self._db))
        return over

    def evict_step(self, limit: int = EVICT_CHUNK) -> bool:
        """One eviction transaction of at most ``limit`` records (buffer/capacity.py
        rules: a window of the table swept in id order), while
        :meth:`over_capacity`; True while the pass wants another step.

        Unsent records evicted are counted in a ``BUFFER_OVERFLOW`` alarm
        committed in that same transaction: they never vanish silently.
        Committed without an fsync of its own: a step lost to a power cut
        only brings its records (and its alarm) back.
        """
        if not self.over_capacity() or self._evict_to is None:
            return False
        n = max(0, min(limit, self._count - self._evict_to))
        self._tx_added = Counter()
        with self._failing("evict records"), self._no_fsync(), self._transaction():
            gone = evict(
                self._db,
                self.policy,
                n,
                cursor=self._evict_cursor,
                unsent=self._evict_unsent,
                tops=self._evict_tops,
            )
            if gone.unsent_total:
                self._insert_alarm(
                    "BUFFER_OVERFLOW", {"evicted_unsent": gone.unsent_total, "by_kind": gone.unsent}
                )
        self._committed(self._tx_added)
        went = gone.acknowledged + gone.unsent_total
        self._count -= went
        for kind, k in gone.unsent.items():
            self._unsent[kind] -= k
        self.evicted_acknowledged += gone.acknowledged
        self.evicted_unsent += gone.unsent_total
        self._evict_cursor = gone.cursor
        self._swept_went += went
        if gone.swept:
            self._evict_tops.clear()
            self._idle_sweeps = 0 if self._swept_went else self._idle_sweeps + 1
            if self._idle_sweeps >= 2:
                # A sweep of each found nothing that may go: retained orders
                # alone exceed the cap (D4 wins over the cap). Look again once
                # the store grew by the hysteresis, not after every commit.
                step = max(1, int(self.policy.max_records * HYSTERESIS))
                self._nothing_to_evict_below = self._count + step
                self._evict_to = None
                self._idle_sweeps = 0
            # Unsent rows only after a sweep that found no acknowledged one to
            # take; after a sweep of unsent rows, acknowledged ones again.
            self._evict_unsent = not self._evict_unsent and self._swept_went == 0
            self._swept_went = 0
        if self._evict_to is not None and self._count <= self._evict_to:
            self._evict_to = None  # down to the target (the sweep goes on at the next pass)
        return self._evict_to is not None

    def enforce_capacity(self) -> None:
        """Evict down below the cap now, in steps (:meth:`evict_step`)."""
        while self.evict_step():
            pass

    def enforce_capacity_after_commit(self) -> None:
        """:meth:`enforce_capacity` after records were committed: a failure is
        counted and kept (:attr:`eviction_errors`, :attr:`last_eviction_error`),
        never raised — the records are stored whatever eviction does."""
        try:
            self.enforce_capacity()
        except StoreError as exc:
            self.eviction_errors += 1
            self.last_eviction_error = str(exc)
