"""One step back: a v3 store rewritten as v2, for a rollback to the previous release.

Upgrades run forward by themselves when a newer release opens an older store
(buffer/schema.py ``_MIGRATIONS``). The way back must exist too (an
OTA rollback returns to a release that only reads v2): this module rewrites
the table with v2's schema — bodies inflated to the canonical JSON text, ``h``
as hex, ``rid`` spelled out, v2's indexes — in one transaction, so a SIGKILL
half way leaves the v3 store as it was. Every record is kept, sent state and
resend generation included; the per-nozzle chains are byte-for-byte the
same text v2 would have stored.

    python -m buffer.migrate downgrade STORE [--to 2]

Run it with the collector stopped (the OTA launcher does, before it starts
the older release). Exit status 0 done (or nothing to do), 2 cannot.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path

from buffer.codec import h_hex, to_text

#: The schema release N-1 reads (buffer/store.py at schema 2), verbatim.
V2_SCHEMA = """
CREATE TABLE records (
    id          INTEGER PRIMARY KEY,
    kind        TEXT    NOT NULL,
    rid         TEXT    NOT NULL,
    nozzle      TEXT,
    nseq        INTEGER,
    source_key  TEXT,
    h           TEXT,
    created_ms  INTEGER NOT NULL,
    body        TEXT    NOT NULL,
    sent_ms     INTEGER,
    resent      INTEGER NOT NULL DEFAULT 0,
    UNIQUE (kind, rid)
);
CREATE UNIQUE INDEX records_by_nozzle
    ON records (kind, nozzle, nseq) WHERE nozzle IS NOT NULL;
CREATE UNIQUE INDEX records_by_source
    ON records (kind, nozzle, source_key) WHERE source_key IS NOT NULL;
CREATE INDEX records_unsent ON records (id) WHERE sent_ms IS NULL;
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""

#: Rows copied per executemany: bounds the Python-side memory on a 64 MB box.
COPY_CHUNK = 2000


class MigrationError(RuntimeError):
    """The store cannot be taken back; the message says why."""


def downgrade_to_v2(path: Path) -> int:
    """Rewrite the store at ``path`` as schema v2; returns the records copied.

    A store already at v2 is left alone (returns 0). Anything newer than v3
    is refused: one step back is what a release promises.
    """
    db = sqlite3.connect(path, isolation_level=None)
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version == 2:
            return 0
        if version != 3:
            raise MigrationError(f"{path}: schema {version}: only 3 → 2 is supported")
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("ALTER TABLE records RENAME TO records_v3")
            for name in (
                "records_by_rid",
                "orders_by_nozzle",
                "orders_by_source",
                "records_unsent",
            ):
                db.execute(f"DROP INDEX IF EXISTS {name}")
            for statement in V2_SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            copied = 0
            cur = db.execute(
                "SELECT id, kind, coalesce(rid, nozzle || ':' || nseq), nozzle, nseq, "
                "source_key, h, created_ms, body, sent_ms, resent, prev FROM records_v3 ORDER BY id"
            )
            while rows := cur.fetchmany(COPY_CHUNK):
                db.executemany(
                    "INSERT INTO records(id, kind, rid, nozzle, nseq, source_key, h, created_ms, "
                    "body, sent_ms, resent) VALUES(?,?,?,?,?,?,?,?,?,?,?)",
                    [
                        (*r[:6], h_hex(r[6]), r[7], to_text(r[8], r[6], r[11]), r[9], r[10])
                        for r in rows
                    ],
                )
                copied += len(rows)
            db.execute("DROP TABLE records_v3")
            db.execute("PRAGMA user_version=2")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return copied
    finally:
        db.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m buffer.migrate")
    sub = parser.add_subparsers(dest="command", required=True)
    down = sub.add_parser("downgrade", help="rewrite a store for the previous release")
    down.add_argument("store", type=Path)
    down.add_argument("--to", type=int, default=2, choices=[2])
    args = parser.parse_args(argv)
    try:
        copied = downgrade_to_v2(args.store)
    except (MigrationError, sqlite3.Error) as exc:
        print(f"buffer.migrate: {exc}", file=sys.stderr)
        return 2
    print(f"{args.store}: schema 2 ({copied} records rewritten)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
