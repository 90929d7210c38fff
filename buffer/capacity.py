"""Capacity rules for the store: what is kept, what may go, and in which order.

One set of rules for every record kind (docs/store.md):

* the newest :attr:`CapacityPolicy.retain_per_nozzle` orders of every nozzle
  are never evicted (SPEC D4 — and the newest one carries the chain head the
  next order links to);
* above ``max_records`` the oldest *acknowledged* records go first (in
  sweeps of the table in id order);
* only when unsent records alone still exceed the cap do the oldest unsent
  (non-retained) records go, and the caller commits a ``BUFFER_OVERFLOW``
  alarm that counts exactly how many — eviction of unsent data is never silent;
* local records (waiting for a decision, never published) never go.

Everything here runs inside the caller's transaction; the store evicts in
steps (buffer/eviction.py ``evict_step``), each its own transaction looking at a
bounded window of rows, sweeping the table in id order from where the last
step stopped: no step holds the event loop for long, and rows that may not
go (retained orders) are looked at once per sweep, not once per step. A
retained order that becomes evictable is taken by the next sweep.
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

#: Rows one eviction step looks at (whatever it finds): the step's cost is
#: bounded even where the oldest rows may not go (a quiet nozzle's newest 2000
#: orders can be the oldest months of the table): a few ms here.
EXAMINE = 256


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
    #: Where the next step looks from (the id after the last row this one examined).
    cursor: int = 0
    #: True when this step reached the end of the table: a sweep is over.
    swept: bool = False

    @property
    def unsent_total(self) -> int:
        return sum(self.unsent.values())


def used_bytes(db: sqlite3.Connection) -> int:
    """Bytes of pages holding data (the file minus its free pages)."""
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    free = db.execute("PRAGMA freelist_count").fetchone()[0]
    size = db.execute("PRAGMA page_size").fetchone()[0]
    return int((pages - free) * size)


def evict(
    db: sqlite3.Connection,
    policy: CapacityPolicy,
    limit: int,
    *,
    cursor: int,
    unsent: bool,
    tops: dict[str, int],
) -> Eviction:
    """One step of a sweep in id order from ``cursor``: look at :data:`EXAMINE`
    rows and delete up to ``limit`` of those that may go — acknowledged ones,
    or with ``unsent`` the unsent ones, then one more, for the BUFFER_OVERFLOW
    alarm the caller commits with them takes a place (else each step would add
    as many records as it removed).

    May go: not the newest ``retain_per_nozzle`` orders of a nozzle (D4; the
    nozzle's top nseq is one seek in ``orders_by_nozzle``), not the store's own
    alarms (BUFFER_OVERFLOW counts must survive the overflow they count), not
    local records (``sent_ms`` 0: they wait for a decision, never published).
    The caller sweeps acknowledged rows first and unsent rows only once a
    whole sweep found no acknowledged one to take. ``tops`` caches each
    nozzle's top nseq for a sweep: one read behind the newest orders only
    keeps more of them, never fewer.
    """
    # Acknowledged: the next rows whatever they are (a filter on sent_ms in SQL
    # would read on past every unsent row to fill the window); unsent: the
    # next rows of the unsent index.
    where = "sent_ms IS NULL AND id > ?" if unsent else "id > ?"
    window = db.execute(
        f"SELECT id, kind, nozzle, nseq, rid, sent_ms FROM records WHERE {where} "
        "ORDER BY id LIMIT ?",
        (cursor, EXAMINE),
    ).fetchall()

    def retained(nozzle: str, nseq: int) -> bool:
        if nozzle not in tops:
            tops[nozzle] = db.execute(
                "SELECT max(nseq) FROM records WHERE kind='order' AND nozzle=?", (nozzle,)
            ).fetchone()[0]
        return nseq > tops[nozzle] - policy.retain_per_nozzle

    take = limit + 1 if unsent else limit
    gone: list[tuple[int, str]] = []
    last = cursor
    for rowid, kind, nozzle, nseq, rid, sent_ms in window:
        last = rowid
        if not unsent and not sent_ms:
            continue  # unsent (NULL) or local (0)
        if kind == "order" and retained(nozzle, nseq):
            continue
        if kind == "alarm" and rid is not None and rid.startswith("store:"):
            continue
        gone.append((rowid, kind))
        if len(gone) == take:
            break
    db.executemany("DELETE FROM records WHERE id=?", [(i,) for i, _ in gone])
    by_kind: dict[str, int] = {}
    if unsent:
        for _, kind in gone:
            by_kind[kind] = by_kind.get(kind, 0) + 1
    swept = len(window) < EXAMINE and len(gone) < take
    return Eviction(0 if unsent else len(gone), by_kind, 0 if swept else last, swept)
