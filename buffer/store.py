"""The SQLite store-and-forward: the only copy of every record once committed.

Store first (SPEC D5, D6, D17): a record exists once its transaction is
committed here. The uplink reads what to publish from this store and marks
records sent only after the broker acknowledged the message that carried
them, so a crash, a reboot or a broker that vanished never loses anything —
at worst a record is published twice, and receivers deduplicate on ``rid``.

Opening the file (schema, migrations, WAL and ``synchronous=FULL``, the
integrity check, a corrupt store moved aside) is buffer/schema.py; what the
uplink reads and marks is buffer/outbox.py; the read-only queries are
buffer/queries.py — both mixins of :class:`OrderStore`, on its one connection.

Per nozzle, orders carry ``nseq`` (1, 2, 3 … no gaps) and the SM3 chain
(``prev``, ``h``; platform-interface.md, SPEC F2), both assigned inside the
same transaction as the insert, so they cannot disagree with what is stored.
Insertion order (``id``) is publish order, hence per-nozzle nseq order.

Rows are compact (schema v3, buffer/codec.py): the body is the canonical
JSON deflated against a per-kind preset dictionary, an order's ``h`` is 32
bytes, and its ``rid`` is implied by ``nozzle:nseq``. Every reader goes
through :func:`buffer.codec.to_text`, which also reads v2 rows as they are.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from buffer.capacity import CapacityPolicy, evict, used_bytes
from buffer.codec import cut_prev, encode, h_hex
from buffer.outbox import Outbox, StoredRecord, _now_ms
from buffer.queries import StoreQueries
from buffer.schema import StoreError, _Corrupt, _Transaction, move_aside, open_store
from uplink.chain import GENESIS, HASH_EXCLUDED
from uplink.crypto import sm3_hex
from uplink.envelope import canonical_json

#: Store alarms raised in one millisecond (each eviction pass commits one
#: BUFFER_OVERFLOW): far more than a pass per millisecond can produce.
STORE_ALARM_RID_ATTEMPTS = 1000

#: Records appended between two measurements of the bytes in use (three
#: PRAGMAs): the byte cap is overshot by at most this many records' worth.
SIZE_CHECK_EVERY = 256

#: Envelope ``seq`` numbers are reserved in blocks so that a restart never
#: reuses one (platform-interface.md: strictly increasing across restarts)
#: while costing one commit per block rather than one per message. A crash
#: skips at most this many numbers, which receivers do not mind.
SEQ_BLOCK = 256

#: SQLITE_FULL and SQLITE_IOERR_WRITE/FSYNC (ENOSPC surfaces as either).
_FULL_CODES = frozenset({13, 778, 1034})


class OrderStore(Outbox, StoreQueries):
    """Durable records plus the per-nozzle counters and chains.

    One instance per process, used from the event loop thread only.
    """

    def __init__(self, path: Path, policy: CapacityPolicy | None = None) -> None:
        self.path = path
        self.policy = policy or CapacityPolicy()
        #: Where a store that failed its integrity check was moved (None: it was fine).
        self.moved_aside: Path | None = None
        try:
            self._db = open_store(path)
        except _Corrupt as exc:
            self.moved_aside = move_aside(path)
            self._db = open_store(path)
            self._alarm("STORE_CORRUPT", {"moved_to": str(self.moved_aside), "error": str(exc)})
        self._seq_next, self._seq_limit = 0, 0
        self._init_seq()
        self._count = self._db.execute("SELECT count(*) FROM records").fetchone()[0]
        # A store created as v3 implies an order's rid (NULL); one migrated from
        # v2 keeps rid NOT NULL (changing it means rewriting the table), so its
        # new orders spell the rid out.
        self._rid_implied = not any(
            col[1] == "rid" and col[3] for col in self._db.execute("PRAGMA table_info(records)")
        )
        #: Per-nozzle chain head (nseq, h) of committed orders: saves a query per
        #: order. Only this connection appends orders (one process per store).
        self._heads: dict[str, tuple[int, str]] = {}
        self._since_size_check = SIZE_CHECK_EVERY  # measure at the first append
        #: Bumped by every request_resend: the uplink re-reads from the start.
        self.resend_epoch = 0
        #: Records evicted since open (acknowledged / unsent), for the heartbeat and CLI.
        self.evicted_acknowledged = 0
        self.evicted_unsent = 0
        #: Commits refused for lack of space since the last one that succeeded
        #: (with the time of the first): reported by a STORE_FULL alarm that
        #: goes into the first transaction that fits again.
        self.full_failures = 0
        self._full_since_ms: int | None = None

    def close(self) -> None:
        # A checkpoint on close keeps the WAL from growing across restarts.
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            self._db.close()

    # -- envelope seq ----------------------------------------------------------

    def _init_seq(self) -> None:
        row = self._db.execute("SELECT value FROM meta WHERE key='seq_reserved'").fetchone()
        reserved = row[0] if row else 0
        # Everything up to `reserved` may have been used before a crash: skip it.
        self._seq_next = self._seq_limit = reserved

    def next_seq(self) -> int:
        """The next envelope ``seq``: strictly increasing, also across restarts."""
        if self._seq_next >= self._seq_limit:
            limit = self._seq_limit + SEQ_BLOCK
            with self._failing("reserve envelope seq numbers"), self._transaction():
                self._db.execute(
                    "INSERT INTO meta(key, value) VALUES('seq_reserved', ?) "
                    "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                    (limit,),
                )
            self._seq_limit = limit
        self._seq_next += 1
        return self._seq_next

    # -- writing ---------------------------------------------------------------

    def _transaction(self) -> _Transaction:
        if self._sync_normal:
            # A PUBACK mark could not restore FULL (its transaction stayed open):
            # no record is ever committed without its fsync.
            self._db.execute("PRAGMA synchronous=FULL")
            self._sync_normal = False
        return _Transaction(self._db)

    @contextmanager
    def _failing(self, what: str) -> Iterator[None]:
        """Any SQLite error becomes one StoreError line naming the store and the step,
        so callers (port, uplink, gauge) handle one exception type."""
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot {what}: {exc}") from exc

    def append_order(
        self, nozzle: str, fields: Mapping[str, Any], *, source_key: str
    ) -> StoredRecord | None:
        """Commit one order; assign ``nseq``, ``rid``, ``prev`` and ``h``.

        Returns None, storing nothing, when this nozzle already has an order
        with the same ``source_key`` — the dispenser offered the same record
        again because our confirmation did not reach it.
        """
        return self.append_orders([(nozzle, fields, source_key)])[0]

    def append_orders(
        self, orders: Sequence[tuple[str, Mapping[str, Any], str]]
    ) -> list[StoredRecord | None]:
        """Group commit: ``(nozzle, fields, source_key)`` each, ONE transaction, one fsync.

        All or nothing: on :class:`StoreError` none of them is stored, so a
        caller confirms none of them to its dispenser. Results line up with
        the input (None for a duplicate, also a duplicate within the batch).
        """
        out: list[StoredRecord | None] = []
        heads: dict[str, tuple[int, str]] = {}
        try:
            with self._transaction():
                self._report_full()
                for nozzle, fields, source_key in orders:
                    out.append(self._insert_order(nozzle, fields, source_key, heads))
        except sqlite3.Error as exc:
            self._note_full(exc)
            raise StoreError(f"{self.path}: cannot commit order: {exc}") from exc
        except (TypeError, ValueError) as exc:  # a float or NaN: never published
            raise StoreError(f"{self.path}: refusing order: {exc}") from exc
        self._heads.update(heads)  # committed: the cache may follow
        self._full_cleared()
        self._added(sum(r is not None for r in out))
        return out

    def _read_head(self, nozzle: str) -> tuple[int, str]:
        row = self._db.execute(
            "SELECT nseq, h FROM records WHERE kind='order' AND nozzle=? "
            "ORDER BY nseq DESC LIMIT 1",
            (nozzle,),
        ).fetchone()
        return (row[0], str(h_hex(row[1]))) if row else (0, GENESIS)

    def _insert_order(
        self,
        nozzle: str,
        fields: Mapping[str, Any],
        source_key: str,
        heads: dict[str, tuple[int, str]],
    ) -> StoredRecord | None:
        """Insert inside the caller's transaction; ``heads`` collects the new
        chain heads, which become :attr:`_heads` only once committed."""
        last = heads.get(nozzle) or self._heads.get(nozzle) or self._read_head(nozzle)
        nseq = last[0] + 1
        # Fields outside the hash are never stored (resent: a transport field; h: ours).
        record = {k: v for k, v in fields.items() if k not in HASH_EXCLUDED}
        record.update(rid=f"{nozzle}:{nseq}", nozzle=nozzle, nseq=nseq, prev=last[1])
        # One serialisation for both the hash and the stored body: h is
        # SM3(canonical JSON without h) (uplink/chain.py record_hash), and the
        # body is that text with h appended — valid JSON, parsed by every reader.
        # Stored compact (buffer/codec.py): h and prev as 32 bytes each, the
        # hashed text deflated with prev cut out; to_text() puts both back.
        hashed = canonical_json(record)
        record["h"] = sm3_hex(hashed)
        stored, prev = cut_prev(hashed, last[1])
        # A repeated source_key hits orders_by_source: nothing stored, nseq not used.
        cur = self._db.execute(
            "INSERT INTO records(kind, rid, nozzle, nseq, source_key, h, prev, created_ms, body)"
            " VALUES('order', ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (
                None if self._rid_implied else record["rid"],
                nozzle,
                nseq,
                source_key,
                bytes.fromhex(record["h"]),
                prev,
                _now_ms(),
                encode("order", stored),
            ),
        )
        if cur.rowcount == 0:
            return None
        heads[nozzle] = (nseq, record["h"])
        assert cur.lastrowid is not None
        return StoredRecord(cur.lastrowid, "order", record["rid"], record)

    def append_record(self, kind: str, rid: str, body: Mapping[str, Any]) -> StoredRecord | None:
        """Commit one record of any kind (tank, delivery, leak, alarm …) under ``rid``.

        Idempotent: returns None, storing nothing, when ``(kind, rid)`` is
        already stored — the gauge's same report read twice, or the same
        alarm transition found again. ``rid`` must be stable for one fact
        (docs/uplink-protocol.md lists the rules per kind). Committed in its
        own transaction, like an order: once this returns the record exists.
        """
        # ``resent`` is a transport field the uplink adds; never stored.
        record = {**{k: v for k, v in body.items() if k != "resent"}, "rid": rid}
        try:
            # The envelope seals canonical JSON (no floats): refuse here what could
            # never be published, rather than poison the uplink with it.
            text = encode(kind, canonical_json(record))
        except (TypeError, ValueError) as exc:
            raise StoreError(f"{self.path}: refusing {kind} {rid}: {exc}") from exc
        try:
            with self._transaction():
                self._report_full()
                cur = self._db.execute(
                    "INSERT INTO records(kind, rid, created_ms, body) VALUES(?, ?, ?, ?) "
                    "ON CONFLICT DO NOTHING",
                    (kind, rid, _now_ms(), text),
                )
        except sqlite3.Error as exc:
            self._note_full(exc)
            raise StoreError(f"{self.path}: cannot commit {kind}: {exc}") from exc
        self._full_cleared()
        if cur.rowcount == 0:
            return None
        assert cur.lastrowid is not None
        self._added(1)
        return StoredRecord(cur.lastrowid, kind, rid, record)

    # -- disk full -------------------------------------------------------------

    def _note_full(self, exc: sqlite3.Error) -> None:
        """Count a commit refused for space (SQLITE_FULL, or an I/O error from ENOSPC).

        Nothing is held here: the caller was told (StoreError) and confirms
        nothing — a dispenser keeps its unconfirmed sale and offers it again,
        so the newest records wait where they were made until space returns.
        """
        if getattr(exc, "sqlite_errorcode", None) in _FULL_CODES or "full" in str(exc):
            if self._full_since_ms is None:
                self._full_since_ms = _now_ms()
            self.full_failures += 1

    def _report_full(self) -> None:
        """Inside a transaction: the STORE_FULL alarm of the episode that just ended."""
        if self._full_since_ms is not None:
            self._insert_alarm(
                "STORE_FULL",
                {"since_ms": self._full_since_ms, "refused_commits": self.full_failures},
            )

    def _full_cleared(self) -> None:
        self._full_since_ms = None
        self.full_failures = 0

    # -- capacity --------------------------------------------------------------

    def _added(self, n: int) -> None:
        self._count += n
        self._since_size_check += n
        over = self._count > self.policy.max_records
        if not over and self._since_size_check >= SIZE_CHECK_EVERY:
            self._since_size_check = 0
            with self._failing("measure the store"):
                over = used_bytes(self._db) > self.policy.max_bytes
        if over:
            self.enforce_capacity()

    def enforce_capacity(self) -> None:
        """Evict down below the cap (buffer/capacity.py rules), in one transaction.

        Unsent records evicted are counted in a ``BUFFER_OVERFLOW`` alarm
        committed in that same transaction: they never vanish silently.
        """
        with self._failing("evict records"), self._transaction():
            total = self._db.execute("SELECT count(*) FROM records").fetchone()[0]
            gone = evict(self._db, self.policy, total)
            if gone.unsent_total:
                self._insert_alarm(
                    "BUFFER_OVERFLOW",
                    {"evicted_unsent": gone.unsent_total, "by_kind": gone.unsent},
                )
            self._count = self._db.execute("SELECT count(*) FROM records").fetchone()[0]
        self.evicted_acknowledged += gone.acknowledged
        self.evicted_unsent += gone.unsent_total

    def _alarm(self, code: str, detail: dict[str, Any]) -> None:
        with self._failing(f"commit alarm {code}"), self._transaction():
            self._insert_alarm(code, detail)

    def _insert_alarm(self, code: str, detail: dict[str, Any]) -> None:
        """An ``alarm`` record raised by the store itself (source ``store``)."""
        now = _now_ms()
        at = datetime.fromtimestamp(now / 1000, UTC).isoformat(timespec="milliseconds")
        body = {"code": code, "state": "raised", "source": "store", "at": at, "detail": detail}
        # Two evictions can commit in one millisecond: each alarm is its own
        # record (a BUFFER_OVERFLOW count dropped as a "duplicate" would make
        # the loss silent), so a taken rid moves to the next free millisecond
        # (as collector/sink.py bumps its rids: the documented rid form holds).
        for attempt in range(STORE_ALARM_RID_ATTEMPTS):
            rid = f"store:{code}:raised:{now + attempt}"
            text = encode("alarm", canonical_json({**body, "rid": rid}))
            inserted = self._db.execute(
                "INSERT INTO records(kind, rid, created_ms, body) VALUES('alarm', ?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                (rid, now, text),
            ).rowcount
            if inserted:
                return
        raise sqlite3.IntegrityError(f"no free rid for store alarm {code} at {now}")
