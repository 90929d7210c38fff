"""Durable ingest and flash bytes per order, measured for real.

    .venv/bin/python bench/store.py [--orders 50000] [--batch 100] [--dir /var/tmp] [--json]

Appends realistic orders (32 ports x 2 nozzles, the fields the port stores)
with synchronous=FULL (power-safe: one fsync of the WAL per commit), in group
commits of ``--batch`` orders (OrderStore.append_orders) and, for reference,
one commit per order (append_order), and PUBACK marks of one record each
(mark_published: wall ms per mark). Reports orders/s (wall), CPU µs per
order (process time), and bytes written to the device per order
(/proc/self/io write_bytes: WAL appends + checkpoints, what the flash sees)
and the file size per order after a checkpoint. ``--dir`` should be a real
disk, not tmpfs (fsync on tmpfs is free). ``--json``: one JSON object holding
both runs (bench/run.py reads it). ``--profile FILE``: the group-commit run
under pyinstrument (a dev dependency), its text report to FILE.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from buffer.store import OrderStore

NOZZLES = [f"p{p:02d}.a1.n{n}" for p in range(1, 33) for n in (1, 2)]


def order(i: int) -> tuple[str, dict[str, Any], str]:
    nozzle = NOZZLES[i % len(NOZZLES)]
    n = i // len(NOZZLES)
    fields = {
        "station": "DEMO-0001",
        "order_no": str(100000 + n),
        "grade": "92",
        "price": "7.89",
        "volume": f"{20 + n % 40}.{n % 100:02d}",
        "amount": f"{(20 + n % 40) * 7.89:.2f}",
        "totalizer_volume_start": f"{123456 + n * 31}.00",
        "totalizer_volume_end": f"{123456 + n * 31 + 30}.00",
        "totalizer_amount_start": None,
        "totalizer_amount_end": None,
        "ended_at": f"2026-11-22T10:15:{n % 60:02d}.000+08:00",
        "flags": [],
    }
    return nozzle, fields, f"{100000 + n}:1"


def write_bytes() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0


def run(directory: Path, orders: int, batch: int) -> dict[str, Any]:
    path = directory / f"bench-{batch}.sqlite"
    store = OrderStore(path)
    items = [order(i) for i in range(orders)]
    written0, cpu0, wall0 = write_bytes(), time.process_time(), time.perf_counter()
    if batch == 1:
        for nozzle, fields, key in items:
            store.append_order(nozzle, fields, source_key=key)
    else:
        for start in range(0, orders, batch):
            store.append_orders(items[start : start + batch])
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    store.close()  # checkpoint: the WAL's pages land in the database file
    written = write_bytes() - written0
    size = path.stat().st_size
    return {
        "batch": batch,
        "orders": orders,
        "orders_per_s": round(orders / wall),
        "cpu_us_per_order": round(cpu / orders * 1e6, 1),
        "device_bytes_written_per_order": round(written / orders),
        "file_bytes_per_order": round(size / orders),
    }


@contextmanager
def profiled(report: Path | None) -> Iterator[None]:
    """Run the block under pyinstrument when ``report`` is given (text to that file)."""
    if report is None:
        yield
        return
    from pyinstrument import Profiler  # dev dependency: only for --profile

    profiler = Profiler(interval=0.0005)
    profiler.start()
    try:
        yield
    finally:
        profiler.stop()
        report.write_text(profiler.output_text(unicode=True, color=False, show_all=False))


def marks(directory: Path, orders: int) -> dict[str, Any]:
    """PUBACK marks one record at a time (what 32 busy ports cause: each sale is
    published, and acknowledged, on its own): wall ms per mark_published."""
    store = OrderStore(directory / "bench-marks.sqlite")
    store.append_orders([order(i) for i in range(orders)])
    records = store.unsent_page(0, orders)
    wall0 = time.perf_counter()
    for record in records:
        store.mark_published([record])
    wall = time.perf_counter() - wall0
    store.close()
    return {"marks": len(records), "ms_per_mark": round(wall / len(records) * 1e3, 3)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--single", type=int, default=2000, help="orders for the 1-per-commit run")
    parser.add_argument("--dir", type=Path, default=Path("/var/tmp"))
    parser.add_argument("--json", action="store_true", help="one JSON object: both runs")
    parser.add_argument("--profile", type=Path, help="pyinstrument text report of the group run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        with profiled(args.profile):
            group = run(Path(tmp), args.orders, args.batch)
        if not args.json:
            print(json.dumps(group))
        single = run(Path(tmp), args.single, 1)
        if not args.json:
            print(json.dumps(single))
        mark = marks(Path(tmp), args.single)
        if not args.json:
            print(json.dumps(mark))
    if args.json:
        print(json.dumps({"bench": "store", "group": group, "single": single, "mark": mark}))


if __name__ == "__main__":
    main()
