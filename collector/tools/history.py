"""The uplink backlog over time, for the page's chart: a sample every few minutes.

What is unsent *now* is one count on the store's partial index; what was
unsent at 03:00 is not in the store at all — a record's ``sent_ms`` is
overwritten by a resend, evicted rows are gone, and deriving the backlog at
past instants needs ``sent_ms`` of every row, which no index holds (a scan of
the whole table per page view: docs/decisions.md). So the page samples it:
the unsent count every :data:`SAMPLE_EVERY_S`, committed to a small SQLite
file of its own beside the store (``<store>.history.sqlite``, like the
command replay log's ``<store>.commands.sqlite``), kept :data:`KEEP_S`, and
the chart reads only what was committed.

Not the store: a sample is the device's own picture, not a record for the
platform, and the store's schema and eviction stay the regulator's records'
alone. ``synchronous=NORMAL``: a sample lost to a power cut is a gap in a
picture, so its commit need not cost an fsync on the NAND.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import structlog

log = structlog.get_logger("collector.tools.history")

#: Seconds between two samples: 288 points in the chart's 24 h, one row per
#: 5 minutes on flash (a few bytes each; a 4G outage of an hour shows 12).
SAMPLE_EVERY_S = 300.0
#: Samples older than this are deleted at the next sample: a week of history,
#: 2016 rows, bounded whatever the uptime.
KEEP_S = 7 * 86_400

_SCHEMA = """
CREATE TABLE IF NOT EXISTS backlog (
    at_ms   INTEGER PRIMARY KEY,  -- wall-clock ms of the sample
    unsent  INTEGER NOT NULL      -- records not yet acknowledged by the platform
)
"""


def history_path(store_path: Path) -> Path:
    return store_path.with_name(store_path.name + ".history.sqlite")


class History:
    """The samples file (one connection, the event loop's thread)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA cache_size=-64")  # KiB: a week is ~40 KiB of rows
        self._db.execute(_SCHEMA)

    def add(self, at_ms: int, unsent: int) -> None:
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO backlog VALUES (?, ?)", (at_ms, unsent))
            self._db.execute("DELETE FROM backlog WHERE at_ms < ?", (at_ms - KEEP_S * 1000,))

    def backlog(self, since_ms: int, until_ms: int) -> list[tuple[int, int]]:
        """(at_ms, unsent) samples in ``[since_ms, until_ms]``, oldest first."""
        rows = self._db.execute(
            "SELECT at_ms, unsent FROM backlog WHERE at_ms BETWEEN ? AND ? ORDER BY at_ms",
            (since_ms, until_ms),
        ).fetchall()
        return [(int(a), int(u)) for a, u in rows]

    def close(self) -> None:
        self._db.close()


async def sample(history: History, unsent: Callable[[], int], every_s: float) -> None:
    """A sample now and every ``every_s`` until cancelled; a failed one is
    logged and skipped (the chart shows the gap), never the end of the page."""
    while True:
        try:
            history.add(time.time_ns() // 1_000_000, unsent())
        except (sqlite3.Error, OSError) as exc:
            log.warning("backlog_sample_failed", error=str(exc))
        except Exception:  # a store the reader cannot open: the same, with its trace
            log.warning("backlog_sample_failed", exc_info=True)
        await asyncio.sleep(every_s)
