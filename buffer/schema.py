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

Ours or not: a store carries :data:`APPLICATION_ID` in its SQLite header
(``PRAGMA application_id``), set with its schema in one transaction; a store
of ours from before (application_id 0, a ``user_version`` and our tables)
gets it at its first open. A file at the store's path that is anything else
— the config file typed into ``store.path``, another program's database —
is refused and left exactly as it is: never written, never moved aside.
Only a damaged store whose header still says it is ours is moved aside.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from config.filemodes import create_private

#: Schema version in ``PRAGMA user_version``; migrations key on it.
SCHEMA_VERSION = 3

#: ``PRAGMA application_id`` of a collector store: "FCst" in ASCII. SQLite
#: keeps it at byte 68 of the file's header, where ``file(1)`` and this
#: module look for it without opening the database.
APPLICATION_ID = 0x46437374
#: The file header: SQLite's magic string, then user_version and
#: application_id as 4-byte big-endian integers at these offsets.
_MAGIC = b"SQLite format 3\x00"
_USER_VERSION_AT, _APPLICATION_ID_AT, _HEADER_BYTES = 60, 68, 100
#: Tables every schema version of ours has had (v1 onwards).
_OUR_TABLES = frozenset({"records", "meta"})

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
    """The file is one of our stores and not sound: move it aside and start afresh."""


class NotOurStore(StoreError):
    """An existing file at the store's path that is not a collector store:
    refused, and never written, moved or renamed."""


def store_version(db: sqlite3.Connection, path: Path | str) -> int:
    """The schema version of the store ``db`` has open (0: an empty database,
    nothing stored yet), read before anything is written to it.

    Raises :class:`NotOurStore` for another program's database and
    :class:`StoreError` for a store of a newer schema than this release reads;
    ``sqlite3.DatabaseError`` when SQLite cannot read the file at all.
    """
    application_id = db.execute("PRAGMA application_id").fetchone()[0]
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if application_id != APPLICATION_ID:
        if application_id != 0:
            raise NotOurStore(
                f"{path}: not a collector store (an SQLite database of another program,"
                f" application_id {application_id:#x}); left as it is"
            )
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        if version == 0 and not tables:
            return 0  # created, killed before its schema committed: nothing in it
        if version < 1 or not tables >= _OUR_TABLES:
            raise NotOurStore(
                f"{path}: not a collector store (an SQLite database of another program);"
                " left as it is"
            )
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path}: store schema {version} is newer than the {SCHEMA_VERSION} this release reads"
        )
    return int(version)


def header_is_ours(path: Path) -> bool:
    """Whether the file's raw header names it a collector store (its
    application_id, or a schema version of ours from before it had one):
    how a store SQLite cannot open is still told from anybody else's file."""
    try:
        with open(path, "rb") as f:
            header = f.read(_HEADER_BYTES)
    except OSError:
        return False
    if len(header) < _HEADER_BYTES or not header.startswith(_MAGIC):
        return False
    application_id = int.from_bytes(header[_APPLICATION_ID_AT : _APPLICATION_ID_AT + 4], "big")
    version = int.from_bytes(header[_USER_VERSION_AT : _USER_VERSION_AT + 4], "big")
    return application_id == APPLICATION_ID or (
        application_id == 0 and 1 <= version <= SCHEMA_VERSION
    )


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

    Raises :class:`StoreError`: :class:`NotOurStore` for a file that is not
    ours (left untouched), ``_Corrupt`` when the file is ours and must be
    moved aside.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and not path.is_file():
            raise StoreError(f"{path}: not a regular file")
        # Owner only whatever the umask (root's 022 made a world-readable
        # store); SQLite gives the -wal and -shm files this file's mode.
        create_private(path)
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=True)
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(f"{path}: cannot open store: {exc}") from exc
    try:
        # Before anything writes: switching to WAL alone rewrites the header
        # of whatever database this is.
        version = store_version(db, path)
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
        if version == 0:  # a new file: the current schema, nothing to migrate
            # One transaction: a kill half way leaves an empty database, which
            # the next open takes as new, never a half-made store.
            db.executescript(
                f"BEGIN IMMEDIATE;{_SCHEMA}PRAGMA application_id={APPLICATION_ID};"
                f"PRAGMA user_version={SCHEMA_VERSION};COMMIT;"
            )
            version = SCHEMA_VERSION
        if db.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:
            with _Transaction(db):  # a store of ours from before application_id
                db.execute(f"PRAGMA application_id={APPLICATION_ID}")
        while 0 < version < SCHEMA_VERSION:
            with _Transaction(db):
                for statement in _MIGRATIONS[version]:
                    db.execute(statement)
                version += 1
                db.execute(f"PRAGMA user_version={version}")
    except sqlite3.DatabaseError as exc:
        if db.in_transaction:
            db.execute("ROLLBACK")
        db.close()
        if isinstance(exc, sqlite3.OperationalError):
            raise StoreError(f"{path}: cannot use store: {exc}") from exc
        # "file is not a database", "database disk image is malformed"
        if not header_is_ours(path):
            raise NotOurStore(
                f"{path}: not a collector store ({exc}); left as it is: point store.path"
                " elsewhere, or move the file away if it is a store whose header is damaged"
            ) from exc
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
