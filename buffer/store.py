"""The SQLite store-and-forward: the only copy of every record once committed.

Store first (SPEC D5, D6, D17): a record exists once its transaction is
committed here. The uplink reads what to publish from this store and marks
records sent only after the broker acknowledged the message that carried
them, so a crash, a reboot or a broker that vanished never loses anything —
at worst a record is published twice, and receivers deduplicate on ``rid``.

Durability settings (argued in docs/decisions.md):

* ``journal_mode=WAL`` — readers never block the writer, and a commit is one
  sequential append to the WAL instead of rewriting pages in place (fewer
  flash erase blocks touched per order);
* ``synchronous=FULL`` — in WAL mode ``NORMAL`` may lose the last
  transactions on power loss; ``FULL`` fsyncs the WAL on every commit, which
  is what "committed" must mean for a regulator's record;
* ``PRAGMA quick_check`` at open — a store damaged by a power cut is found
  before anything is appended to it.

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

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from buffer.capacity import CapacityPolicy, evict, used_bytes
from buffer.codec import cut_prev, encode, h_hex, to_text
from uplink.chain import GENESIS, HASH_EXCLUDED
from uplink.crypto import sm3_hex
from uplink.envelope import canonical_json

#: Schema version in ``PRAGMA user_version``; migrations key on it.
SCHEMA_VERSION = 3

#: Migrations from each older ``user_version`` to the next (v1 → v2: the
#: resend generation column; v2 → v3: the order indexes without ``kind``, which
#: their partial WHERE already implies — v2 rows themselves stay as they are,
#: buffer/codec.py reads both). A gateway's existing store opens unchanged.
#: The way back one step is buffer/migrate.py (used by an OTA rollback).
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: ("ALTER TABLE records ADD COLUMN resent INTEGER NOT NULL DEFAULT 0",),
    2: (
        "ALTER TABLE records ADD COLUMN prev BLOB",
        "DROP INDEX IF EXISTS records_by_nozzle",
        "DROP INDEX IF EXISTS records_by_source",
        "CREATE UNIQUE INDEX orders_by_nozzle ON records (nozzle, nseq) WHERE kind = 'order'",
        "CREATE UNIQUE INDEX orders_by_source ON records (nozzle, source_key) WHERE kind = 'order'",
    ),
}

#: The publishable rid of a row: orders store NULL and imply ``nozzle:nseq``.
RID_SQL = "coalesce(rid, nozzle || ':' || nseq)"

#: Store alarms raised in one millisecond (each eviction pass commits one
#: BUFFER_OVERFLOW): far more than a pass per millisecond can produce.
STORE_ALARM_RID_ATTEMPTS = 1000

#: Records appended between two measurements of the bytes in use (three
#: PRAGMAs): the byte cap is overshot by at most this many records' worth.
SIZE_CHECK_EVERY = 256

#: Pages the WAL may hold before SQLite checkpoints it into the database
#: (SQLite's default, 1000 x 4 KiB ≈ 4 MiB): small enough for 64 MB of RAM
#: and the page cache, large enough that checkpoints are rare sequential writes.
WAL_AUTOCHECKPOINT_PAGES = 1000

#: Envelope ``seq`` numbers are reserved in blocks so that a restart never
#: reuses one (platform-interface.md: strictly increasing across restarts)
#: while costing one commit per block rather than one per message. A crash
#: skips at most this many numbers, which receivers do not mind.
SEQ_BLOCK = 256

#: How long a commit waits for a lock another connection holds (a technician's
#: sqlite3 shell, the CLI). Calls run on the event loop: a longer wait would
#: freeze every port; a failed commit is retried (the pump re-offers the sale).
BUSY_TIMEOUT_MS = 200

#: Page size for a new store: 4 KiB matches the NAND page / UBIFS block the
#: gateway's flash writes in, so one page write is one flash program.
PAGE_SIZE = 4096

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    id          INTEGER PRIMARY KEY,   -- insertion order = publish order
    kind        TEXT    NOT NULL,      -- order, tank, delivery, leak, alarm, nozzle
    rid         TEXT,                  -- idempotency key, stable forever (orders: NULL, implied)
    nozzle      TEXT,                  -- nozzle key for per-nozzle records
    nseq        INTEGER,               -- per-nozzle counter (orders)
    source_key  TEXT,                  -- the dispenser's identity of the record
    h           BLOB,                  -- chain hash, 32 bytes (orders; v2 rows: hex)
    created_ms  INTEGER NOT NULL,
    body        BLOB    NOT NULL,      -- buffer/codec.py (v2 rows: canonical JSON text)
    sent_ms     INTEGER,               -- NULL until the broker acknowledged it
    resent      INTEGER NOT NULL DEFAULT 0, -- resend generation; 0 = never asked
    prev        BLOB                   -- previous h, 32 bytes, cut out of body (orders, v3)
);
-- A partial index, not a UNIQUE constraint: orders (rid implied, NULL) cost
-- nothing in it. A store migrated from v2 keeps its UNIQUE (kind, rid).
CREATE UNIQUE INDEX IF NOT EXISTS records_by_rid ON records (kind, rid) WHERE rid IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS orders_by_nozzle
    ON records (nozzle, nseq) WHERE kind = 'order';
CREATE UNIQUE INDEX IF NOT EXISTS orders_by_source
    ON records (nozzle, source_key) WHERE kind = 'order';
CREATE INDEX IF NOT EXISTS records_unsent ON records (id) WHERE sent_ms IS NULL;
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""


class StoreError(RuntimeError):
    """The store cannot be opened or written; the message is one clear line."""


class _Corrupt(StoreError):
    """The file is not a sound SQLite store: move it aside and start afresh."""


def move_aside(path: Path) -> Path:
    """Rename a damaged store (and its -wal/-shm) to ``<name>.corrupt-<UTC stamp>``.

    Kept, not deleted: what it holds may still be recovered by hand
    (``sqlite3 … .recover``) and the platform is told where it is.
    """
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    for suffix in ("", "-wal", "-shm"):
        src = path.with_name(path.name + suffix)
        if src.exists():
            src.rename(target.with_name(target.name + suffix))
    return target


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


#: SQLITE_FULL and SQLITE_IOERR_WRITE/FSYNC (ENOSPC surfaces as either).
_FULL_CODES = frozenset({13, 778, 1034})


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


class OrderStore:
    """Durable records plus the per-nozzle counters and chains.

    One instance per process, used from the event loop thread only.
    """

    def __init__(self, path: Path, policy: CapacityPolicy | None = None) -> None:
        self.path = path
        self.policy = policy or CapacityPolicy()
        #: Where a store that failed its integrity check was moved (None: it was fine).
        self.moved_aside: Path | None = None
        try:
            self._db = self._open(path)
        except _Corrupt as exc:
            self.moved_aside = move_aside(path)
            self._db = self._open(path)
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

    # -- opening ---------------------------------------------------------------

    @staticmethod
    def _open(path: Path) -> sqlite3.Connection:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=True)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"{path}: cannot open store: {exc}") from exc
        try:
            db.execute(f"PRAGMA page_size={PAGE_SIZE}")
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise StoreError(f"{path}: cannot switch the store to WAL (got {mode})")
            db.execute("PRAGMA synchronous=FULL")
            db.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
            db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            check = db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise _Corrupt(f"{path}: store failed its integrity check: {check}")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:  # a new file: the current schema, nothing to migrate
                db.executescript(_SCHEMA)
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                version = SCHEMA_VERSION
            while 0 < version < SCHEMA_VERSION:
                with _Transaction(db):
                    for statement in _MIGRATIONS[version]:
                        db.execute(statement)
                    version += 1
                    db.execute(f"PRAGMA user_version={version}")
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{path}: store schema {version} is newer than the {SCHEMA_VERSION} "
                    "this version reads"
                )
        except sqlite3.DatabaseError as exc:
            db.close()
            if isinstance(exc, sqlite3.OperationalError):
                raise StoreError(f"{path}: cannot use store: {exc}") from exc
            # "file is not a database", "database disk image is malformed"
            raise _Corrupt(f"{path}: store unreadable: {exc}") from exc
        except StoreError:
            db.close()
            raise
        return db

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
        # the loss silent), so a taken rid gets the next free suffix.
        for attempt in range(STORE_ALARM_RID_ATTEMPTS):
            rid = f"store:{code}:raised:{now}" + (f":{attempt}" if attempt else "")
            text = encode("alarm", canonical_json({**body, "rid": rid}))
            inserted = self._db.execute(
                "INSERT INTO records(kind, rid, created_ms, body) VALUES('alarm', ?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                (rid, now, text),
            ).rowcount
            if inserted:
                return
        raise sqlite3.IntegrityError(f"no free rid for store alarm {code} at {now}")

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
        with self._failing("mark records sent"), self._no_fsync(), self._transaction():
            self._db.executemany(
                "UPDATE records SET sent_ms=? WHERE id=? AND sent_ms IS NULL AND resent=?",
                [(now, r.id, r.resent) for r in records],
            )

    @contextmanager
    def _no_fsync(self) -> Iterator[None]:
        """The enclosed commit without an fsync of its own (synchronous=NORMAL);
        FULL again after it, for every record's commit. PUBACK marks only."""
        self._db.execute("PRAGMA synchronous=NORMAL")
        try:
            yield
        finally:
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
        with self._failing("mark records for resend"), self._transaction():
            gen = self._db.execute("SELECT coalesce(max(resent), 0) + 1 FROM records").fetchone()[0]
            cur = self._db.execute(
                f"UPDATE records SET sent_ms=NULL, resent=? WHERE {' AND '.join(where)}",
                (gen, *args),
            )
        self.resend_epoch += 1
        return cur.rowcount

    # -- reading ---------------------------------------------------------------

    def unsent(self, after_id: int, limit: int) -> list[StoredRecord]:
        """Unsent records with ``id > after_id`` in publish order."""
        with self._failing("read unsent records"):
            rows = self._db.execute(
                f"SELECT id, kind, {RID_SQL}, body, h, prev, resent FROM records "
                "WHERE sent_ms IS NULL AND id > ? ORDER BY id LIMIT ?",
                (after_id, limit),
            ).fetchall()
        return [
            StoredRecord(r[0], r[1], r[2], json.loads(to_text(r[3], r[4], r[5])), r[6])
            for r in rows
        ]

    def unsent_page(self, after_id: int, limit: int) -> list[StoredRecord]:
        """Like :meth:`unsent`, for the uplink: the stored text, not parsed
        (``body`` is empty) — a backlog drains without a JSON round trip."""
        with self._failing("read unsent records"):
            rows = self._db.execute(
                f"SELECT id, kind, {RID_SQL}, body, h, prev, resent FROM records "
                "WHERE sent_ms IS NULL AND id > ? ORDER BY id LIMIT ?",
                (after_id, limit),
            ).fetchall()
        return [StoredRecord(r[0], r[1], r[2], {}, r[6], to_text(r[3], r[4], r[5])) for r in rows]

    def unsent_counts(self) -> dict[str, int]:
        with self._failing("count unsent records"):
            rows = self._db.execute(
                "SELECT kind, count(*) FROM records WHERE sent_ms IS NULL GROUP BY kind"
            ).fetchall()
        return {kind: n for kind, n in rows}

    def orders(self, nozzle: str | None = None) -> Iterator[dict[str, Any]]:
        """Stored orders (one nozzle, or all) in nozzle then nseq order."""
        if nozzle is None:
            cur = self._db.execute(
                "SELECT body, h, prev FROM records WHERE kind='order' ORDER BY nozzle, nseq"
            )
        else:
            cur = self._db.execute(
                "SELECT body, h, prev FROM records WHERE kind='order' AND nozzle=? ORDER BY nseq",
                (nozzle,),
            )
        for body, h, prev in cur:
            yield json.loads(to_text(body, h, prev))

    def order_volume_since(self, nozzles: Iterable[str], since_ms: int) -> Decimal:
        """Litres sold by ``nozzles`` in the orders committed at or after ``since_ms``.

        Summed as :class:`~decimal.Decimal` from the orders' decimal strings,
        so the wet-stock balance (SPEC A8) is exact to the dispensers' digits.
        """
        keys = sorted(set(nozzles))
        if not keys:
            return Decimal(0)
        marks = ",".join("?" * len(keys))
        rows = self._db.execute(
            "SELECT body, h, prev FROM records WHERE kind='order' "
            f"AND nozzle IN ({marks}) AND created_ms >= ?",
            (*keys, since_ms),
        ).fetchall()
        # Inflated here, not json_extract'ed in SQL: bodies are compressed (v3).
        volumes = (json.loads(to_text(*row)).get("volume") for row in rows)
        return sum((Decimal(str(v)) for v in volumes if v is not None), Decimal(0))

    def ping(self) -> bool:
        """True when the database answers a read (the watchdog's store check)."""
        try:
            return self._db.execute("SELECT count(*) FROM meta").fetchone() is not None
        except sqlite3.Error:
            return False

    def last_order(self, nozzle: str) -> dict[str, Any] | None:
        """The newest order of ``nozzle`` (highest nseq), or None: the edge checks'
        reference after a restart (SPEC A1)."""
        with self._failing("read the last order"):
            row = self._db.execute(
                "SELECT body, h, prev FROM records WHERE kind='order' AND nozzle=? "
                "ORDER BY nseq DESC LIMIT 1",
                (nozzle,),
            ).fetchone()
        return None if row is None else dict(json.loads(to_text(*row)))

    def last_order_under(self, prefix: str) -> dict[str, Any] | None:
        """The newest order of any nozzle whose key starts with ``prefix`` (a pump:
        ``"p01.a1."``), by commit order: the pump counter check's reference (A7)."""
        # A range on the indexed key instead of LIKE: '/' sorts right after '.'.
        upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        with self._failing("read the last order"):
            row = self._db.execute(
                "SELECT body, h, prev FROM records WHERE kind='order' "
                "AND nozzle >= ? AND nozzle < ? ORDER BY id DESC LIMIT 1",
                (prefix, upper),
            ).fetchone()
        return None if row is None else dict(json.loads(to_text(*row)))

    def last_record_under(self, kind: str, rid_prefix: str) -> dict[str, Any] | None:
        """The newest record of ``kind`` whose rid starts with ``rid_prefix``
        (a nozzle's last identity: ``"p01.a1.n1:components:"``), or None."""
        upper = rid_prefix[:-1] + chr(ord(rid_prefix[-1]) + 1)
        with self._failing("read the last record"):
            row = self._db.execute(
                "SELECT body, h, prev FROM records WHERE kind=? AND rid >= ? AND rid < ? "
                "ORDER BY id DESC LIMIT 1",
                (kind, rid_prefix, upper),
            ).fetchone()
        return None if row is None else dict(json.loads(to_text(*row)))

    def is_published(self, kind: str, rid: str) -> bool | None:
        """Whether the record ``(kind, rid)`` was acknowledged by the broker
        (None: no such record). ``config.set`` confirms a change on it."""
        with self._failing("read a record's state"):
            row = self._db.execute(
                "SELECT sent_ms FROM records WHERE kind=? AND rid=?", (kind, rid)
            ).fetchone()
        return None if row is None else row[0] is not None

    def records(self, kind: str) -> Iterator[dict[str, Any]]:
        """Stored records of one kind, in store order."""
        cur = self._db.execute(
            "SELECT body, h, prev FROM records WHERE kind=? ORDER BY id", (kind,)
        )
        for body, h, prev in cur:
            yield json.loads(to_text(body, h, prev))


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (or ``ROLLBACK`` on any exception).

    IMMEDIATE takes the write lock up front, so a commit never fails half way
    for a lock another connection (the CLI, a technician's sqlite3 shell) holds.
    """

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error:
                # A failed COMMIT (full, I/O error) may leave the transaction open:
                # end it, or every later BEGIN fails and this connection would
                # see rows that were never made durable.
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        elif self._db.in_transaction:
            # SQLite may have rolled back by itself (SQLITE_FULL): a second
            # ROLLBACK would raise and hide the real error.
            self._db.execute("ROLLBACK")
