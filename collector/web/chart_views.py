"""The dashboard's charts section: collector/tools/charts.py's data drawn by svg.py.

``GET /`` embeds it (server-side, no script needed to see it) and page.js
fetches ``/charts`` once a minute to replace it. Times on the axes and in
the tables are the station's (``device.timezone``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime, tzinfo

from collector.tools.charts import WINDOW_MS, ChartData
from collector.tools.history import History
from collector.web.svg import Band, Series, Table, hour_bars, time_chart

#: Hours of the 24 h charts the text tables list (one row per hour).
TABLE_HOURS = 24


def _clock(ms: int, tz: tzinfo) -> str:
    return datetime.fromtimestamp(ms / 1000, tz).strftime("%H:%M")


def _hourly_rows(points: Sequence[tuple[int, Sequence[str]]], tz: tzinfo) -> list[list[str]]:
    """The last point of each local hour, as table rows (time, values…)."""
    last: dict[str, list[str]] = {}
    for ms, values in points:
        local = datetime.fromtimestamp(ms / 1000, tz)
        last[local.strftime("%m-%d %H:00")] = [_clock(ms, tz), *values]
    return list(last.values())[-TABLE_HOURS:]


def tank_charts(data: ChartData, now_ms: int, tz: tzinfo) -> list[str]:
    x0 = now_ms - WINDOW_MS
    out = []
    for tank in sorted(data.tanks, key=lambda t: (t is None, str(t))):
        trace = data.tanks[tank]
        points = [trace.buckets[b] for b in sorted(trace.buckets) if trace.buckets[b][0] >= x0]
        volume = Series("体积 Volume", "L", [(at, v) for at, v, _ in points], "volume")
        water = Series("水位 Water", "mm", [(at, w) for at, _, w in points], "water", right=True)
        bands = [
            Band(
                d.start_ms,
                d.end_ms,
                f"卸油 Delivery {_clock(d.start_ms, tz)}–{_clock(d.end_ms, tz)} {d.volume_l} L",
            )
            for d in sorted(data.deliveries.values(), key=lambda d: d.start_ms)
            if d.tank == tank and d.end_ms >= x0
        ]
        table = Table(["时间 Time", "体积 Volume (L)", "水位 Water (mm)"])
        table.rows = _hourly_rows([(at, [f"{v:.1f}", f"{w:.1f}"]) for at, v, w in points], tz)
        table.rows += [["卸油 Delivery", b.label, ""] for b in bands]
        grade = f" ({trace.grade})" if trace.grade else ""
        title = f"罐 {tank}{grade} 体积与水位 24 小时 · Tank {tank}{grade} volume and water, 24 h"
        out.append(
            time_chart(f"chart-tank-{tank}", title, [volume, water], x0, now_ms, tz, table, bands)
        )
    return out


def nozzle_chart(data: ChartData, now_ms: int, tz: tzinfo) -> str:
    today, _, hours = data.day_of(now_ms)
    sums = data.hourly.get(today, {})
    groups = [(nozzle, sums[nozzle]) for nozzle in sorted(sums)]
    table = Table(["时 Hour", *(f"{n} (L)" for n, _ in groups)])
    for hour in range(hours):
        if any(values[hour] for _, values in groups):
            table.rows.append([f"{hour:02d}:00", *(f"{v[hour]:.2f}" for _, v in groups)])
    title = f"今日每小时升数 {today} · Litres per hour per nozzle, today"
    return hour_bars("chart-nozzles", title, "L", groups, hours, table)


def backlog_chart(samples: Sequence[tuple[int, int]], now_ms: int, tz: tzinfo) -> str:
    x0 = now_ms - WINDOW_MS
    series = Series("未上传 Unsent", "records", [(at, float(n)) for at, n in samples], "backlog")
    table = Table(["时间 Time", "未上传 Unsent records"])
    table.rows = _hourly_rows([(at, [str(n)]) for at, n in samples], tz)
    title = "上传积压 24 小时 · Uplink backlog (unsent records), 24 h"
    return time_chart("chart-backlog", title, [series], x0, now_ms, tz, table)


def section(data: ChartData, samples: Sequence[tuple[int, int]], now_ms: int, tz: tzinfo) -> str:
    """The whole charts section (``<section id="charts">``)."""
    tanks = tank_charts(data, now_ms, tz)
    no_tanks = "" if tanks else '<p id="no-tank-data">(无油罐数据 no tank readings in 24 h)</p>'
    return (
        '<section id="charts"><h2>图表 Charts</h2>'
        f"{''.join(tanks)}{no_tanks}{nozzle_chart(data, now_ms, tz)}"
        f"{backlog_chart(samples, now_ms, tz)}</section>"
    )


class ChartsView:
    """The page's charts for one collector: the data read forward from the
    store, the backlog samples file, and the markup of both."""

    def __init__(self, tz: tzinfo, history: History | None) -> None:
        self.tz = tz
        self.data = ChartData(tz)
        self.history = history

    def render(self, db: sqlite3.Connection, now_ms: int) -> str:
        self.data.refresh(db, now_ms)
        samples = [] if self.history is None else self.history.backlog(now_ms - WINDOW_MS, now_ms)
        return section(self.data, samples, now_ms, self.tz)
