"""The dashboard's charts on a full store: render time and the page's extra memory.

    .venv/bin/python bench/charts.py [--rows 250000] [--renders 20] [--json]

A store of ``--rows`` records: older orders, then a day of history
(hil/day.py: three tanks read every 10 minutes, two deliveries, four
nozzles selling, the backlog samples). In this process, as in the daemon:
the store's read-only connection open first (the control socket's, which
the page shares), then the charts' modules imported and drawn —

- ``cold_ms``: the first render (reads the window's rows once: the binary
  search for the window's first id, then every tank, delivery and order row
  of the day);
- ``warm_ms``: the median of ``--renders`` later renders (the page's
  once-a-minute refresh: only new rows are read);
- ``extra_rss_kb``: VmRSS after the renders minus before the imports (the
  modules, the data kept, the markup, SQLite's pages read for it).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collector.tools import storeview
from hil import day


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def render(path: Path, renders: int) -> dict[str, Any]:
    """In a fresh interpreter (the fill's memory is not the page's): the
    store's read-only connection first, then the charts imported and drawn."""
    tz = timezone(timedelta(hours=8))
    db = storeview.open_readonly(path)
    db.execute("SELECT count(*) FROM records WHERE sent_ms IS NULL").fetchone()
    before = rss_kb()
    from collector.tools.history import History, history_path
    from collector.web.chart_views import ChartsView

    view = ChartsView(tz, History(history_path(path)))
    t = time.perf_counter()
    markup = view.render(db, time.time_ns() // 1_000_000)
    cold_ms = 1000 * (time.perf_counter() - t)
    warm = []
    for _ in range(renders):
        t = time.perf_counter()
        view.render(db, time.time_ns() // 1_000_000)
        warm.append(1000 * (time.perf_counter() - t))
    return {
        "day_rows_read": view.data.rows_read,
        "cold_ms": round(cold_ms, 1),
        "warm_ms": round(statistics.median(warm), 2),
        "markup_bytes": len(markup),
        "extra_rss_kb": rss_kb() - before,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=250_000)
    parser.add_argument("--renders", type=int, default=20)
    parser.add_argument("--render", type=Path, help=argparse.SUPPRESS)  # the child's part
    parser.add_argument("--json", action="store_true", help="(the output is one JSON object)")
    args = parser.parse_args()
    if args.render is not None:
        print(json.dumps(render(args.render, args.renders)))
        return
    tz = timezone(timedelta(hours=8))
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        path = Path(tmp) / "store.sqlite"
        now = time.time_ns() // 1_000_000
        began = time.perf_counter()
        one_day = day.fill(Path(tmp) / "probe.sqlite", now, tz)
        filled = day.fill(path, now, tz, filler=max(0, args.rows - one_day.records))
        fill_s = time.perf_counter() - began
        child = subprocess.run(
            [sys.executable, __file__, "--render", str(path), "--renders", str(args.renders)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        result = {"bench": "charts", "rows": filled.records, **json.loads(child.stdout)}
        result["fill_s"] = round(fill_s, 1)
        result["loadavg"] = Path("/proc/loadavg").read_text().split()[0]
        print(json.dumps(result))


if __name__ == "__main__":
    main()
