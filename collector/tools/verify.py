"""``forecourt verify``: check the local store's per-nozzle SM3 chains (SPEC F2, D19).

Reads the SQLite store read-only (``mode=ro``: verifying never writes, and
works beside a running daemon thanks to WAL). For every nozzle it checks, in
nseq order: each order's ``h`` is the SM3 of its body (records.chain), each
``prev`` is the previous ``h``, nseq rises by exactly one, and the indexed
columns (``nseq``, ``h``) agree with the body. It prints the first break per
nozzle — e.g. a row edited by hand with the sqlite3 shell. The raw log
beside the store (buffer/rawlog.py), when there is one, is checked the same
way: each port's block chain, from what eviction left.

Exit status (docs/cli.md): 0 every chain intact, 1 at least one break,
2 usage (an invalid config), 4 the store cannot be read (no such file, not a
collector store, a newer schema than this release reads, damaged pages).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

EXIT_OK = 0
EXIT_BROKEN = 1
EXIT_USAGE = 2
EXIT_STORE = 4


def _rows(
    db: sqlite3.Connection,
) -> Iterator[tuple[str, int, bytes | str | None, bytes | None, bytes | str]]:
    yield from db.execute(
        "SELECT nozzle, nseq, h, prev, body FROM records WHERE kind='order' ORDER BY nozzle, nseq"
    )


def first_breaks(db: sqlite3.Connection) -> tuple[dict[str, str], dict[str, int]]:
    """({nozzle: description of its first break}, {nozzle: orders checked})."""
    from buffer.codec import BodyError, h_hex, to_text
    from records.chain import verify_chain

    breaks: dict[str, str] = {}
    counts: dict[str, int] = {}
    nozzle_rows: dict[str, list[tuple[int, str | None, dict[str, Any] | None]]] = {}
    for nozzle, nseq, h, prev, body in _rows(db):
        try:  # v3 rows are compressed (buffer/codec.py); an edited blob may not inflate
            record = json.loads(to_text(body, h, prev))
        except (BodyError, ValueError, TypeError):
            record = None
        nozzle_rows.setdefault(nozzle, []).append((nseq, h_hex(h), record))
    for nozzle, rows in nozzle_rows.items():
        counts[nozzle] = len(rows)
        previous_nseq: int | None = None
        for nseq, h, record in rows:
            where = f"nseq {nseq}"
            if not isinstance(record, dict):
                breaks[nozzle] = f"{where}: body is not a readable JSON object"
                break
            if record.get("nseq") != nseq or record.get("h") != h:
                breaks[nozzle] = f"{where}: body disagrees with the row's nseq/h columns"
                break
            if previous_nseq is not None and nseq != previous_nseq + 1:
                breaks[nozzle] = f"{where}: nseq gap after {previous_nseq} (order missing)"
                break
            previous_nseq = nseq
        if nozzle in breaks:
            continue
        chain_break = verify_chain(record for _, _, record in rows if record is not None)
        if chain_break is not None:
            nseq = rows[chain_break.index][0]
            breaks[nozzle] = f"nseq {nseq} (rid {chain_break.rid}): {chain_break.reason}"
    return breaks, counts


def verify_store(path: Path, out: TextIO, err: TextIO) -> int:
    """Check the store at ``path``; print one line per nozzle; the exit status."""
    from buffer.schema import StoreError, store_version

    if not path.is_file():
        print(f"{path}: no such store", file=err)
        return EXIT_STORE
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            store_version(db, path)
            breaks, counts = first_breaks(db)
        finally:
            db.close()
    except StoreError as exc:
        print(exc, file=err)
        return EXIT_STORE
    except sqlite3.Error as exc:
        print(f"{path}: cannot read store: {exc}", file=err)
        return EXIT_STORE
    for nozzle in sorted(counts):
        state = f"BROKEN at {breaks[nozzle]}" if nozzle in breaks else "ok"
        print(f"{nozzle}: {counts[nozzle]} orders: {state}", file=out)
    total = sum(counts.values())
    print(f"{path}: {total} orders on {len(counts)} nozzles, {len(breaks)} broken", file=out)
    raw_status = verify_rawlog(path, out, err)
    return EXIT_BROKEN if breaks else raw_status


def verify_rawlog(store_path: Path, out: TextIO, err: TextIO) -> int:
    """The raw log beside the store, when there is one: each port's block
    chain (buffer/rawlog.py), and what eviction took, counted."""
    from buffer.rawblocks import RawLogError
    from buffer.rawlog import RawLog, rawlog_path, verify_chain
    from uplink.crypto import sm3

    path = rawlog_path(store_path)
    if not path.is_file():
        return EXIT_OK
    try:
        rawlog = RawLog(path, sm3, max_bytes=0, keep_days=0, readonly=True)
        try:
            reports = [verify_chain(rawlog, port) for port in rawlog.ports()]
        finally:
            rawlog.close()
    except (RawLogError, sqlite3.Error) as exc:
        print(f"{path}: cannot read the raw log: {exc}", file=err)
        return EXIT_STORE
    for r in reports:
        state = f"BROKEN at {r.broken}" if r.broken else "ok"
        evicted = f"{r.evicted.blocks} evicted ({r.evicted.size} bytes)"
        print(f"raw log port {r.port}: {r.blocks} blocks, {evicted}: {state}", file=out)
    broken = sum(r.broken is not None for r in reports)
    print(f"{path}: {len(reports)} ports, {broken} broken", file=out)
    return EXIT_BROKEN if broken else EXIT_OK
