"""A station's day in a store: tanks, deliveries, sales and a backlog, 24 h back.

For the page's charts (tests/test_web_page.py, bench/charts.py): three tanks
read every :data:`TANK_EVERY_MIN` minutes, falling with the sales on their
nozzles and rising at two deliveries; four nozzles selling through the day,
busier at the rush hours; the uplink backlog sampled every 5 minutes,
growing through an outage and draining after it. Records go through the
store's own API (chains, codec) and are then dated back: the store stamps
``created_ms`` with the clock, and a day of history cannot wait a day.
``filler`` older orders come first, to size a store like a month's.

:class:`Day` says what the charts must show (points, bars, bands), so a
test checks the picture against the data, not against itself.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

from buffer.store import OrderStore
from collector.tools.history import History, history_path

TANK_EVERY_MIN = 10
TANKS = (1, 2, 3)
NOZZLES = ("p01.a1.n1", "p01.a1.n2", "p01.a2.n1", "p01.a2.n2")
#: The nozzle's tank (grade) — two share tank 1.
TANK_OF = {"p01.a1.n1": 1, "p01.a1.n2": 1, "p01.a2.n1": 2, "p01.a2.n2": 3}
GRADES = {1: "92", 2: "95", 3: "0"}
#: Deliveries: (hours before now it started, tank, litres).
DELIVERIES = ((18.5, 1, 12_000.0), (7.25, 2, 8_000.0))
#: The backlog: an outage from this many hours back to that many.
OUTAGE_H = (10.0, 8.0)
FILLER_BATCH = 5000


@dataclass
class Day:
    now_ms: int
    #: Tank → the 5-minute buckets with a reading (the chart's points).
    tank_buckets: dict[int, set[int]] = field(default_factory=dict)
    #: (nozzle, local hour) pairs with sales today: the chart's bars.
    bars: set[tuple[str, int]] = field(default_factory=set)
    deliveries: Counter[int] = field(default_factory=Counter)
    backlog_samples: int = 0
    records: int = 0


def _iso(ms: int, tz: tzinfo) -> str:
    return datetime.fromtimestamp(ms / 1000, tz).isoformat(timespec="milliseconds")


def _order(nozzle: str, n: int, volume: float, ended: str) -> dict[str, Any]:
    return {
        "station": "DEMO-0001", "order_no": str(100000 + n), "grade": GRADES[TANK_OF[nozzle]],
        "price": "7.89", "volume": f"{volume:.2f}", "amount": f"{volume * 7.89:.2f}",
        "totalizer_volume_start": None, "totalizer_volume_end": None,
        "totalizer_amount_start": None, "totalizer_amount_end": None,
        "started_at": ended, "ended_at": ended, "flags": [],
    }  # fmt: skip


def fill(store_path: Path, now_ms: int, tz: tzinfo, *, filler: int = 0, seed: int = 1) -> Day:
    """Write the day into a new store at ``store_path`` and its backlog samples."""
    rng = random.Random(seed)
    store = OrderStore(store_path)
    db = store._db  # a test fixture's bulk fill: no fsync per record
    db.execute("PRAGMA synchronous=OFF")
    day = Day(now_ms)
    start = now_ms - 24 * 3_600_000
    dated: list[tuple[int, int]] = []  # (id, created_ms)
    n = 0
    for first in range(0, filler, FILLER_BATCH):
        batch = []
        for i in range(first, min(filler, first + FILLER_BATCH)):
            nozzle = NOZZLES[i % len(NOZZLES)]
            at = start - 3_600_000 - (filler - i) * 1000
            batch.append((nozzle, _order(nozzle, n, 20.0, _iso(at, tz)), f"f{i}"))
            n += 1
        for rec, (_, fields, _) in zip(store.append_orders(batch), batch, strict=True):
            assert rec is not None
            dated.append(
                (rec.id, int(datetime.fromisoformat(fields["ended_at"]).timestamp() * 1000))
            )
    # The day, in time order: sales, tank readings, deliveries.
    events: list[tuple[int, str, Any]] = []
    midnight = datetime.fromtimestamp(now_ms / 1000, tz).replace(hour=0, minute=0, second=0,
                                                                 microsecond=0)  # fmt: skip
    today_ms = int(midnight.timestamp() * 1000)
    at = start
    while at < now_ms:
        hour = datetime.fromtimestamp(at / 1000, tz).hour
        busy = 3.0 if hour in (7, 8, 17, 18) else (0.3 if hour < 6 else 1.0)
        at += int(rng.expovariate(busy * 12 / 3_600_000))  # ~12 sales an hour by day
        if at < now_ms:
            events.append((at, "order", rng.choice(NOZZLES)))
    for minute in range(TANK_EVERY_MIN, 24 * 60, TANK_EVERY_MIN):
        events.append((start + minute * 60_000 + 30_000, "tank", None))
    for hours_back, tank, litres in DELIVERIES:
        began = now_ms - int(hours_back * 3_600_000)
        events.append((began + 40 * 60_000, "delivery", (tank, began, litres)))
    events.sort(key=lambda e: e[0])
    volumes = {t: 30_000.0 for t in TANKS}
    water = {t: 12.0 for t in TANKS}
    for at, kind, what in events:
        if kind == "order":
            volume = round(rng.uniform(10, 60), 2)
            volumes[TANK_OF[what]] -= volume
            fields = _order(what, n, volume, _iso(at, tz))
            (rec,) = store.append_orders([(what, fields, f"d{n}")])
            n += 1
            if at >= today_ms:
                day.bars.add((what, datetime.fromtimestamp(at / 1000, tz).hour))
        elif kind == "tank":
            for tank in TANKS:
                water[tank] += 0.01
                body = {
                    "tank": tank, "grade": GRADES[tank], "at": _iso(at, tz),
                    "height_mm": f"{volumes[tank] / 20:.1f}", "water_mm": f"{water[tank]:.1f}",
                    "volume_l": f"{volumes[tank]:.1f}", "tc_volume_l": f"{volumes[tank]:.1f}",
                    "ullage_l": f"{39_269.9 - volumes[tank]:.1f}",
                    "water_volume_l": f"{water[tank] * 3:.1f}", "temp_c": "18.5", "status": None,
                }  # fmt: skip
                rec = store.append_record("tank", f"{tank}:{at}", body)
                assert rec is not None
                dated.append((rec.id, at))
                day.tank_buckets.setdefault(tank, set()).add(at - at % 300_000)
            continue
        else:
            tank, began, litres = what
            volumes[tank] += litres
            body = {
                "tank": tank, "grade": GRADES[tank], "started_at": _iso(began, tz),
                "ended_at": _iso(at, tz), "start_volume_l": "0", "end_volume_l": "0",
                "volume_l": f"{litres:.1f}", "tc_volume_l": f"{litres:.1f}", "source": "gauge",
                "flags": [],
            }  # fmt: skip
            rec = store.append_record("delivery", f"{tank}:{began}", body)
            day.deliveries[tank] += 1
        assert rec is not None
        dated.append((rec.id, at))
    db.executemany("UPDATE records SET created_ms=? WHERE id=?", [(ms, i) for i, ms in dated])
    day.records = int(db.execute("SELECT count(*) FROM records").fetchone()[0])
    store.close()
    history = History(history_path(store_path))
    for minute in range(5, 24 * 60 + 1, 5):
        at = start + minute * 60_000
        hours_back = (now_ms - at) / 3_600_000
        down, up = OUTAGE_H
        if down >= hours_back > up:
            unsent = int((down - hours_back) * 600)
        elif up >= hours_back > up - 0.5:
            unsent = int((hours_back - (up - 0.5)) * 2 * 1200)
        else:
            unsent = rng.randint(0, 3)
        history.add(at, unsent)
        day.backlog_samples += 1
    history.close()
    return day
