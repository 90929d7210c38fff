"""CPU cost of the link against the books per frame (collector/station/books.py,
collector/station/reconcile.py), on a busy Sinopec relay.

    .venv/bin/python bench/books.py [--minutes 60] [--sale-every-s 2] [--short] [--json]

A recorded-style line is generated in memory (no I/O): the POS polls two
pumps in turn every 50 ms (a 30, answered by a 31 with both nozzles idle);
every ``--sale-every-s`` simulated seconds a pump answers a poll with its
95-byte 32 record, and the POS confirms it with a 3C (the long form with
the booked amount and volume, or ``--short``: POS_TTC only) answered by
the next 31. Each chunk goes through the Sinopec monitor as a relay feeds
it (POS side / dispenser side), then its events through the port's
:class:`PortBooks` exactly as the sink hands them (``observe``), and
``tick`` runs once per simulated second, as the port's timer does; a
committed order is reported to it (``order_stored``) as the sink does.

Timed apart, in this thread's CPU time (``time.thread_time``: the machine
is shared) and wall-clock, each divided by the frames on the line: the
monitor's parse (for scale, a first pass that keeps its events), and the
reconciliation (``observe`` + ``order_stored`` + ``tick`` on those events,
less the same loop without them: no timer call per frame). A clean line:
the run fails if a finding appears. ``books_cpu_us_per_sale``: the whole
reconciliation's CPU divided by the sales.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from buffer.store import OrderStore
from collector.station.books import PortBooks
from collector.station.nozzles import NozzleTable
from collector.station.reconcile import BooksSettings
from collector.station.sink import PortSink
from protocols.events import Sale
from protocols.sinopec.framer import Frame, encode_frame
from protocols.sinopec.messages import (
    RealtimeEntry,
    TransactionRecord,
    build_confirm,
    build_confirm_values,
    build_realtime,
    build_record,
)
from protocols.sinopec.monitor import SinopecMonitor

CST = timezone(timedelta(hours=8))
POS = 0xE0
CYCLE_S = 0.05
START = datetime(2026, 12, 7, 8, 0, 0, tzinfo=CST)
IDLE = build_realtime([RealtimeEntry(0, 1), RealtimeEntry(0, 2)])


def line(minutes: float, sale_every_s: float, short: bool) -> list[tuple[float, bool, bytes]]:
    """(simulated second, from the POS?, bytes) for the whole run."""
    out: list[tuple[float, bool, bytes]] = []
    ttc = {1: 0, 2: 0}
    v_tot = {(a, n): 1_000_000 for a in (1, 2) for n in (1, 2)}
    next_sale, ctrl, cycles = sale_every_s, 0, int(minutes * 60 / CYCLE_S)
    for i in range(cycles):
        t = i * CYCLE_S
        address = 1 + i % 2
        ctrl = (ctrl + 1) % 0x40
        out.append((t, True, encode_frame(Frame(address, POS, ctrl, b"\x30"))))
        if t < next_sale:
            out.append((t + 0.01, False, encode_frame(Frame(POS, address, ctrl, IDLE))))
            continue
        next_sale += sale_every_s
        ttc[address] += 1
        nozzle = 1 + (ttc[address] % 2)
        vol = 1000 + ttc[address] % 700
        v_tot[(address, nozzle)] += vol
        at = (START + timedelta(seconds=t)).replace(tzinfo=None, microsecond=0)
        rec = TransactionRecord(
            pos_ttc=ttc[address], time=at, nzn=nozzle, g_code="1092", vol=vol, prc=789,
            amn=vol * 789 // 100, v_tot=v_tot[(address, nozzle)],
        )  # fmt: skip
        out.append((t + 0.01, False, encode_frame(Frame(POS, address, ctrl, build_record(rec)))))
        data = (
            build_confirm(rec.pos_ttc) if short else build_confirm_values(rec.pos_ttc, rec.amn, vol)
        )
        ctrl = (ctrl + 1) % 0x40
        out.append((t + 0.02, True, encode_frame(Frame(address, POS, ctrl, data))))
        out.append((t + 0.03, False, encode_frame(Frame(POS, address, ctrl, IDLE))))
    return out


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def wall(self) -> datetime:
        return START + timedelta(seconds=self.t)


class Counted:
    """The monitor as PortBooks sees it: its count of the POS's frames."""

    master_frames = 0


def run(minutes: float, sale_every_s: float, short: bool) -> dict[str, Any]:
    chunks = line(minutes, sale_every_s, short)
    # Pass 1: the monitor alone (for scale), its events and POS-frame count kept.
    monitor = SinopecMonitor([1, 2])
    parsed: list[tuple[float, int, list[Any]]] = []
    c0, w0 = time.thread_time(), time.perf_counter()
    for at, from_pos, data in chunks:
        events = monitor.receive_request(data) if from_pos else monitor.receive_response(data)
        parsed.append((at, monitor.master_frames, events))
    parse_cpu, parse_wall = time.thread_time() - c0, time.perf_counter() - w0
    frames = monitor.counters["requests"] + monitor.counters["responses"]
    # Pass 2: the same batches through the port's books, as the sink hands
    # them, minus the same loop without the books (the iteration, the clock).
    with tempfile.TemporaryDirectory() as tmp:
        store = OrderStore(Path(tmp) / "store.sqlite")
        try:
            sink = PortSink(number=1, store=store, nozzles=NozzleTable(), station="S", tz=CST,
                            on_commit=lambda: None)  # fmt: skip
            clock, counted = Clock(), Counted()
            settings = BooksSettings(start_grace_s=0)
            books = PortBooks(sink, counted, settings, clock=clock, wall=clock.wall)
            names: dict[int, str] = {}  # id(sale) → its order rid
            for _, _, events in parsed:
                for e in events:
                    if isinstance(e, Sale):
                        names[id(e)] = f"p01.a{e.address}.n{e.nozzle}:{len(names) + 1}"
            cpu, wall = [], []
            for with_books in (False, True):
                next_tick = 1.0
                c0, w0 = time.thread_time(), time.perf_counter()
                for at, master_frames, events in parsed:
                    clock.t = at
                    counted.master_frames = master_frames
                    if with_books:
                        books.observe(events)
                        for event in events:
                            if isinstance(event, Sale):  # the sink committed its order
                                books.order_stored(event, names[id(event)])
                    if at >= next_tick:
                        next_tick += 1.0
                        if with_books:
                            books.tick()
                cpu.append(time.thread_time() - c0)
                wall.append(time.perf_counter() - w0)
            clock.t += settings.confirm_within_s + 1
            books.tick()
            counters = dict(books.reconciler.counters)
            findings = dict(books.findings)
        finally:
            store.close()
    sales = len(names)
    if findings or counters["sales"] != sales or counters["confirmations"] != sales:
        raise SystemExit(f"not a clean line: findings {findings}, counters {counters}")
    books_cpu, books_wall = cpu[1] - cpu[0], wall[1] - wall[0]
    us = 1e6 / frames
    return {
        "frames": frames,
        "sales": sales,
        "simulated_minutes": minutes,
        "confirm": "short" if short else "values",
        "books_cpu_us_per_frame": round(books_cpu * us, 2),
        "books_us_per_frame": round(books_wall * us, 2),
        "books_cpu_us_per_sale": round(books_cpu * 1e6 / sales, 1),
        "monitor_cpu_us_per_frame": round(parse_cpu * us, 2),
        "monitor_us_per_frame": round(parse_wall * us, 2),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "python": platform.python_version(),
        "load_1min": round(os.getloadavg()[0], 1),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=60, help="simulated minutes of line")
    p.add_argument("--sale-every-s", type=float, default=2.0)
    p.add_argument("--short", action="store_true", help="the POS sends the short 3C")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    result = run(args.minutes, args.sale_every_s, args.short)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
