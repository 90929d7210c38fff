"""Small inline SVG charts, drawn on the gateway: no script, no library, no CDN.

Each chart is one ``<figure>``: a caption (the title, bilingual like the
page), an ``<svg role="img">`` whose ``<title>`` and ``<desc>`` say what it
shows, axes with their units and the station's local times, and a text
table of the same data (class ``sr-only``: read by screen readers, not
shown). Colours and strokes come from page.css classes; nothing here writes
a ``style`` attribute, which the page's Content-Security-Policy
(``style-src 'self'``) refuses — SVG presentation attributes and classes are
not styles. Every text is escaped. Pure functions: data in, markup out.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo

#: The drawing's user units (the SVG scales to the page's width).
WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 58, 58, 26, 30
#: Hours between two time ticks over 24 h (8 labels fit a phone's width).
TICK_HOURS = 3


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    unit: str
    points: Sequence[tuple[int, float]]  # (wall ms, value), oldest first
    css: str
    right: bool = False  # on the right-hand axis (a second unit)


@dataclass(frozen=True, slots=True)
class Band:
    """A span marked on the time axis (a delivery): from, to (wall ms), label."""

    start_ms: int
    end_ms: int
    label: str


@dataclass(slots=True)
class Table:
    """The chart's text fallback: a header row and rows of cells."""

    head: list[str]
    rows: list[list[str]] = field(default_factory=list)

    def markup(self, caption: str) -> str:
        def row(cells: Sequence[str], tag: str) -> str:
            return "<tr>" + "".join(f"<{tag}>{html.escape(c)}</{tag}>" for c in cells) + "</tr>"

        body = "".join(row(r, "td") for r in self.rows)
        return (
            f'<table class="sr-only"><caption>{html.escape(caption)}</caption>'
            f"{row(self.head, 'th')}{body}</table>"
        )


def nice_max(value: float) -> float:
    """A round upper bound ≥ ``value`` (1, 2, 2.5 or 5 × 10^n) for an axis."""
    if value <= 0:
        return 1.0
    step = 10 ** math.floor(math.log10(value))
    for factor in (1, 2, 2.5, 5, 10):
        if value <= factor * step:
            return factor * step
    return 10 * step


def number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:g}"


def _figure(chart_id: str, title: str, desc: str, inner: str, table: Table) -> str:
    t, d = html.escape(title), html.escape(desc)
    return (
        f'<figure class="chart" id="{chart_id}"><figcaption>{t}</figcaption>'
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="{chart_id}-t '
        f'{chart_id}-d" xmlns="http://www.w3.org/2000/svg">'
        f'<title id="{chart_id}-t">{t}</title><desc id="{chart_id}-d">{d}</desc>'
        f"{inner}</svg>{table.markup(title)}</figure>"
    )


def _y_axis(top: float, unit: str, right: bool) -> str:
    """Gridlines and labels 0, ¼ … top, and the unit, on one side."""
    x = WIDTH - RIGHT if right else LEFT
    anchor, dx = ("start", 4) if right else ("end", -4)
    out = [f'<g class="axis {"right" if right else "left"}">']
    for i in range(5):
        value = top * i / 4
        y = HEIGHT - BOTTOM - (HEIGHT - TOP - BOTTOM) * i / 4
        if not right:
            out.append(
                f'<line class="gridline" x1="{LEFT}" x2="{WIDTH - RIGHT}" '
                f'y1="{y:.1f}" y2="{y:.1f}"/>'
            )
        out.append(
            f'<text x="{x + dx}" y="{y + 4:.1f}" text-anchor="{anchor}">{number(value)}</text>'
        )
    ux = x + (6 if right else -6)
    out.append(
        f'<text class="unit" x="{ux}" y="{TOP - 12}" text-anchor="{anchor}">'
        f"{html.escape(unit)}</text></g>"
    )
    return "".join(out)


def _x(ms: int, x0: int, x1: int) -> float:
    return LEFT + (WIDTH - LEFT - RIGHT) * (ms - x0) / max(1, x1 - x0)


def _y(value: float, top: float) -> float:
    return HEIGHT - BOTTOM - (HEIGHT - TOP - BOTTOM) * min(value, top) / top


def _time_axis(x0: int, x1: int, tz: tzinfo) -> str:
    """Ticks on the station's local hours that are multiples of TICK_HOURS."""
    out = [
        f'<g class="axis time"><line x1="{LEFT}" x2="{WIDTH - RIGHT}" '
        f'y1="{HEIGHT - BOTTOM}" y2="{HEIGHT - BOTTOM}"/>'
    ]
    start = datetime.fromtimestamp(x0 / 1000, tz).replace(minute=0, second=0, microsecond=0)
    hour_ms = 3_600_000
    at = int(start.timestamp() * 1000)
    while at <= x1:
        local = datetime.fromtimestamp(at / 1000, tz)
        if at >= x0 and local.hour % TICK_HOURS == 0:
            x = _x(at, x0, x1)
            out.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{HEIGHT - BOTTOM}" '
                f'y2="{HEIGHT - BOTTOM + 4}"/><text x="{x:.1f}" y="{HEIGHT - 8}" '
                f'text-anchor="middle">{local:%H:%M}</text>'
            )
        at += hour_ms
    out.append("</g>")
    return "".join(out)


def time_chart(
    chart_id: str,
    title: str,
    series: Sequence[Series],
    x0_ms: int,
    x1_ms: int,
    tz: tzinfo,
    table: Table,
    bands: Sequence[Band] = (),
) -> str:
    """Lines over time: one ``<polyline>`` per series (one point per sample),
    a left axis for the first unit and a right one for a second, bands."""
    left = [s for s in series if not s.right]
    right = [s for s in series if s.right]
    tops = {
        side: nice_max(max((v for s in group for _, v in s.points), default=0.0))
        for side, group in (("left", left), ("right", right))
    }
    inner = []
    for band in bands:
        a = _x(max(band.start_ms, x0_ms), x0_ms, x1_ms)
        b = _x(min(band.end_ms, x1_ms), x0_ms, x1_ms)
        inner.append(
            f'<rect class="band" x="{a:.1f}" y="{TOP}" width="{max(2.0, b - a):.1f}" '
            f'height="{HEIGHT - TOP - BOTTOM}"><title>{html.escape(band.label)}</title>'
            "</rect>"
        )
    if left:
        inner.append(_y_axis(tops["left"], " / ".join(sorted({s.unit for s in left})), False))
    if right:
        inner.append(_y_axis(tops["right"], " / ".join(sorted({s.unit for s in right})), True))
    inner.append(_time_axis(x0_ms, x1_ms, tz))
    for s in series:
        top = tops["right" if s.right else "left"]
        points = " ".join(f"{_x(ms, x0_ms, x1_ms):.1f},{_y(v, top):.1f}" for ms, v in s.points)
        name = html.escape(s.name)
        inner.append(
            f'<polyline class="line {s.css}" data-points="{len(s.points)}" '
            f'points="{points}"><title>{name}</title></polyline>'
        )
    inner.append(_legend(series))
    parts = [f"{s.name}: {len(s.points)} points" for s in series]
    if bands:
        parts.append(f"{len(bands)} marked")
    return _figure(chart_id, title, "; ".join(parts), "".join(inner), table)


def _legend(series: Sequence[Series]) -> str:
    out, x = ['<g class="legend">'], LEFT + 4
    for s in series:
        out.append(
            f'<rect class="{s.css}" x="{x}" y="{TOP + 2}" width="10" height="10"/>'
            f'<text x="{x + 14}" y="{TOP + 11}">{html.escape(s.name)}</text>'
        )
        x += 24 + 7 * len(s.name)
    out.append("</g>")
    return "".join(out)


def hour_bars(
    chart_id: str,
    title: str,
    unit: str,
    groups: Sequence[tuple[str, Sequence[float]]],
    hours: int,
    table: Table,
) -> str:
    """Bars per hour of the day (0..23), one per group (nozzle) and hour with a
    value above zero; ``hours``: how many hours of the day have begun."""
    top = nice_max(max((v for _, values in groups for v in values), default=0.0))
    slot = (WIDTH - LEFT - RIGHT) / 24
    width = max(1.0, (slot - 2) / max(1, len(groups)))
    inner = [_y_axis(top, unit, False), '<g class="axis time">']
    inner.append(
        f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{HEIGHT - BOTTOM}" y2="{HEIGHT - BOTTOM}"/>'
    )
    for hour in range(0, 24, TICK_HOURS):
        x = LEFT + slot * hour
        inner.append(f'<text x="{x:.1f}" y="{HEIGHT - 8}" text-anchor="start">{hour:02d}:00</text>')
    inner.append("</g>")
    bars = 0
    for g, (name, values) in enumerate(groups):
        for hour, value in enumerate(values[:hours]):
            if value <= 0:
                continue
            x = LEFT + slot * hour + 1 + width * g
            y = _y(value, top)
            label = html.escape(f"{name} {hour:02d}:00 {value:g} {unit}")
            inner.append(
                f'<rect class="hbar n{g % 8}" x="{x:.1f}" y="{y:.1f}" '
                f'width="{width:.1f}" height="{HEIGHT - BOTTOM - y:.1f}">'
                f"<title>{label}</title></rect>"
            )
            bars += 1
    legend = [Series(name, unit, (), f"n{g % 8}") for g, (name, _) in enumerate(groups)]
    inner.append(_legend(legend))
    desc = f"{bars} bars: {len(groups)} nozzles × the hours with sales"
    return _figure(chart_id, title, desc, "".join(inner), table)
