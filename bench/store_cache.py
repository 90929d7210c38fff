"""What SQLite's page cache adds to RSS on a grown store, and what a smaller one costs.

    .venv/bin/python bench/store_cache.py [--orders 100000] [--cache store|-2000|…]

An OrderStore (synchronous=FULL, file in ``--dir``) takes ``--orders``
realistic orders 100 per commit (bench/store.py's orders), then the uplink's
read path drains them (``unsent`` + ``mark_published``, 100 at a time).
Reported: RSS growth of this process over both phases (the page cache fills
up to ``cache_size``), and CPU µs per order ingested and drained. Prints one
JSON line. docs/performance.md, "Footprint".
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from store import order  # bench/store.py

from buffer.store import OrderStore

BATCH = 100


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def run(directory: Path, orders: int, cache: str) -> dict[str, object]:
    store = OrderStore(directory / "store.sqlite")
    if cache != "store":  # "store": buffer/schema.CACHE_KIB, as the daemon runs
        store._db.execute(f"PRAGMA cache_size={int(cache)}")
    items = [order(i) for i in range(orders)]
    rss0, cpu0 = rss_kb(), time.process_time()
    for start in range(0, orders, BATCH):
        store.append_orders(items[start : start + BATCH])
    rss1, cpu1 = rss_kb(), time.process_time()
    after = 0
    while batch := store.unsent(after, BATCH):
        store.mark_published(batch)
        after = batch[-1].id
    rss2, cpu2 = rss_kb(), time.process_time()
    store.close()
    return {
        "cache_size": cache,
        "orders": orders,
        "ingest_cpu_us": round(1e6 * (cpu1 - cpu0) / orders, 1),
        "drain_cpu_us": round(1e6 * (cpu2 - cpu1) / orders, 1),
        "rss_growth_ingest_kb": rss1 - rss0,
        "rss_growth_total_kb": rss2 - rss0,
        "loadavg": Path("/proc/loadavg").read_text().split()[0],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--orders", type=int, default=100_000)
    p.add_argument(
        "--cache", default="store", help="PRAGMA cache_size (negative: KiB; SQLite default -2000)"
    )
    p.add_argument("--dir", type=Path, default=Path("/var/tmp"))
    args = p.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        print(json.dumps(run(Path(tmp), args.orders, args.cache)))


if __name__ == "__main__":
    main()
