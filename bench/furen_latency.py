"""Furen Haosheng: hang-up → order stored, at the port's default pace.

    .venv/bin/python bench/furen_latency.py [--orders 8] [--nozzles 2]

The simulated fuelling point on a pty (``--stamp-hangup``), the real daemon
polling it with the defaults (status off: two identical reads of a record a
round apart make a sale; ``poll_interval_ms`` 200, ``idle_poll_interval_ms``
1000, no uplink needed): each order's ``order_stored`` log time minus the
simulator's hang-up time. One JSON line: the lags in ms, sorted, and their
median (docs/protocols/furen.md, "Sales").
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hil import stack

DEMO_CONFIG = stack.ROOT / "config" / "demo.toml"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=8)
    parser.add_argument("--nozzles", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="furen-latency-"))
    link = work / "pump"
    sim = stack.dispenser(
        work, link, orders=args.orders, nozzles=args.nozzles, rate=0.5, seed=2,
        protocol="furen", fill_seconds=1.5, extra=["--stamp-hangup"],
    )  # fmt: skip
    overrides = [
        f"store.path={work}/store.sqlite",
        "uplink.port=1",  # nothing listens: orders stay in the store, which is all we time
        "ports.0.protocol=furen",
        "ports.0.addresses=[1]",
        f"ports.0.furen.nozzles={args.nozzles}",
        f"ports.0.device={link}",
        "log.format=json",
    ]
    collector = stack.collector(work, DEMO_CONFIG, overrides)
    log = work / "collector.log"
    try:
        truth = sim.wait_lines(lambda line: "order_no" in line, args.orders, 300)
        stack.wait_until(
            lambda: log.read_text().count('"order_stored"') >= args.orders, 120, "every order"
        )
    finally:
        collector.stop()
        sim.stop()
    hung_up = {line["order_no"]: line["hung_up_ms"] for line in truth}
    lags = []
    for text in log.read_text().splitlines():
        if '"order_stored"' in text:
            line = json.loads(text)
            stored = datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00"))
            lags.append(round(stored.timestamp() * 1000 - hung_up[line["order_no"]]))
    lags.sort()
    median = statistics.median(lags)
    print(json.dumps({"bench": "furen_latency", "lags_ms": lags, "median_ms": median}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
