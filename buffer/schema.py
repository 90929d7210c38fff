"""The store's file: schema, migrations, opening, integrity check, corrupt handling.

buffer/store.py holds the records; this module owns the SQLite file they live
in — the DDL, ``PRAGMA user_version`` and the migrations keyed on it, the
pragmas every connection of the store runs with, and what happens to a file
that is not a sound store (moved aside, kept for recovery by hand).

Durability settings (argued in docs/decisions.md):

* ``journal_mode=WAL`` — readers never block the writer, and a commit is one
  sequential append to the WAL instead of rewriting pages in place (fewer
  flash erase blocks touched per order);
* ``synchronous=FULL`` — in WAL mode ``NORMAL`` may lose the last
  transactions on power loss; ``FULL`` fsyncs the WAL on every commit, which
  is what "committed" must mean for a regulator's record;
* ``PRAGMA quick_check`` at open — a store damaged by a power cut is found
  before anything is appended to it.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

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

#: Pages the WAL may hold before SQLite checkpoints it into the database
#: (SQLite's default, 1000 x 4 KiB ≈ 4 MiB): small enough for 64 MB of RAM
#: and the page cache, large enough that checkpoints are rare sequential writes.
WAL_AUTOCHECKPOINT_PAGES = 1000

#: How long a commit waits for a lock another connection holds (a technician's
#: sqlite3 shell, the CLI). Calls run on the event loop: a longer wait would
#: freeze every port; a failed commit is retried (the pump re-offers the sale).
BUSY_TIMEOUT_MS = 200

#: SQLite's page cache for the store's connection, KiB. The default (2 MiB)
#: fills as a store grows and stays resident: +2.6 MB of RSS on a
#: 100 000-order store against +1.0 MB at 512 KiB, for ingest 47 -> 52 µs of
#: CPU per order against a 100 µs goal (bench/store_cache.py,
#: docs/performance.md "Footprint"). Appends touch the b-tree's right edge
#: and the uplink reads the oldest unsent rows: both fit in 128 pages.
CACHE_KIB = 512

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


def open_store(path: Path) -> sqlite3.Connection:
    """Open (creating or migrating) the store at ``path`` with the durability pragmas.

    Raises :class:`StoreError`; ``_Corrupt`` when the file must be moved aside.
    """
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
        db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
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
