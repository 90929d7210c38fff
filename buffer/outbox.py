"""The uplink's side of the store: what is unsent, PUBACK marks, resends.

A mixin of :class:`buffer.store.OrderStore` (the one connection, the one
object): the uplink pages through unsent records in publish order
(:meth:`Outbox.unsent_page`), marks them sent only once the broker
acknowledged the message that carried them (:meth:`Outbox.mark_published`),
and ``orders.resend`` makes stored orders unsent again under a new resend
generation (:meth:`Outbox.request_resend`, SPEC D5, D8).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from buffer.codec import to_text

if TYPE_CHECKING:
    from buffer.schema import _Transaction

#: The publishable rid of a row: orders store NULL and imply ``nozzle:nseq``.
RID_SQL = "coalesce(rid, nozzle || ':' || nseq)"

#: ``sent_ms`` of a local record (buffer/commits.py ``NewRecord.local``): not
#: NULL, so the uplink never reads it; 0, so eviction (which takes rows sent
#: at a real time, ``sent_ms > 0``) never removes it.
LOCAL_SENT_MS = 0


@dataclass(frozen=True, slots=True)
class StoredRecord:
    id: int
    kind: str
    rid: str
    body: dict[str, Any]
    #: Resend generation this copy was read under (0: first publication).
    resent: int = 0
    #: The stored canonical JSON (from :meth:`OrderStore.unsent_page`, else None).
    text: str | None = None


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def to_ms(value: str | int) -> int:
    """Epoch milliseconds from ms or ISO 8601 (an offset is required: no guessing)."""
    if isinstance(value, int):
        return value
    at = datetime.fromisoformat(value)
    if at.tzinfo is None:
        raise ValueError(f"time without an offset: {value!r}")
    return int(at.timestamp() * 1000)


class Outbox:
    """Unsent records, their PUBACK marks and resend generations (OrderStore's part)."""

    _db: sqlite3.Connection
    resend_epoch: int  # OrderStore.__init__ sets it
    #: Unsent records per kind, kept as records come, are marked and go
    #: (OrderStore.__init__ counts them once).
    _unsent: dict[str, int]
    #: True when a PUBACK mark could not put synchronous back to FULL.
    _sync_normal: bool = False
    #: The eviction sweep looks at unsent rows (OrderStore.evict_step).
    _evict_unsent: bool = False

    if TYPE_CHECKING:

        def _failing(self, what: str) -> AbstractContextManager[None]: ...

        def _transaction(self) -> _Transaction: ...

    def _unsent_rows(self, after_id: int, limit: int) -> list[tuple[int, str, str, str, int]]:
        """(id, kind, rid, stored text, resent) of unsent records, ``id > after_id``."""
        with self._failing("read unsent records"):
            rows = self._db.execute(
                f"SELECT id, kind, {RID_SQL}, body, h, prev, resent FROM records "
                "WHERE sent_ms IS NULL AND id > ? ORDER BY id LIMIT ?",
                (after_id, limit),
            ).fetchall()
        return [(r[0], r[1], r[2], to_text(r[3], r[4], r[5]), r[6]) for r in rows]

    def unsent(self, after_id: int, limit: int) -> list[StoredRecord]:
        """Unsent records with ``id > after_id`` in publish order, bodies parsed."""
        return [
            StoredRecord(i, kind, rid, json.loads(text), resent)
            for i, kind, rid, text, resent in self._unsent_rows(after_id, limit)
        ]

    def unsent_page(self, after_id: int, limit: int) -> list[StoredRecord]:
        """Like :meth:`unsent`, for the uplink: the stored text, not parsed
        (``body`` is empty) — a backlog drains without a JSON round trip."""
        return [
            StoredRecord(i, kind, rid, {}, resent, text)
            for i, kind, rid, text, resent in self._unsent_rows(after_id, limit)
        ]

    def unsent_counts(self) -> dict[str, int]:
        """Unsent records per kind (the heartbeat's ``unsent``): kept as they
        change, never counted on the table (tens of ms at 250 000 rows)."""
        return {kind: n for kind, n in self._unsent.items() if n}

    def mark_published(self, records: Sequence[StoredRecord]) -> None:
        """PUBACK for these copies (one transaction per acknowledged batch).

        A record whose resend was requested after this copy was read keeps
        its newer generation and stays unsent: the resend is not lost to the
        acknowledgement of the older copy still in flight.

        Committed without an fsync of its own (synchronous=NORMAL; records
        always commit FULL): a mark lost to a power cut only makes its
        records unsent again, so they are published twice, which the
        contract allows (receivers deduplicate on ``rid``). WAL stays
        consistent either way, and the next record's FULL commit fsyncs the
        WAL, these marks with it. Why: with 32 busy ports this fsync was the
        largest single item on the event loop (docs/performance.md, profile).
        """
        if not records:
            return
        now = _now_ms()
        by_kind: dict[str, list[tuple[int, int, int]]] = {}
        for r in records:
            by_kind.setdefault(r.kind, []).append((now, r.id, r.resent))
        marked: dict[str, int] = {}
        with self._failing("mark records sent"), self._no_fsync(), self._transaction():
            for kind, rows in by_kind.items():
                marked[kind] = self._db.executemany(
                    "UPDATE records SET sent_ms=? WHERE id=? AND sent_ms IS NULL AND resent=?",
                    rows,
                ).rowcount
        for kind, n in marked.items():
            self._unsent[kind] = self._unsent.get(kind, 0) - n
        if any(marked.values()):
            self._evict_unsent = False  # acknowledged rows exist: they go first

    @contextmanager
    def _no_fsync(self) -> Iterator[None]:
        """The enclosed commit without an fsync of its own (synchronous=NORMAL);
        FULL again after it, for every record's commit. PUBACK marks only."""
        self._db.execute("PRAGMA synchronous=NORMAL")
        try:
            yield
        finally:
            # A COMMIT whose ROLLBACK failed too leaves the transaction open and
            # SQLite refuses the PRAGMA, which would hide the real error: then
            # the next transaction (OrderStore._transaction) restores FULL first.
            if self._db.in_transaction:
                self._sync_normal = True
            else:
                self._db.execute("PRAGMA synchronous=FULL")

    def request_resend(
        self,
        *,
        nozzle: str | None = None,
        from_nseq: int | None = None,
        to_nseq: int | None = None,
        since: str | int | None = None,
        until: str | int | None = None,
    ) -> int:
        """``orders.resend``: publish these stored orders again with ``resent: true``.

        Selects orders (sent or not, while not evicted) by nozzle, inclusive
        nseq range and inclusive commit-time range (``since``/``until``: epoch
        milliseconds, or ISO 8601 with offset; docs/store.md). Returns how many
        were marked. rid, nseq and ``h`` are unchanged; publish order stays id
        order, so per-nozzle nseq order holds for the resent copies too.
        """
        where, args = ["kind='order'"], []
        for sql, value in (
            ("nozzle=?", nozzle),
            ("nseq>=?", from_nseq),
            ("nseq<=?", to_nseq),
            ("created_ms>=?", None if since is None else to_ms(since)),
            ("created_ms<=?", None if until is None else to_ms(until)),
        ):
            if value is not None:
                where.append(sql)
                args.append(value)
        condition = " AND ".join(where)
        with self._failing("mark records for resend"), self._transaction():
            gen = self._db.execute("SELECT coalesce(max(resent), 0) + 1 FROM records").fetchone()[0]
            sent = self._db.execute(
                f"SELECT count(*) FROM records WHERE {condition} AND sent_ms IS NOT NULL", args
            ).fetchone()[0]
            cur = self._db.execute(
                f"UPDATE records SET sent_ms=NULL, resent=? WHERE {condition}", (gen, *args)
            )
        self._unsent["order"] = self._unsent.get("order", 0) + sent
        self.resend_epoch += 1
        return cur.rowcount
