"""Capacity rules for the store: what is kept, what may go, and in which order.

One set of rules for every record kind (docs/store.md):

* the newest :attr:`CapacityPolicy.retain_per_nozzle` orders of every nozzle
  are never evicted (SPEC D4 — and the newest one carries the chain head the
  next order links to);
* above ``max_records`` the oldest *acknowledged* records go first;
* only when unsent records alone still exceed the cap do the oldest unsent
  (non-retained) records go, and the caller commits a ``BUFFER_OVERFLOW``
  alarm that counts exactly how many — eviction of unsent data is never silent;
* local records (waiting for a decision, never published) never go.

Everything here runs inside the caller's transaction; the store evicts in
steps of a bounded number of rows (buffer/store.py ``evict_step``), each its
own transaction, so no step holds the event loop for long.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

#: SPEC D4: at least this many orders per nozzle stay on the gateway.
RETAIN_PER_NOZZLE = 2000

#: Default cap: 30 days of a busy station (arithmetic in docs/store.md):
#: 6 000 records/day x 30 days = 180 000, rounded up with headroom.
MAX_RECORDS = 250_000

#: Default byte cap: of a 256 MB NAND, the OS, the application and logs take
#: the larger half; 100 MiB for records (docs/store.md). Pages in use, not the
#: file size: deleted rows' pages are reused, the file does not shrink.
MAX_BYTES = 100 * 1024 * 1024

#: Evicting exactly down to the cap would evict again on every insert; going
#: this fraction below it makes eviction one batch per ~1 % of the cap.
HYSTERESIS = 0.01

# Rows that may go, oldest first: not the newest `retain` orders of a nozzle
# (D4; the nozzle's top nseq is one seek in orders_by_nozzle per candidate, not
# a scan of every order), not the store's own alarms (BUFFER_OVERFLOW counts
# must survive the overflow they count; there are few of them), and not local
# records (sent_ms 0: they wait for a decision and are never published).
_EVICTABLE = """
SELECT r.id, r.kind FROM records AS r
WHERE {sent} AND NOT (r.kind = 'order' AND r.nseq > (
        SELECT max(t.nseq) FROM records AS t WHERE t.kind = 'order' AND t.nozzle = r.nozzle
      ) - ?)
  AND NOT (r.kind = 'alarm' AND r.rid LIKE 'store:%')
ORDER BY r.id LIMIT ?
"""


@dataclass(frozen=True, slots=True)
class CapacityPolicy:
    max_records: int = MAX_RECORDS
    retain_per_nozzle: int = RETAIN_PER_NOZZLE
    max_bytes: int = MAX_BYTES

    def __post_init__(self) -> None:
        # The newest order of a nozzle is its chain head: never evictable.
        if self.retain_per_nozzle < 1:
            raise ValueError("retain_per_nozzle must be at least 1 (the chain head)")

    def target(self, total: int, used_bytes: int) -> int:
        """How many records remain after an eviction pass: below both caps
        (the byte cap converted at the store's current bytes per record)."""
        by_count = self.max_records - int(self.max_records * HYSTERESIS)
        if used_bytes > self.max_bytes and total:
            goal = self.max_bytes - int(self.max_bytes * HYSTERESIS)
            by_count = min(by_count, total * goal // used_bytes)
        return max(0, by_count)


@dataclass(frozen=True, slots=True)
class Eviction:
    acknowledged: int
    unsent: dict[str, int]

    @property
    def unsent_total(self) -> int:
        return sum(self.unsent.values())


def used_bytes(db: sqlite3.Connection) -> int:
    """Bytes of pages holding data (the file minus its free pages)."""
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    free = db.execute("PRAGMA freelist_count").fetchone()[0]
    size = db.execute("PRAGMA page_size").fetchone()[0]
    return int((pages - free) * size)


def evict(db: sqlite3.Connection, policy: CapacityPolicy, limit: int) -> Eviction:
    """Delete ``limit`` records: the oldest acknowledged ones, and only when none
    of those may go, the oldest unsent ones — then one more, for the
    BUFFER_OVERFLOW alarm the caller commits with them takes a place (else
    each step would add as many records as it removed). How many of each went."""
    rows = db.execute(
        _EVICTABLE.format(sent="r.sent_ms > 0"), (policy.retain_per_nozzle, limit)
    ).fetchall()
    unsent: dict[str, int] = {}
    if not rows:
        rows = db.execute(
            _EVICTABLE.format(sent="r.sent_ms IS NULL"), (policy.retain_per_nozzle, limit + 1)
        ).fetchall()
        for _, kind in rows:
            unsent[kind] = unsent.get(kind, 0) + 1
    db.executemany("DELETE FROM records WHERE id=?", [(i,) for i, _ in rows])
    return Eviction(0 if unsent else len(rows), unsent)
