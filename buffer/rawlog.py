"""The raw log: every byte of every dispenser line, kept for a period (evidence).

What a port's line carried — both directions, timestamped — is the
transaction flow of any period, recoverable after the fact: a regulator who
doubts an order asks for the bytes it came from (``evidence.fetch``,
``forecourt capture export``). This module is the file; the recorder that
feeds it from the ports is collector/station/evidence.py.

**Size.** A Sinopec port polled every 100 ms carries ≈ 200 B/s, ≈ 17 MB a
day; 32 ports ≈ 550 MB a day, more than the gateway's whole flash. Idle
polling repeats the same exchange, so a block keeps each *run of identical
exchanges* once, with its count and the time of its last repetition, and
the rest is zlib-compressed (stdlib): buffer/rawblocks.py. Measured per
busy day in docs/store.md (bench/evidence.py).

**Chain.** Per port, each block's ``h`` = SM3(previous block's ``h`` ‖
header ‖ compressed body); the first block of a port follows 32 zero bytes.
The digest is given by the caller (collector/: uplink's SM3): this layer
imports nothing above it. Editing, removing or reordering a stored block
breaks the chain (:func:`verify_chain`, ``forecourt verify``); eviction
removes from the oldest end only and keeps, per port, the ``h`` of the last
block it removed and how many blocks and bytes it removed, so the oldest
block left still links to something known.

**Budget.** Its own file beside the store (``<store>.evidence.sqlite``), at
most ``max_bytes`` of pages in use and ``keep_days`` of age: past either the
oldest blocks go first, whatever the port, counted per port in the same
transaction.
"""

from __future__ import annotations

import itertools
import sqlite3
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from buffer.rawblocks import RawLogError
from config.filemodes import create_private

Digest = Callable[[bytes], bytes]

#: ``h`` before a port's first block.
GENESIS = bytes(32)

#: Blocks looked at per eviction step: bounded work between two commits.
EVICT_CHUNK = 64

_HEADER = struct.Struct(">IqqII")  # port, first_ms, last_ms, segments, raw_bytes

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS blocks (id INTEGER PRIMARY KEY, port INTEGER NOT NULL,"
    " first_ms INTEGER NOT NULL, last_ms INTEGER NOT NULL, segments INTEGER NOT NULL,"
    " raw_bytes INTEGER NOT NULL, body BLOB NOT NULL, h BLOB NOT NULL)",
    "CREATE INDEX IF NOT EXISTS blocks_by_port ON blocks (port, last_ms)",
    "CREATE TABLE IF NOT EXISTS ports (port INTEGER PRIMARY KEY, evicted_blocks INTEGER NOT NULL,"
    " evicted_bytes INTEGER NOT NULL, evicted_head BLOB NOT NULL, evicted_until_ms INTEGER)",
)

#: ``PRAGMA application_id`` of a raw log: "FCev".
APPLICATION_ID = 0x46436576


def rawlog_path(store_path: Path) -> Path:
    """The raw log beside the store: ``<store>.evidence.sqlite``."""
    return store_path.with_name(store_path.name + ".evidence.sqlite")


@dataclass(frozen=True, slots=True)
class Block:
    """A stored block of one port (the unit the chain links and eviction takes)."""

    id: int
    port: int
    first_ms: int
    last_ms: int
    segments: int
    raw_bytes: int
    body: bytes
    h: bytes

    def header(self) -> bytes:
        return _HEADER.pack(self.port, self.first_ms, self.last_ms, self.segments, self.raw_bytes)


def block_hash(digest: Digest, prev: bytes, block: Block) -> bytes:
    """``h`` of ``block`` after ``prev``."""
    return digest(prev + block.header() + block.body)


# ---------------------------------------------------------------- the file


@dataclass(slots=True)
class PortEviction:
    """What eviction took from one port: counted, and the ``h`` it ended on."""

    blocks: int = 0
    size: int = 0
    head: bytes = GENESIS
    until_ms: int | None = None


class RawLog:
    """The raw log's SQLite file: append sealed blocks, evict, read a period."""

    def __init__(
        self,
        path: Path,
        digest: Digest,
        *,
        max_bytes: int,
        keep_days: float,
        readonly: bool = False,
    ) -> None:
        self.path = path
        self.digest = digest
        self.max_bytes = max_bytes
        self.keep_ms = int(keep_days * 86_400_000)
        self.readonly = readonly
        try:
            if readonly:
                self._db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
            else:
                create_private(path)
                # Written from the recorder's worker thread, one batch at a
                # time under its lock (collector/station/evidence.py).
                self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
                self._db.execute("PRAGMA journal_mode=WAL")
                # Once a minute at most (collector/station/evidence.py), so the fsync costs nothing.
                self._db.execute("PRAGMA synchronous=FULL")
                self._db.execute("PRAGMA busy_timeout=200")
                self._db.execute("BEGIN IMMEDIATE")
                for ddl in _SCHEMA:
                    self._db.execute(ddl)
                self._db.execute(f"PRAGMA application_id={APPLICATION_ID}")
                self._db.execute("COMMIT")
            app = self._db.execute("PRAGMA application_id").fetchone()[0]
        except sqlite3.Error as exc:
            raise RawLogError(f"{path}: cannot open the raw log: {exc}") from None
        if app != APPLICATION_ID:
            self._db.close()
            raise RawLogError(f"{path}: not a collector raw log")
        self._heads: dict[int, bytes] = {}
        #: Blocks appended and evicted since this process opened the file.
        self.appended = 0
        self.evicted = 0

    def close(self) -> None:
        self._db.close()

    def head(self, port: int) -> bytes:
        """The ``h`` the port's next block links to."""
        cached = self._heads.get(port)
        if cached is not None:
            return cached
        row = self._db.execute(
            "SELECT h FROM blocks WHERE port = ? ORDER BY id DESC LIMIT 1", (port,)
        ).fetchone()
        if row is None:
            row = self._db.execute(
                "SELECT evicted_head FROM ports WHERE port = ?", (port,)
            ).fetchone()
        head = bytes(row[0]) if row else GENESIS
        self._heads[port] = head
        return head

    def append(self, sealed: Sequence[tuple[int, int, int, int, int, bytes]]) -> int:
        """Store sealed blocks (from :meth:`BlockBuilder.seal`) in one
        transaction, chained per port; then evict down to the budget. Returns
        the blocks evicted. Raises :class:`RawLogError` (nothing stored)."""
        heads = dict(self._heads)
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for port, first_ms, last_ms, segments, raw, body in sealed:
                    prev = heads.get(port) or self.head(port)
                    block = Block(0, port, first_ms, last_ms, segments, raw, body, b"")
                    h = block_hash(self.digest, prev, block)
                    self._db.execute(
                        "INSERT INTO blocks (port, first_ms, last_ms, segments, raw_bytes,"
                        " body, h) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (port, first_ms, last_ms, segments, raw, body, h),
                    )
                    heads[port] = h
                evicted = self._evict(max((s[2] for s in sealed), default=0))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            self._heads = {}  # read back from the file: nothing of this commit is in it
            raise RawLogError(f"{self.path}: {exc}") from None
        self._heads.update(heads)
        self.appended += len(sealed)
        self.evicted += evicted
        return evicted

    def bytes_in_use(self) -> int:
        pages = self._db.execute("PRAGMA page_count").fetchone()[0]
        free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
        size = self._db.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)

    def _evict(self, now_ms: int) -> int:
        """Oldest blocks out while over the byte budget or older than
        ``keep_days``; counted per port in this transaction."""
        evicted = 0
        cutoff = now_ms - self.keep_ms
        target = self.max_bytes * 99 // 100  # hysteresis: not one pass per append
        while True:
            over = self.bytes_in_use() > (target if evicted else self.max_bytes)
            rows = self._db.execute(
                "SELECT id, port, last_ms, length(body), h FROM blocks ORDER BY id LIMIT ?",
                (EVICT_CHUNK,),
            ).fetchall()
            take = rows if over else list(itertools.takewhile(lambda r: r[2] < cutoff, rows))
            if not take:
                return evicted
            per_port: dict[int, PortEviction] = {}
            for _id, port, last_ms, size, h in take:
                e = per_port.setdefault(port, PortEviction())
                e.blocks += 1
                e.size += size
                e.head = bytes(h)
                e.until_ms = last_ms
            for port, e in per_port.items():
                self._db.execute(
                    "INSERT INTO ports (port, evicted_blocks, evicted_bytes, evicted_head,"
                    " evicted_until_ms) VALUES (?, ?, ?, ?, ?) ON CONFLICT (port) DO UPDATE SET"
                    " evicted_blocks = evicted_blocks + excluded.evicted_blocks,"
                    " evicted_bytes = evicted_bytes + excluded.evicted_bytes,"
                    " evicted_head = excluded.evicted_head,"
                    " evicted_until_ms = excluded.evicted_until_ms",
                    (port, e.blocks, e.size, e.head, e.until_ms),
                )
            self._db.execute("DELETE FROM blocks WHERE id <= ?", (take[-1][0],))
            evicted += len(take)

    # ------------------------------------------------------------ reading

    def ports(self) -> list[int]:
        rows = self._db.execute(
            "SELECT port FROM blocks UNION SELECT port FROM ports ORDER BY 1"
        ).fetchall()
        return [int(r[0]) for r in rows]

    def eviction(self, port: int) -> PortEviction:
        row = self._db.execute(
            "SELECT evicted_blocks, evicted_bytes, evicted_head, evicted_until_ms FROM ports"
            " WHERE port = ?",
            (port,),
        ).fetchone()
        if row is None:
            return PortEviction()
        return PortEviction(int(row[0]), int(row[1]), bytes(row[2]), row[3])

    def period_bytes(self, port: int, from_ms: int, to_ms: int) -> int:
        """Bytes of the bodies of the port's blocks that overlap the period
        (what :meth:`blocks` would read, without reading it)."""
        row = self._db.execute(
            "SELECT coalesce(sum(length(body)), 0) FROM blocks"
            " WHERE port = ? AND last_ms >= ? AND first_ms <= ?",
            (port, from_ms, to_ms),
        ).fetchone()
        return int(row[0])

    def blocks(
        self, port: int, from_ms: int | None = None, to_ms: int | None = None
    ) -> Iterator[Block]:
        """The port's blocks that overlap [from_ms, to_ms], oldest first."""
        lo = -(2**62) if from_ms is None else from_ms
        hi = 2**62 if to_ms is None else to_ms
        for row in self._db.execute(
            "SELECT id, port, first_ms, last_ms, segments, raw_bytes, body, h FROM blocks"
            " WHERE port = ? AND last_ms >= ? AND first_ms <= ? ORDER BY id",
            (port, lo, hi),
        ):
            yield Block(
                int(row[0]),
                port,
                int(row[2]),
                int(row[3]),
                int(row[4]),
                int(row[5]),
                bytes(row[6]),
                bytes(row[7]),
            )

    def previous_h(self, block: Block) -> bytes:
        """The ``h`` ``block`` links to: the port's block before it, or what
        eviction left."""
        row = self._db.execute(
            "SELECT h FROM blocks WHERE port = ? AND id < ? ORDER BY id DESC LIMIT 1",
            (block.port, block.id),
        ).fetchone()
        return bytes(row[0]) if row else self.eviction(block.port).head


@dataclass(frozen=True, slots=True)
class ChainReport:
    """One port's chain: blocks checked, and the first break (None: intact)."""

    port: int
    blocks: int
    evicted: PortEviction
    broken: str | None


def verify_chain(log: RawLog, port: int) -> ChainReport:
    """Check every stored block of ``port`` in order: its ``h`` is the digest
    of the previous one's, its header and body; the first links to what
    eviction recorded (or to genesis)."""
    evicted = log.eviction(port)
    prev = evicted.head
    count = 0
    for block in log.blocks(port):
        count += 1
        if block_hash(log.digest, prev, block) != block.h:
            why = (
                "altered, or a block before it missing"
                if count > 1
                else ("altered, or blocks before it removed without being counted")
            )
            return ChainReport(port, count, evicted, f"block {block.id}: {why}")
        prev = block.h
    return ChainReport(port, count, evicted, None)
