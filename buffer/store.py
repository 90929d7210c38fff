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

import json
import sqlite3
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from buffer.capacity import CapacityPolicy
from buffer.codec import cut_prev, encode, h_hex, to_text
from buffer.commits import DUPLICATE, STORED, Item, NewOrder, NewRecord, Outcome, Result
from buffer.eviction import SIZE_CHECK_EVERY, EvictionSteps
from buffer.outbox import LOCAL_SENT_MS, StoredRecord, _now_ms
from buffer.queries import StoreQueries
from buffer.schema import StoreError, _Corrupt, _Transaction, move_aside, open_store
from records.canonical import canonical_json
from records.chain import GENESIS, HASH_EXCLUDED
from records.sm3 import sm3_hex

if TYPE_CHECKING:
    from buffer.writer import RecordWriter

#: Store alarms raised in one millisecond (each eviction pass commits one
#: BUFFER_OVERFLOW): far more than a pass per millisecond can produce.
STORE_ALARM_RID_ATTEMPTS = 1000

#: Envelope ``seq`` numbers are reserved in blocks so that a restart never
#: reuses one (platform-interface.md: strictly increasing across restarts)
#: while costing one commit per block rather than one per message. A crash
#: skips at most this many numbers, which receivers do not mind.
SEQ_BLOCK = 256

#: The store's alarm for a record it refuses for good (buffer/commits.py).
REFUSED_CODE = "RECORD_REFUSED"

#: Fields of an order the store assigns: never compared with a sale offered again.
ORDER_ASSIGNED = frozenset({"rid", "nozzle", "nseq", "prev", "h"})

#: Fields the collector adds to a dispenser's sale, which may differ when the
#: pump offers the same sale again: ``started_at`` (seen once), ``flags``
#: (checked against the previous order, which after a restart is the sale
#: itself), ``station`` and ``nozzle_uid`` (read apart from the sale). The
#: other fields are the dispenser's and must be equal for "the same sale".
ORDER_COLLECTOR_FIELDS = frozenset({"started_at", "flags", "station", "nozzle_uid"})

#: Kinds whose rid names a period, not one reading: the first record of the
#: period is the record, a later reading in it is "already stored" even if
#: it differs (``tank``: one snapshot per tank per console minute,
#: docs/uplink-protocol.md).
FIRST_OF_ITS_RID = frozenset({"tank"})


class RecordRefused(StoreError):
    """A record the store refused for good (conflict or error, buffer/commits.py);
    the transaction committed, with the ``RECORD_REFUSED`` alarm keeping it."""

    def __init__(self, message: str, outcome: Outcome) -> None:
        super().__init__(message)
        self.outcome = outcome


class OrderStore(EvictionSteps, StoreQueries):
    """Durable records plus the per-nozzle counters and chains.

    One instance per process, used from the event loop thread only.
    """

    def __init__(self, path: Path, policy: CapacityPolicy | None = None) -> None:
        self.path = path
        self.policy = policy or CapacityPolicy()
        #: Where a store that failed its integrity check was moved (None: it was fine).
        self.moved_aside: Path | None = None
        corrupt: _Corrupt | None = None
        try:
            self._db = open_store(path)
        except _Corrupt as exc:
            self.moved_aside, corrupt = move_aside(path), exc
            self._db = open_store(path)
        self._seq_next, self._seq_limit = 0, 0
        self._init_seq()
        # Kept from here on as records come and go: counting a 250 000-row
        # table costs tens of ms, too much for every heartbeat and append.
        self._count = self._db.execute("SELECT count(*) FROM records").fetchone()[0]
        self._unsent: dict[str, int] = dict(
            self._db.execute(
                "SELECT kind, count(*) FROM records WHERE sent_ms IS NULL GROUP BY kind"
            ).fetchall()
        )
        self._tx_added: Counter[str] = Counter()
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
        #: Records refused for good (conflicts, errors: RECORD_REFUSED alarms).
        self.refused_records = 0
        self._init_eviction()
        self._writer: RecordWriter | None = None
        if corrupt is not None:
            self._alarm("STORE_CORRUPT", {"moved_to": str(self.moved_aside), "error": str(corrupt)})

    @property
    def writer(self) -> RecordWriter:
        """The store's one writer (buffer/writer.py): how the daemon's parts
        commit records — queued, committed in batches by one task, retried."""
        if self._writer is None:
            from buffer.writer import RecordWriter

            self._writer = RecordWriter(self)
        return self._writer

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

    def commit(self, items: Sequence[Item]) -> list[Outcome]:
        """Commit ``items`` in ONE transaction (one fsync); their outcomes, in order.

        Each item is decided on its own (buffer/commits.py): stored, already
        stored, a conflict or an error (both kept in a ``RECORD_REFUSED``
        alarm of the same transaction). A transaction that fails as a whole
        — disk full, I/O error, a lock held too long — raises
        :class:`StoreError` and stores nothing. nseq and the SM3 chain are
        assigned inside the transaction; the chain heads and the counts are
        cached only once it committed. Eviction is not part of it
        (:meth:`evict_step`): what is committed here stays committed.
        """
        heads: dict[str, tuple[int, str]] = {}
        self._tx_added = Counter()
        try:
            with self._transaction():
                out = [self._apply(item, heads) for item in items]
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot commit: {exc}") from exc
        self._heads.update(heads)  # committed: the caches may follow
        self._committed(self._tx_added)
        self.refused_records += sum(o.result in (Result.CONFLICT, Result.ERROR) for o in out)
        return out

    def append_order(
        self, nozzle: str, fields: Mapping[str, Any], *, source_key: str
    ) -> StoredRecord | None:
        """Commit one order now (tests, benches, tools; the daemon goes through
        buffer/writer.py): the record, or None when this nozzle already has
        the same sale under ``source_key`` (the dispenser offered it again)."""
        return self.append_orders([(nozzle, fields, source_key)])[0]

    def append_orders(
        self, orders: Sequence[tuple[str, Mapping[str, Any], str]]
    ) -> list[StoredRecord | None]:
        """Group commit of ``(nozzle, fields, source_key)`` each, one transaction.

        Results line up with the input (None for a duplicate, also within the
        batch). :class:`StoreError` when the transaction failed (nothing
        stored); :class:`RecordRefused` after the commit when an order was
        refused (the others are stored, the refusal is alarmed). Over the
        cap, eviction follows the commit; its failure is counted
        (:attr:`eviction_errors`), never the records' (they are stored).
        """
        return self._now([NewOrder(n, fields, key) for n, fields, key in orders])

    def append_record(self, kind: str, rid: str, body: Mapping[str, Any]) -> StoredRecord | None:
        """Commit one record of any kind (tank, delivery, leak, alarm …) under ``rid``,
        now (tests, benches, tools; the daemon goes through buffer/writer.py).

        Idempotent: None, storing nothing, when the same ``(kind, rid)``
        record is already stored; :class:`RecordRefused` when a different
        one is (or the body is not canonical JSON).
        """
        return self._now([NewRecord(kind, rid, body)])[0]

    def _now(self, items: Sequence[Item]) -> list[StoredRecord | None]:
        out = self.commit(items)
        self.enforce_capacity_after_commit()
        refused = [o for o in out if o.result in (Result.CONFLICT, Result.ERROR)]
        if refused:
            raise RecordRefused(f"{self.path}: {refused[0].detail}", refused[0])
        return [o.record if o.result is Result.STORED else None for o in out]

    def _apply(self, item: Item, heads: dict[str, tuple[int, str]]) -> Outcome:
        if isinstance(item, NewOrder):
            return self._insert_order(item, heads)
        if isinstance(item, NewRecord):
            return self._insert_record(item)
        cur = self._db.execute(
            "DELETE FROM records WHERE kind=? AND rid=? AND sent_ms=?",
            (item.kind, item.rid, LOCAL_SENT_MS),
        )
        self._tx_added[""] -= cur.rowcount  # "": counted in the total, never unsent
        return STORED if cur.rowcount else DUPLICATE

    def _read_head(self, nozzle: str) -> tuple[int, str]:
        row = self._db.execute(
            "SELECT nseq, h FROM records WHERE kind='order' AND nozzle=? "
            "ORDER BY nseq DESC LIMIT 1",
            (nozzle,),
        ).fetchone()
        return (row[0], str(h_hex(row[1]))) if row else (0, GENESIS)

    def _insert_order(self, item: NewOrder, heads: dict[str, tuple[int, str]]) -> Outcome:
        """Insert inside the caller's transaction; ``heads`` collects the new
        chain heads, which become :attr:`_heads` only once committed."""
        nozzle = item.nozzle
        last = heads.get(nozzle) or self._heads.get(nozzle) or self._read_head(nozzle)
        nseq = last[0] + 1
        # Fields outside the hash are never stored (resent: a transport field; h: ours).
        record = {k: v for k, v in item.fields.items() if k not in HASH_EXCLUDED}
        record.update(rid=f"{nozzle}:{nseq}", nozzle=nozzle, nseq=nseq, prev=last[1])
        # One serialisation for both the hash and the stored body: h is
        # SM3(canonical JSON without h) (records/chain.py record_hash), and the
        # body is that text with h appended — valid JSON, parsed by every reader.
        # Stored compact (buffer/codec.py): h and prev as 32 bytes each, the
        # hashed text deflated with prev cut out; to_text() puts both back.
        try:
            hashed = canonical_json(record)
        except (TypeError, ValueError) as exc:  # a float or NaN: never published
            return self._refuse(item, Result.ERROR, "body", f"refusing order: {exc}")
        record["h"] = sm3_hex(hashed)
        stored, prev = cut_prev(hashed, last[1])
        try:
            # Only the dispenser's key may say "already stored"; any other
            # unique index (nozzle, nseq) raises, and is an error, not a duplicate.
            cur = self._db.execute(
                "INSERT INTO records(kind, rid, nozzle, nseq, source_key, h, prev, created_ms,"
                " body) VALUES('order', ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(nozzle, source_key) WHERE kind = 'order' DO NOTHING",
                (
                    None if self._rid_implied else record["rid"],
                    nozzle,
                    nseq,
                    item.source_key,
                    bytes.fromhex(record["h"]),
                    prev,
                    _now_ms(),
                    encode("order", stored),
                ),
            )
        except sqlite3.IntegrityError as exc:
            # The cached head was not the stored one: read it again next time.
            self._heads.pop(nozzle, None)
            heads.pop(nozzle, None)
            return self._refuse(item, Result.ERROR, "constraint", f"order {record['rid']}: {exc}")
        if cur.rowcount == 0:
            return self._order_exists(item)
        self._tx_added["order"] += 1
        heads[nozzle] = (nseq, record["h"])
        assert cur.lastrowid is not None
        for code, alarm in item.alarms:
            detail = {**alarm.get("detail", {}), "order": record["rid"]}
            self._insert_record(
                NewRecord("alarm", f"{record['rid']}:{code}", {**alarm, "detail": detail})
            )
        return Outcome(Result.STORED, StoredRecord(cur.lastrowid, "order", record["rid"], record))

    def _order_exists(self, item: NewOrder) -> Outcome:
        """The nozzle has an order under this source key: the same sale, or a conflict."""
        row = self._db.execute(
            "SELECT body, h, prev FROM records WHERE kind='order' AND nozzle=? AND source_key=?",
            (item.nozzle, item.source_key),
        ).fetchone()
        stored = json.loads(to_text(*row))
        differs = sorted(
            k
            for k in {*item.fields, *stored}
            if k not in ORDER_ASSIGNED and k not in ORDER_COLLECTOR_FIELDS
            and item.fields.get(k) != stored.get(k)
        )  # fmt: skip
        if not differs:
            return DUPLICATE
        fields = ", ".join(differs)
        detail = f"order {item.key}: another sale is stored as {stored['rid']} ({fields})"
        return self._refuse(item, Result.CONFLICT, "conflict", detail, stored_rid=stored["rid"])

    def _insert_record(self, item: NewRecord) -> Outcome:
        # ``resent`` is a transport field the uplink adds; never stored.
        record = {**{k: v for k, v in item.body.items() if k != "resent"}, "rid": item.rid}
        try:
            # The envelope seals canonical JSON (no floats): refuse here what could
            # never be published, rather than poison the uplink with it.
            text = canonical_json(record)
        except (TypeError, ValueError) as exc:
            return self._refuse(
                item, Result.ERROR, "body", f"refusing {item.kind} {item.rid}: {exc}"
            )
        try:
            cur = self._db.execute(
                "INSERT INTO records(kind, rid, created_ms, body, sent_ms) VALUES(?, ?, ?, ?, ?)"
                " ON CONFLICT(kind, rid) WHERE rid IS NOT NULL DO NOTHING",
                (
                    item.kind,
                    item.rid,
                    _now_ms(),
                    encode(item.kind, text),
                    LOCAL_SENT_MS if item.local else None,
                ),
            )
        except sqlite3.IntegrityError as exc:
            return self._refuse(item, Result.ERROR, "constraint", f"{item.kind} {item.rid}: {exc}")
        if cur.rowcount == 0:
            return self._record_exists(item, text)
        self._tx_added["" if item.local else item.kind] += 1
        assert cur.lastrowid is not None
        return Outcome(Result.STORED, StoredRecord(cur.lastrowid, item.kind, item.rid, record))

    def _record_exists(self, item: NewRecord, text: bytes) -> Outcome:
        """``(kind, rid)`` is taken: the same record, or a conflict."""
        row = self._db.execute(
            "SELECT body, h, prev FROM records WHERE kind=? AND rid=?", (item.kind, item.rid)
        ).fetchone()
        if to_text(*row).encode() == text or item.kind in FIRST_OF_ITS_RID:
            return DUPLICATE
        detail = f"{item.kind} {item.rid}: a different record is stored under this rid"
        return self._refuse(item, Result.CONFLICT, "conflict", detail)

    def _refuse(
        self, item: NewOrder | NewRecord, result: Result, reason: str, detail: str, **more: Any
    ) -> Outcome:
        """Inside the transaction: a ``RECORD_REFUSED`` store alarm keeping the
        refused record whole (when it is JSON at all), once per distinct
        refusal (a pump offering the same conflicting sale again adds nothing)."""
        body = item.fields if isinstance(item, NewOrder) else item.body
        what: dict[str, Any] = {"reason": reason, "kind": item.kind, "key": item.key}
        what["error"] = detail
        what.update(more)
        try:
            canonical_json(dict(body))
            what["record"] = dict(body)
        except (TypeError, ValueError):
            what["record"] = None
        digest = sm3_hex(canonical_json({k: v for k, v in what.items() if k != "error"}))[:16]
        self._insert_alarm(REFUSED_CODE, what, rid=f"store:{REFUSED_CODE}:raised:{digest}")
        return Outcome(result, None, detail)

    def _committed(self, added: Counter[str]) -> None:
        for kind, n in added.items():
            self._count += n
            if kind:
                self._unsent[kind] = self._unsent.get(kind, 0) + n
        self._since_size_check += added.total()

    def _alarm(self, code: str, detail: dict[str, Any]) -> None:
        self._tx_added = Counter()
        with self._failing(f"commit alarm {code}"), self._transaction():
            self._insert_alarm(code, detail)
        self._committed(self._tx_added)

    def _insert_alarm(self, code: str, detail: dict[str, Any], *, rid: str | None = None) -> None:
        """An ``alarm`` record raised by the store itself (source ``store``),
        under ``rid`` when given (once: a second insert under it adds nothing)."""
        now = _now_ms()
        at = datetime.fromtimestamp(now / 1000, UTC).isoformat(timespec="milliseconds")
        body = {"code": code, "state": "raised", "source": "store", "at": at, "detail": detail}
        # Two evictions can commit in one millisecond: each alarm is its own
        # record (a BUFFER_OVERFLOW count dropped as a "duplicate" would make
        # the loss silent), so a taken rid moves to the next free millisecond
        # (as collector/station/port_writer.py bumps its rids: the documented rid form holds).
        attempts = 1 if rid is not None else STORE_ALARM_RID_ATTEMPTS
        for attempt in range(attempts):
            this = rid or f"store:{code}:raised:{now + attempt}"
            text = encode("alarm", canonical_json({**body, "rid": this}))
            inserted = self._db.execute(
                "INSERT INTO records(kind, rid, created_ms, body) VALUES('alarm', ?, ?, ?) "
                "ON CONFLICT(kind, rid) WHERE rid IS NOT NULL DO NOTHING",
                (this, now, text),
            ).rowcount
            if inserted or rid is not None:
                self._tx_added["alarm"] += inserted
                return
        raise sqlite3.IntegrityError(f"no free rid for store alarm {code} at {now}")
