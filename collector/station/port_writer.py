"""One port's hand to the store's writer (buffer/writer.py): its records'
stamps and rids, its alarms, what was not taken or not stored.

Nothing here waits for a commit: a record is handed over (a deque append
in the port's read callback) and True says the writer took it — it then
commits what it took in order and never drops it. Not taken (its queue
full while the store refuses) is counted and logged, and the caller keeps
its state as it was (collector/station/port_alarms.py,
nozzle_records.py).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import structlog

from buffer.commits import Item, NewRecord, Outcome, Result
from buffer.store import OrderStore
from collector.station.port_stats import PortStats
from collector.station.records import alarm_record

log = structlog.get_logger("collector.station.port")


class PortWriter:
    """Hands one port's records and alarms to the store's writer."""

    def __init__(
        self, store: OrderStore, tz: timezone, stats: PortStats, on_commit: Callable[[], None]
    ) -> None:
        self.store = store
        self.tz = tz
        self.stats = stats
        self.on_commit = on_commit
        self._record_ms: dict[str, int] = {}  # last rid stamp per source

    def rid(self, source: str, what: str) -> tuple[str, datetime]:
        """A unique rid for a snapshot of ``source`` now (ms, bumped on a tie)."""
        now = self.stamp(source)
        return f"{source}:{what}:{int(now.timestamp() * 1000)}", now

    def stamp(self, key: str) -> datetime:
        """Now, at least 1 ms after the last stamp of ``key``: two transitions
        handed to the writer in one millisecond (an episode that ends as it
        begins) get two rids, never one record "already stored"."""
        now = datetime.now(self.tz)
        ms = int(now.timestamp() * 1000)
        last = self._record_ms.get(key, 0)
        if ms <= last:
            ms = last + 1
            now = datetime.fromtimestamp(ms / 1000, self.tz)
        self._record_ms[key] = ms
        return now

    def alarm(self, code: str, source: str, raised: bool, detail: dict[str, Any]) -> bool:
        """Hand one raise or clear to the store's writer; False when it was not
        taken (counted, logged): a caller holding the alarm's state leaves it
        as it was and asks again. Taken, it is committed in order."""
        now = self.stamp(f"{source}:{code}").replace(tzinfo=None)
        rid, body = alarm_record(source, code, raised, now, self.tz, detail)
        taken = self.store_record("alarm", rid, body)
        log.warning("alarm", code=code, source=source, raised=raised, taken=taken, **detail)
        return taken

    def store_record(self, kind: str, rid: str, body: dict[str, Any]) -> bool:
        """Hand a record to the store's writer; True once taken (it is then
        committed in order, or already stored: a duplicate)."""
        return self.submit([NewRecord(kind, rid, body)])

    def submit(self, items: list[Item]) -> bool:
        """Hand ``items`` to the writer together; True once taken (committed
        in order, in one transaction), False when not (counted, logged)."""
        if self.store.writer.submit_all(items, self._decided):
            return True
        self.stats.error("store")
        log.error("record_not_taken", kinds=[i.kind for i in items], keys=[i.key for i in items])
        return False

    def _decided(self, outcomes: list[Outcome]) -> None:
        if any(o.result is Result.STORED for o in outcomes):
            self.on_commit()
        for o in outcomes:
            if not o.kept:  # a body the store can never take (a bug): said, counted
                self.stats.error("store")
                log.error("record_not_stored", error=o.detail)
