"""Driver cost per frame: build a request + parse a response, for every protocol.

    .venv/bin/python bench/frames.py [--seconds 60] [--protocol NAME] [--json]

Each driver polls its simulator responder in-process (no I/O): two pumps
(one where the protocol has a single address: Furen), four nozzles each
(one where a fuelling point has one), fills every few simulated seconds, so
the mix holds polls, live-fill reports, sale records, totals and identities
as on a busy bus.
Only the driver's work is timed — ``next_request()`` (build) and
``receive_data()`` (parse into events) — and divided by the number of
frames it built and parsed. The issue's goal: ≤ 50 µs per frame.
A protocol with a passive monitor (relay, listen) also gets the monitor's
parse cost on the same frames: ``relay_us_per_frame`` (requests and
responses fed as two streams) and ``bus_us_per_frame`` (one stream, the
sides told apart by the monitor), each the monitor's calls' time divided by
the frames fed (goal ≤ 20 µs). ``*cpu_us_per_frame``: the same work in
this thread's CPU time (``time.thread_time``), which a machine shared with
other jobs does not inflate as it does the wall-clock figures.

A protocol without a driver (relay and listen only: udc, censtar) is run by
its station controller (hil/masters/<protocol>.py) instead, and what is
timed is the collector's part: its monitor reading both directions
(``receive_request`` + ``receive_response``, a relay's work), divided by the
requests and replies it read; it builds nothing.
One JSON line per protocol; ``--json``: one JSON object for all of them.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import random
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hil.dispenser.model import PumpModel
from hil.dispenser.responder import load_responder
from protocols import descriptor, load_driver, load_monitor
from protocols.events import Sale

TICK_S = 0.05  # simulated time per exchange: a 50 ms poll cycle

#: The built-in protocols the bench runs by default.
PROTOCOLS = (
    "sinopec",
    "dart",
    "gilbarco",
    "furen",
    "ck1313",
    "lanfeng",
    "uninfo",
    "udc",
    "censtar",
)
TZ = timezone(timedelta(hours=8))
#: Nozzles per pump: four, but one where a fuelling point has one (CK1313, Lanfeng).
NOZZLES = 4
NOZZLES_OF = {"ck1313": 1, "lanfeng": 1}


def addresses_of(protocol: str) -> list[int]:
    """Pumps 1 and 2, or those of them the protocol's address range allows."""
    low, high = descriptor(protocol).address_range
    return [a for a in (1, 2) if low <= a <= high]


def nozzle_option(cls: type) -> dict[str, int]:
    """``nozzles=`` for a driver or monitor that must be told (Furen)."""
    return {"nozzles": NOZZLES} if "nozzles" in inspect.signature(cls).parameters else {}


def run(protocol: str, seconds: float) -> dict[str, object]:
    if descriptor(protocol).driver is None:
        return run_monitor(protocol, seconds)
    rng = random.Random(1)
    addresses = addresses_of(protocol)
    pumps = [PumpModel.create(a, NOZZLES_OF.get(protocol, NOZZLES), rng) for a in addresses]
    responder = load_responder(protocol)(pumps)
    cls = load_driver(protocol)
    driver = cls(addresses, **nozzle_option(cls))
    watch = Watchers(protocol, addresses)
    now = 0.0
    timed = cpu = 0.0
    frames = sales = 0
    next_fill = 1.0
    while now < seconds:
        now += TICK_S
        if now >= next_fill:  # one fill at a time per nozzle, round robin
            pump = pumps[int(now) % len(pumps)]
            nozzle = next((n for n in pump.nozzles if pump.can_start(n)), None)
            if nozzle is not None:
                pump.lift(nozzle, rng.randint(200, 8000))
                pump.start_fuel(nozzle, now, 1.0)
            next_fill = now + 2.0
        for pump in pumps:
            for nozzle in pump.nozzles:
                if nozzle.state == "fuelling" and nozzle.live_volume(now) >= nozzle.target:
                    pump.hang_up(nozzle, datetime(2026, 11, 22, 8, 0, tzinfo=TZ))
        t0, c0 = time.perf_counter(), time.thread_time()
        request = driver.next_request()
        timed += time.perf_counter() - t0
        cpu += time.thread_time() - c0
        if request is None:
            continue
        frames += 1
        reply = responder.receive_data(request, now)
        watch.feed(request, reply)
        if not reply:
            driver.response_timeout()
            continue
        t0, c0 = time.perf_counter(), time.thread_time()
        events = driver.receive_data(reply)
        timed += time.perf_counter() - t0
        cpu += time.thread_time() - c0
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
        "cpu_us_per_frame": round(cpu / frames * 1e6, 1),
        **watch.result(frames),
    }


class Watchers:
    """The protocol's monitor as a relay and as a bus tap, timed apart."""

    def __init__(self, protocol: str, addresses: list[int]) -> None:
        found = descriptor(protocol)
        cls = load_monitor(protocol) if found.monitor else None
        options = nozzle_option(cls) if cls else {}
        self.relay = cls(addresses, **options) if cls else None
        self.bus = cls(addresses, **options) if cls and found.bus_monitor else None
        self.wall = {"relay": 0.0, "bus": 0.0}
        self.cpu = {"relay": 0.0, "bus": 0.0}
        self.sales = 0

    def feed(self, request: bytes, reply: bytes) -> None:
        if self.relay is not None:
            t0, c0 = time.perf_counter(), time.thread_time()
            events = self.relay.receive_request(request) + self.relay.receive_response(reply)
            self._took("relay", t0, c0)
            self.sales += sum(isinstance(e, Sale) for e in events)
        if self.bus is not None:
            t0, c0 = time.perf_counter(), time.thread_time()
            self.bus.receive_bus(request + reply)
            self._took("bus", t0, c0)

    def _took(self, how: str, t0: float, c0: float) -> None:
        self.wall[how] += time.perf_counter() - t0
        self.cpu[how] += time.thread_time() - c0

    def result(self, frames: int) -> dict[str, object]:
        out: dict[str, object] = {}
        for how, used in (("relay", self.relay), ("bus", self.bus)):
            if used is not None:
                out[f"{how}_us_per_frame"] = round(self.wall[how] / frames * 1e6, 1)
                out[f"{how}_cpu_us_per_frame"] = round(self.cpu[how] / frames * 1e6, 1)
        if self.relay is not None:
            out["monitor_sales"] = self.sales
        return out


def run_monitor(protocol: str, seconds: float) -> dict[str, object]:
    """The monitor of a relay/listen-only protocol, fed by its station controller."""
    rng = random.Random(1)
    responder_cls = load_responder(protocol)
    nozzles = 1 if protocol == "censtar" else 4  # a Censtar fuelling point has one
    pumps = [PumpModel.create(address, nozzles, rng) for address in (1, 2)]
    responder = responder_cls(pumps)
    master = importlib.import_module(f"hil.masters.{protocol}").Master([1, 2])
    monitor = load_monitor(protocol)([1, 2], clock=lambda: datetime(2026, 11, 22, 8, 0))
    now = 0.0
    timed = 0.0
    frames = sales = 0
    next_fill = 1.0
    while now < seconds:
        now += TICK_S
        if now >= next_fill:  # one fill at a time per pump, round robin
            pump = pumps[int(now) % 2]
            nozzle = next((n for n in pump.nozzles if pump.can_start(n)), None)
            if nozzle is not None:
                pump.lift(nozzle, rng.randint(200, 8000))
            next_fill = now + 2.0
        for pump in pumps:
            for nozzle in pump.nozzles:
                if nozzle.state == "lifted" and pump.may_fuel(nozzle):
                    pump.start_fuel(nozzle, now, 1.0)
                if nozzle.state == "fuelling" and nozzle.live_volume(now) >= nozzle.target:
                    pump.hang_up(nozzle, datetime(2026, 11, 22, 8, 0, tzinfo=TZ))
        request = master.next_request()
        if request is None:
            continue
        t0 = time.perf_counter()
        monitor.receive_request(request)
        timed += time.perf_counter() - t0
        frames += 1
        reply = responder.receive_data(request, now)
        if not reply:
            master.response_timeout()
            continue
        t0 = time.perf_counter()
        events = monitor.receive_response(reply)
        timed += time.perf_counter() - t0
        frames += 1
        master.receive_data(reply)
        sales += sum(isinstance(e, Sale) for e in events)
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
    for protocol in args.protocol or list(PROTOCOLS):
        results[protocol] = run(protocol, args.seconds)
        if not args.json:
            print(json.dumps(results[protocol]))
    if args.json:
        print(json.dumps({"bench": "frames", "simulated_s": args.seconds, "protocols": results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
