"""The `make bench` table: each figure beside its goal, from the benches' JSON.

Pure functions only (no I/O), so tests/test_bench_table.py checks them on a
result dict: :func:`rows` turns what bench/run.py collected (one JSON object
per bench, keyed by step name) into figure | measured | goal | met lines,
:func:`markdown` / :func:`text` render them, and :func:`replace_block`
puts a rendered block between the markers of docs/performance.md.

Goals are the product card's, the specification's and detect's (docs/performance.md). A bench that
failed or was not run gives its lines with ``met`` = ERROR, never a guess.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

#: Markers of the block bench/run.py --update-docs rewrites in docs/performance.md.
BEGIN = "<!-- bench:latest begin: written by `make bench-docs`; edit bench/table.py, not this -->"
END = "<!-- bench:latest end -->"

YES, NO, NO_GOAL, ERROR = "yes", "**NO**", "—", "ERROR"

#: Parse protocols in the order the station config cycles through them.
PROTOCOLS = (
    "sinopec", "dart", "gilbarco", "furen", "ck1313", "lanfeng", "uninfo", "udc", "censtar"
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Row:
    figure: str
    measured: str
    goal: str
    met: str


def _n(value: float, digits: int = 0) -> str:
    """Thousands with a thin space, as docs/performance.md writes them."""
    return f"{value:,.{digits}f}".replace(",", " ")


def _mb(kib: float) -> float:
    """KiB (what /proc reports) to MB of 10^6 bytes: the stricter reading of 40 MB."""
    return kib * 1024 / 1e6


def _met(ok: bool) -> str:
    return YES if ok else NO


Measure = Callable[[Mapping[str, Any]], tuple[str, bool | None]]


def _figures() -> list[tuple[str, str, str, Measure]]:
    """(step, figure, goal, measure): ``measure(step's JSON)`` → (measured text, met)."""

    def idle_cpu(r: Mapping[str, Any]) -> tuple[str, bool | None]:
        pct = float(r["cpu_pct_of_one_core"])
        return f"{pct:.2f} % of one core ({r['seconds']:.0f} s)", pct <= 2.0

    def hangup(r: Mapping[str, Any]) -> tuple[str, bool | None]:
        text = (
            f"p50 {_n(r['p50'])} / p99 {_n(r['p99'])} ms (max {_n(r['max'])}, {r['orders']} sales)"
        )
        return text, float(r["p99"]) <= 500

    def ingest_rate(r: Mapping[str, Any]) -> tuple[str, bool | None]:
        g = r["group"]
        return f"{_n(g['orders_per_s'])} orders/s", float(g["orders_per_s"]) >= 10_000

    def ingest_cpu(r: Mapping[str, Any]) -> tuple[str, bool | None]:
        us = float(r["group"]["cpu_us_per_order"])
        return f"{us:.1f} µs CPU per order", us <= 100

    def ingest_single(r: Mapping[str, Any]) -> tuple[str, bool | None]:
        s = r["single"]
        return f"{_n(s['orders_per_s'])} orders/s, {s['cpu_us_per_order']:.0f} µs CPU", None

    def mark(r: Mapping[str, Any]) -> tuple[str, bool | None]:
        return f"{r['mark']['ms_per_mark']:.3f} ms on the event loop", None

    def flash(r: Mapping[str, Any]) -> tuple[str, bool | None]:
        b = float(r["group"]["file_bytes_per_order"])
        return f"{_n(b)} B (file ÷ orders)", b <= 300

    def drain_rate(r: Mapping[str, Any]) -> tuple[str, bool | None]:
        rate = float(r["drain_orders_per_s"])
        return f"{_n(rate)} orders/s ({_n(r['orders'])} orders)", rate >= 20_000

    def drain_ratio(r: Mapping[str, Any]) -> tuple[str, bool | None]:
        ratio = float(r["ratio"])
        return f"{ratio:.1f}× (naive {_n(r['naive_orders_per_s'])} orders/s)", ratio >= 30

    def wire(r: Mapping[str, Any]) -> tuple[str, bool | None]:
        b = float(r["wire_payload_bytes_per_order"])
        return f"{b:.1f} B", b <= 120

    def rss_steady(r: Mapping[str, Any]) -> tuple[str, bool | None]:
        mb = _mb(r["rss_steady_kb"])
        return f"{mb:.1f} MB (after {r['warmup_s']:.0f} s)", mb <= 40

    def rss_soak(r: Mapping[str, Any]) -> tuple[str, bool | None]:
        end, growth = _mb(r["rss_end_kb"]), _mb(r["growth_kb"])
        minutes = float(r["soak_s"]) / 60
        text = (
            f"{end:.1f} MB after {minutes:.0f} min, growth {growth:+.1f} MB "
            f"(max {_mb(r['rss_max_kb']):.1f}, {_n(r['orders_delivered'])} orders)"
        )
        return text, end <= 40

    def ready(r: Mapping[str, Any]) -> tuple[str, bool | None]:
        s = float(r["median"]["ready_s"])
        return f"{s:.2f} s (median of {r['runs']})", s <= 1.0

    def read_callback(r: Mapping[str, Any]) -> tuple[str, bool | None]:
        cb = r["read_callback"]
        p99 = float(cb["p99_ms"])
        text = f"p99 {p99:.3f} ms (p50 {cb['p50_ms']:.3f}, max {cb['max_ms']:.1f}, "
        return text + f"{_n(cb['callbacks'])} callbacks)", p99 <= 2.0

    def hangup_full(r: Mapping[str, Any]) -> tuple[str, bool | None]:
        text, ok = hangup(r)
        return f"{text}, {_n(r['records_before'])} → {_n(r['records_after'])} records", ok

    def relay(r: Mapping[str, Any]) -> tuple[str, bool | None]:
        p99 = float(r["added_p99"])
        return f"p99 {p99:.3f} ms (p50 {r['added_p50']:.3f})", p99 <= 2.0

    def https_rate(r: Mapping[str, Any]) -> tuple[str, bool | None]:
        https, mqtt = r["https"], r["mqtt"]
        text = f"{_n(https['orders_per_s'])} orders/s (MQTT {_n(mqtt['orders_per_s'])}, "
        return text + f"{_n(r['orders'])} orders)", None

    def https_wire(r: Mapping[str, Any]) -> tuple[str, bool | None]:
        b = float(r["https"]["wire_bytes_per_order"])
        return f"{b:.1f} B (MQTT {r['mqtt']['wire_bytes_per_order']:.1f})", b <= 120

    def charts_time(r: Mapping[str, Any]) -> tuple[str, bool | None]:
        text = f"{r['cold_ms']:.0f} ms first, {r['warm_ms']:.1f} ms refresh "
        return text + f"({_n(r['rows'])} records)", None

    def charts_rss(r: Mapping[str, Any]) -> tuple[str, bool | None]:
        mb = _mb(r["extra_rss_kb"])
        return f"{mb:.2f} MB", mb < 2.0

    def detect_one(run: str, goal_s: float) -> Measure:
        def measure(r: Mapping[str, Any]) -> tuple[str, bool | None]:
            p = r[run]
            s, found = float(p["seconds"]), p["status"] == "found"
            where = f"{p['family']} {p['line']}, address {','.join(map(str, p['addresses']))}"
            text = f"{s:.1f} s ({where if found else p['status']}, {p['bytes_written']} B written)"
            return text, found and s <= goal_s

        return measure

    def detect_ports(r: Mapping[str, Any]) -> tuple[str, bool | None]:
        p = r["ports"]
        n, right, slowest = len(p["ports"]), int(p["found_right"]), float(p["slowest_s"])
        text = f"slowest {slowest:.1f} s, wall {p['wall_s']:.1f} s ({right} of {n} found right)"
        return text, n >= 32 and right == n and max(slowest, float(p["wall_s"])) <= 60

    def parse(protocol: str) -> Measure:
        def measure(r: Mapping[str, Any]) -> tuple[str, bool | None]:
            p = r["protocols"][protocol]
            us = float(p["us_per_frame"])
            return f"{us:.1f} µs ({_n(p['frames'])} frames)", us <= 50

        return measure

    return [
        ("idle", "collector CPU, 32 idle polled ports", "≤ 2 % of one core", idle_cpu),
        ("busy", "hang-up → platform, 32 busy ports", "p99 ≤ 500 ms", hangup),
        ("store", "durable ingest, 100 orders per commit", "≥ 10 000 orders/s", ingest_rate),
        ("store", "durable ingest, CPU per order", "≤ 100 µs", ingest_cpu),
        ("store", "durable ingest, one order per commit (a port's sale)", NO_GOAL, ingest_single),
        ("store", "PUBACK mark of one record (mark_published)", NO_GOAL, mark),
        ("drain", "drain to the broker", "≥ 20 000 orders/s", drain_rate),
        ("drain", "drain ÷ naive gmssl per-order publisher, same run", "≥ 30×", drain_ratio),
        ("drain", "bytes per order on the wire (payload)", "≤ 120 B", wire),
        ("store", "bytes per order on flash", "≤ 300 B", flash),
        ("soak", "RSS steady, 32 ports selling", "≤ 40 MB", rss_steady),
        ("soak", "RSS after the soak, and its growth", "≤ 40 MB", rss_soak),
        ("startup", "start → READY=1 (sd_notify)", "≤ 1.0 s", ready),
        (
            "readpath",
            "poll port read callback, 32 busy ports, store at its 250 000 cap",
            "p99 ≤ 2 ms",
            read_callback,
        ),
        (
            "readpath",
            "hang-up → platform, 32 busy ports, store at its 250 000 cap",
            "p99 ≤ 500 ms",
            hangup_full,
        ),
        ("relay", "relay added latency", "p99 ≤ 2 ms", relay),
        ("http", "HTTPS drain, one request at a time", NO_GOAL, https_rate),
        ("http", "HTTPS wire bytes per order (heads included)", "≤ 120 B", https_wire),
        ("charts", "dashboard charts, 24 h on a full store", NO_GOAL, charts_time),
        ("charts", "dashboard charts, the page's extra RSS", "< 2 MB", charts_rss),
        ("detect", "detect one port, passive (a POS polling)", "≤ 15 s", detect_one("passive", 15)),
        (
            "detect",
            "detect one port, active (first setting, address 1)",
            "≤ 30 s",
            detect_one("active", 30),
        ),
        (
            "detect",
            "detect one port, active (last setting, top address)",
            "≤ 30 s",
            detect_one("active_worst", 30),
        ),
        ("detect", "detect 32 ports at once", "≤ 60 s", detect_ports),
        *[
            ("frames", f"parse + build per frame, {name}", "≤ 50 µs", parse(name))
            for name in PROTOCOLS
        ],
    ]


def rows(results: Mapping[str, Any]) -> list[Row]:
    """One :class:`Row` per figure; a missing or failed step's rows say ERROR."""
    out = []
    for step, figure, goal, measure in _figures():
        result = results.get(step)
        if not isinstance(result, Mapping) or "error" in result:
            why = "not run" if result is None else str(dict(result).get("error", result))
            out.append(Row(figure, f"{step}: {why}"[:120], goal, ERROR))
            continue
        try:
            measured, ok = measure(result)
        except (KeyError, TypeError, ValueError) as exc:
            out.append(Row(figure, f"{step}: unreadable result ({exc!r})"[:120], goal, ERROR))
            continue
        out.append(Row(figure, measured, goal, NO_GOAL if ok is None else _met(ok)))
    return out


def markdown(table: list[Row]) -> str:
    lines = ["| figure | measured | goal | met? |", "|---|---|---|---|"]
    lines += [f"| {r.figure} | {r.measured} | {r.goal} | {r.met} |" for r in table]
    return "\n".join(lines)


def text(table: list[Row]) -> str:
    """The terminal form: aligned columns, the same four as :func:`markdown`."""
    head = Row("figure", "measured", "goal", "met?")
    cells = [head, *table]
    widths = [max(len(getattr(r, f)) for r in cells) for f in ("figure", "measured", "goal")]

    def line(r: Row) -> str:
        met = r.met.strip("*")
        return f"{r.figure:<{widths[0]}}  {r.measured:<{widths[1]}}  {r.goal:<{widths[2]}}  {met}"

    rule = "-" * (sum(widths) + 6 + 4)
    return "\n".join([line(head), rule, *(line(r) for r in table)])


def replace_block(document: str, block: str) -> str:
    """``document`` with what lies between :data:`BEGIN` and :data:`END` replaced
    by ``block``; ValueError when the markers are missing or out of order."""
    start, end = document.find(BEGIN), document.find(END)
    if start < 0 or end < start:
        raise ValueError("docs/performance.md has no bench:latest markers (begin, then end)")
    return f"{document[: start + len(BEGIN)]}\n{block.strip()}\n{document[end:]}"
