"""Driver cost per frame: build a request + parse a response, for every protocol.

    .venv/bin/python bench/frames.py [--seconds 60] [--protocol NAME] [--json]

Each driver polls its simulator responder in-process (no I/O): two pumps,
four nozzles each (one where a fuelling point has one), fills every few
simulated seconds, so the mix holds polls, live-fill reports, sale records,
totals and identities as on a busy bus.
Only the driver's work is timed — ``next_request()`` (build) and
``receive_data()`` (parse into events) — and divided by the number of
frames it built and parsed. The issue's goal: ≤ 50 µs per frame.
One JSON line per protocol; ``--json``: one JSON object for all of them.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hil.dispenser.model import PumpModel
from hil.dispenser.responder import load_responder
from protocols import load_driver
from protocols.events import Sale

TICK_S = 0.05  # simulated time per exchange: a 50 ms poll cycle
TZ = timezone(timedelta(hours=8))
PROTOCOLS = ["sinopec", "dart", "gilbarco", "ck1313", "lanfeng"]  # bench/table.py too
#: Nozzles per pump: four, but one where a fuelling point has one (CK1313, Lanfeng).
NOZZLES = {"ck1313": 1, "lanfeng": 1}


def run(protocol: str, seconds: float) -> dict[str, object]:
    rng = random.Random(1)
    pumps = [PumpModel.create(address, NOZZLES.get(protocol, 4), rng) for address in (1, 2)]
    responder = load_responder(protocol)(pumps)
    driver = load_driver(protocol)([1, 2])
    now = 0.0
    timed = 0.0
    frames = sales = 0
    next_fill = 1.0
    while now < seconds:
        now += TICK_S
        if now >= next_fill:  # one fill at a time per nozzle, round robin
            pump = pumps[int(now) % 2]
            nozzle = next((n for n in pump.nozzles if pump.can_start(n)), None)
            if nozzle is not None:
                pump.lift(nozzle, rng.randint(200, 8000))
                pump.start_fuel(nozzle, now, 1.0)
            next_fill = now + 2.0
        for pump in pumps:
            for nozzle in pump.nozzles:
                if nozzle.state == "fuelling" and nozzle.live_volume(now) >= nozzle.target:
                    pump.hang_up(nozzle, datetime(2026, 11, 22, 8, 0, tzinfo=TZ))
        t0 = time.perf_counter()
        request = driver.next_request()
        timed += time.perf_counter() - t0
        if request is None:
            continue
        frames += 1
        reply = responder.receive_data(request, now)
        if not reply:
            driver.response_timeout()
            continue
        t0 = time.perf_counter()
        events = driver.receive_data(reply)
        timed += time.perf_counter() - t0
        frames += 1
        for event in events:
            if isinstance(event, Sale):
                sales += 1
                driver.sale_committed(event)
    return {
        "protocol": protocol,
        "frames": frames,
        "sales": sales,
        "us_per_frame": round(timed / frames * 1e6, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=600.0, help="simulated seconds")
    parser.add_argument("--protocol", action="append")
    parser.add_argument("--json", action="store_true", help="one JSON object")
    args = parser.parse_args()
    results = {}
    for protocol in args.protocol or PROTOCOLS:
        results[protocol] = run(protocol, args.seconds)
        if not args.json:
            print(json.dumps(results[protocol]))
    if args.json:
        print(json.dumps({"bench": "frames", "simulated_s": args.seconds, "protocols": results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
