"""What the store can answer, on a read-only SQLite connection.

Shared by the control socket (the daemon opens its own read-only connection
per query, so a technician's query never touches the writer's connection)
and by the CLI when the collector is down. Only ``sqlite3``, ``json`` and
``zlib`` (buffer/codec.py): importing this costs nothing on a quick command.

The store's schema is buffer/store.py's; this module only reads it.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

from buffer.codec import to_text
from buffer.schema import StoreError, store_version

#: Most rows one query returns: a phone or a terminal shows no more, and the
#: reply must stay small on a 64 MB gateway. ``export`` streams instead.
MAX_ROWS = 1000


class StoreUnavailable(Exception):
    """The store file cannot be opened read-only; ``str()`` says why."""


def _body_text(body: bytes | str) -> str:
    return to_text(body, None)


#: Page cache of a read-only connection, KiB (SQLite's default is 2000 per
#: connection): the CLI's and the dashboard's queries walk indexes, not the
#: table, and this connection lives in the daemon beside the store's own,
#: whose cache the default would let this one double (2 MB more RSS).
READONLY_CACHE_KIB = 256


def open_readonly(path: str | Path) -> sqlite3.Connection:
    """A read-only connection: ``mode=ro`` never creates or writes the file.

    Refused (:class:`StoreUnavailable`): no such file, not a collector store,
    a store of a newer schema than this release reads (its rows would be
    misread), or one SQLite cannot read.
    """
    p = Path(path)
    if not p.is_file():
        raise StoreUnavailable(f"{p}: no such store file")
    try:
        db = sqlite3.connect(f"file:{p.resolve()}?mode=ro", uri=True, timeout=1.0)
    except sqlite3.Error as exc:
        raise StoreUnavailable(f"{p}: cannot read store: {exc}") from None
    try:
        store_version(db, p)
        db.execute(f"PRAGMA cache_size=-{READONLY_CACHE_KIB}")
        db.execute("SELECT 1 FROM records LIMIT 1").fetchall()
        # Bodies are compressed (buffer/codec.py): SQL that looks inside one
        # (json_extract) reads it through this function.
        db.create_function("body_text", 1, _body_text, deterministic=True)
    except StoreError as exc:
        db.close()
        raise StoreUnavailable(str(exc)) from None
    except sqlite3.Error as exc:
        db.close()
        raise StoreUnavailable(f"{p}: cannot read store: {exc}") from None
    return db


def select_orders(
    nozzle: str | None = None, since_ms: int | None = None, until_ms: int | None = None
) -> tuple[str, list[Any]]:
    """The query of stored orders (of ``nozzle``, committed from ``since_ms`` to
    before ``until_ms``) and its arguments; the caller orders it. Its columns:
    id, nseq, created_ms, sent_ms, body, h, prev."""
    where: list[str] = ["kind='order'"]
    args: list[Any] = []
    if nozzle:
        where.append("nozzle=?")
        args.append(nozzle)
    if since_ms is not None:
        where.append("created_ms>=?")
        args.append(since_ms)
    if until_ms is not None:
        where.append("created_ms<?")
        args.append(until_ms)
    sql = "SELECT id, nseq, created_ms, sent_ms, body, h, prev FROM records WHERE "
    return sql + " AND ".join(where), args


def orders(
    db: sqlite3.Connection,
    nozzle: str | None = None,
    since_ms: int | None = None,
    limit: int = 20,
) -> list[dict[str, Any]]:
    """The most recent orders first (store order), with their sent state."""
    sql, args = select_orders(nozzle, since_ms)
    rows = db.execute(sql + " ORDER BY id DESC LIMIT ?", (*args, max(1, min(limit, MAX_ROWS))))
    out = []
    for rid, nseq, created, sent, body, h, prev in rows:
        order = json.loads(to_text(body, h, prev))
        order.update(id=rid, nseq=nseq, created_ms=created, sent=sent is not None)
        out.append(order)
    return out


def buffer(db: sqlite3.Connection, path: str | Path) -> dict[str, Any]:
    """Stored and unsent counts per kind, the oldest unsent record's age."""
    kinds: dict[str, dict[str, int]] = {}
    for kind, total, unsent in db.execute(
        "SELECT kind, count(*), sum(sent_ms IS NULL) FROM records GROUP BY kind ORDER BY kind"
    ):
        kinds[kind] = {"stored": total, "unsent": unsent or 0}
    oldest = db.execute("SELECT min(created_ms) FROM records WHERE sent_ms IS NULL").fetchone()[0]
    try:
        size = os.path.getsize(path)
    except OSError:
        size = None
    return {
        "path": str(path),
        "file_bytes": size,
        "kinds": kinds,
        "unsent": sum(k["unsent"] for k in kinds.values()),
        "oldest_unsent_ms": oldest,
    }


def unsent_total(db: sqlite3.Connection) -> int:
    """Unsent records: counted on the store's partial index, cheap every second."""
    return int(db.execute("SELECT count(*) FROM records WHERE sent_ms IS NULL").fetchone()[0])


#: Tank records read back from the newest to find each tank's last inventory:
#: all tanks report together, so the newest reports are among the last few
#: hundred; this keeps the dashboard's once-a-second query off a month of
#: inventory history (a 10 s schedule stores ~260 000 per tank in 30 days).
TANK_WINDOW = 500


def latest_tanks(db: sqlite3.Connection) -> list[dict[str, Any]]:
    """The last inventory record of each tank (among the newest tank records)."""
    rows = db.execute(
        "SELECT body FROM records WHERE kind='tank' ORDER BY id DESC LIMIT ?", (TANK_WINDOW,)
    ).fetchall()
    latest: dict[Any, dict[str, Any]] = {}
    for (body,) in rows:
        record = json.loads(to_text(body, None))
        latest.setdefault(record.get("tank"), record)
    return [latest[k] for k in sorted(latest, key=lambda t: (t is None, t))]


def alarms(db: sqlite3.Connection, limit: int = 50) -> list[dict[str, Any]]:
    """Recent alarm transitions (raised / cleared), newest first."""
    rows = db.execute(
        "SELECT body FROM records WHERE kind='alarm' ORDER BY id DESC LIMIT ?",
        (max(1, min(limit, MAX_ROWS)),),
    ).fetchall()
    return [json.loads(to_text(body, None)) for (body,) in rows]


def active_alarms(db: sqlite3.Connection) -> list[dict[str, Any]]:
    """Alarms whose last transition is ``raised`` (per source and code)."""
    rows = db.execute(
        "SELECT body FROM records WHERE id IN (SELECT max(id) FROM records WHERE kind='alarm' "
        "GROUP BY json_extract(body_text(body), '$.source'), "
        "json_extract(body_text(body), '$.code')) ORDER BY id"
    ).fetchall()
    bodies = [json.loads(to_text(body, None)) for (body,) in rows]
    return [b for b in bodies if b.get("state") == "raised"]
