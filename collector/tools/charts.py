"""The page's charts from the store: what they show and where it comes from.

- **Tanks over 24 h**: each tank's volume (L) and water level (mm) from its
  ``tank`` records, the last reading in each :data:`BUCKET_S` bucket (at most
  288 points a day, whatever the gauge's period), and the ``delivery``
  records marked as bands from their start to their end.
- **Litres per hour per nozzle, today**: the ``order`` records whose
  ``ended_at`` falls in today's station-local hours, summed per nozzle.
- **The uplink backlog over 24 h**: the samples of collector/tools/history.py.

Incremental: :class:`ChartData` remembers the last record id it read and
reads only newer rows at the next view, so a page that refreshes its charts
every minute costs the rows of that minute, not a day's (the first view
reads the window once). Ids follow commit order, and the window's first id
is found by a binary search on ``created_ms`` over the rowid — no index on
time needed. What it keeps: ≤ 288 points per tank, the day's deliveries and
24 hourly sums per nozzle — a few kB.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Any

from buffer.codec import to_text

#: The time charts' span.
WINDOW_MS = 24 * 3_600_000
#: One point per tank per bucket: 5 minutes, 288 a day.
BUCKET_MS = 300_000
#: Rows read per query when catching up (bounded memory per step).
READ_ROWS = 2000


@dataclass(slots=True)
class TankTrace:
    grade: str | None = None
    #: bucket start ms → (reading ms, volume L, water mm)
    buckets: dict[int, tuple[int, float, float]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DeliverySpan:
    tank: Any
    start_ms: int
    end_ms: int
    volume_l: str


def _float(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _ms(value: Any) -> int | None:
    try:
        at = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return None if at.tzinfo is None else int(at.timestamp() * 1000)


def first_id_since(db: sqlite3.Connection, since_ms: int) -> int:
    """The smallest id whose ``created_ms`` ≥ ``since_ms`` (ids follow commit
    order); one past the last id when none is."""
    row = db.execute("SELECT min(id), max(id) FROM records").fetchone()
    if row[0] is None:
        return 1
    low, high = int(row[0]), int(row[1]) + 1
    while low < high:
        mid = (low + high) // 2
        found = db.execute(
            "SELECT id, created_ms FROM records WHERE id >= ? ORDER BY id LIMIT 1", (mid,)
        ).fetchone()
        if found[1] >= since_ms:
            high = mid  # the answer is found[0] or before it (mid..found[0] is empty)
        else:
            low = int(found[0]) + 1
    return low


class ChartData:
    """The three charts' data, read forward from the store as it grows."""

    def __init__(self, tz: tzinfo) -> None:
        self.tz = tz
        self.last_id = 0
        self.tanks: dict[Any, TankTrace] = {}
        self.deliveries: dict[tuple[Any, int], DeliverySpan] = {}
        #: Station-local day (ISO date) → nozzle → 24 litre sums.
        self.hourly: dict[str, dict[str, list[float]]] = {}
        self.rows_read = 0

    def day_of(self, now_ms: int) -> tuple[str, int, int]:
        """Today at the station: (ISO date, local midnight ms, hours begun)."""
        now = datetime.fromtimestamp(now_ms / 1000, self.tz)
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return now.date().isoformat(), int(midnight.timestamp() * 1000), now.hour + 1

    def refresh(self, db: sqlite3.Connection, now_ms: int) -> None:
        since = now_ms - WINDOW_MS
        if self.last_id == 0:
            self.last_id = first_id_since(db, since) - 1
        while True:
            rows = db.execute(
                "SELECT id, kind, nozzle, created_ms, body, h, prev FROM records WHERE id > ? "
                "AND kind IN ('tank', 'delivery', 'order') ORDER BY id LIMIT ?",
                (self.last_id, READ_ROWS),
            ).fetchall()
            for row in rows:
                self._take(*row)
            self.rows_read += len(rows)
            if len(rows) < READ_ROWS:
                break
            self.last_id = rows[-1][0]
        top = db.execute("SELECT max(id) FROM records").fetchone()[0]
        self.last_id = max(self.last_id, int(top or 0))
        self._prune(since, now_ms)

    def _take(
        self, rid: int, kind: str, nozzle: str | None, created: int, body: Any, h: Any, prev: Any
    ) -> None:
        record = json.loads(to_text(body, h, prev))
        if kind == "tank":
            volume, water = _float(record.get("volume_l")), _float(record.get("water_mm"))
            if volume is None:
                return
            trace = self.tanks.setdefault(record.get("tank"), TankTrace())
            trace.grade = record.get("grade") or trace.grade
            at = _ms(record.get("at")) or created
            trace.buckets[at - at % BUCKET_MS] = (at, volume, water or 0.0)
        elif kind == "delivery":
            start, end = _ms(record.get("started_at")), _ms(record.get("ended_at"))
            if start is not None:
                volume_l = str(record.get("volume_l"))
                span = DeliverySpan(record.get("tank"), start, end or start, volume_l)
                self.deliveries[(span.tank, start)] = span
        else:
            ended, volume = _ms(record.get("ended_at")), _float(record.get("volume"))
            if ended is None or volume is None or not nozzle:
                return
            local = datetime.fromtimestamp(ended / 1000, self.tz)
            day = self.hourly.setdefault(local.date().isoformat(), {})
            day.setdefault(nozzle, [0.0] * 24)[local.hour] += volume

    def _prune(self, since: int, now_ms: int) -> None:
        for trace in self.tanks.values():
            for bucket in [b for b in trace.buckets if b < since - BUCKET_MS]:
                del trace.buckets[bucket]
        for key in [k for k, d in self.deliveries.items() if d.end_ms < since]:
            del self.deliveries[key]
        today, _, _ = self.day_of(now_ms)
        yesterday = (datetime.fromisoformat(today) - timedelta(days=1)).date().isoformat()
        for day in [d for d in self.hourly if d not in (today, yesterday)]:
            del self.hourly[day]
