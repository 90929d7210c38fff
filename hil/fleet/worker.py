"""``python -m hil.fleet.worker SPEC.json``: one process of simulated collectors.

Each collector is what the daemon is from the store on: its own
:class:`buffer.store.OrderStore` (a real SQLite file, WAL, synchronous=FULL),
its own :class:`uplink.mqtt.Uplink` (client id = device id, persistent
session, retained online state, heartbeats, sealed batches, QoS 1,
mark_published on PUBACK) and a generator of sales at Poisson times of mean
rate ``rate``: per sale the three ``nozzle`` state records and the order
(one commit each), the port's path without the serial line. The generator
never talks to the uplink except to wake it: store first.

Protocol with the parent (hil/fleet/run.py), JSON lines on stdout:
``{"worker": i, "ready": n}`` once every uplink is connected; SIGUSR1 starts
generation; ``{"worker": i, "done": …}`` once generation ended and every
store is drained (or the drain timed out); SIGTERM stops (each uplink says
offline, as a clean stop does).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from buffer.store import OrderStore
from hil.fleet.orders import OrderMaker, heartbeat_body, nozzle_body
from uplink.failover import Endpoint
from uplink.mqtt import Uplink, UplinkSettings

#: Seconds for every uplink of a worker to connect: 100 CONNECTs plus their
#: retained state publishes on a loaded 2-core machine take a few seconds;
#: beyond two minutes something is wrong, not slow.
READY_TIMEOUT_S = 120.0

#: Seconds after generation ends for the stores to drain. A fleet that keeps
#: up drains in well under a second; a saturated one shows as drained: false.
DRAIN_TIMEOUT_S = 300.0

#: How often readiness and the drain are checked: cheap queries, 10 per second.
POLL_S = 0.1

#: Period of the loop-lag probe. Its lateness is how long the worker's loop
#: was blocked (fsync of 100 stores' commits in one loop, CPU): when it is
#: large, the latency tail belongs to the simulation, not to the uplink.
LAG_PROBE_S = 0.05


#: Seconds from "lifted" to "fuelling", and of the fill itself, compressed from
#: the forecourt's ~10 s and 1–3 min: what counts here are the records and
#: their messages, and they stay apart in time (each published before the next).
LIFT_S = 0.5
FILL_S = (1.0, 3.0)


@dataclass
class Station:
    dev: str
    store: OrderStore
    uplink: Uplink
    maker: OrderMaker
    rng: random.Random
    #: (kind, rid, commit time in epoch ns) of every record committed.
    commits: list[tuple[str, str, int]] = field(default_factory=list)
    _last_ms: dict[str, int] = field(default_factory=dict)
    #: Nozzles in the middle of a sale: a new sale takes an idle one.
    busy: set[str] = field(default_factory=set)
    #: Sales not started because every nozzle was busy (a queue at the forecourt).
    skipped: int = 0

    async def generate(self, rate: float, until: float, nozzle_records: bool) -> None:
        """Start sales at Poisson times until ``until`` (monotonic); wait for them."""
        sales: set[asyncio.Task[None]] = set()
        while True:
            delay = self.rng.expovariate(rate)
            if time.monotonic() + delay >= until:
                break
            await asyncio.sleep(delay)
            if not nozzle_records:
                self.commit_order(self.maker.pick())
                continue
            idle = [n for n in self.maker.nozzles if n not in self.busy]
            if not idle:
                self.skipped += 1
                continue
            sale = asyncio.create_task(self.sale(self.rng.choice(idle)))
            sales.add(sale)
            sale.add_done_callback(sales.discard)
        await asyncio.gather(*sales)

    async def sale(self, nozzle: str) -> None:
        """A sale as the port records it: lifted, fuelling, the order, idle
        (collector/station/nozzle_records.py: three state changes per sale)."""
        self.busy.add(nozzle)
        try:
            self.state_record(nozzle, "lifted")
            await asyncio.sleep(LIFT_S)
            self.state_record(nozzle, "fuelling")
            await asyncio.sleep(self.rng.uniform(*FILL_S))
            self.commit_order(nozzle)
            self.state_record(nozzle, "idle")
        finally:
            self.busy.discard(nozzle)

    def commit_order(self, nozzle: str) -> None:
        # One commit per order, as a port commits per sale (docs/store.md).
        stored = self.store.append_orders([self.maker.next(nozzle)])[0]
        if stored is not None:
            self.commits.append(("order", stored.rid, time.time_ns()))
        self.uplink.wake()

    def state_record(self, nozzle: str, state: str) -> None:
        # rid as the sink makes it: ms, strictly increasing per nozzle.
        ms = max(time.time_ns() // 1_000_000, self._last_ms.get(nozzle, 0) + 1)
        self._last_ms[nozzle] = ms
        rid = f"{nozzle}:state:{ms}"
        body = nozzle_body(nozzle, state, self.maker.totalizer[nozzle])
        if self.store.append_record("nozzle", rid, body) is not None:
            self.commits.append(("nozzle", rid, time.time_ns()))
        self.uplink.wake()


async def _lag_probe(lags: list[float]) -> None:
    while True:
        before = time.monotonic()
        await asyncio.sleep(LAG_PROBE_S)
        lags.append(time.monotonic() - before - LAG_PROBE_S)


def _emit(line: dict[str, Any]) -> None:
    print(json.dumps(line, sort_keys=True), flush=True)


def _station(spec: dict[str, Any], device: dict[str, str], index: int) -> Station:
    dev = device["dev"]
    store = OrderStore(Path(spec["dir"]) / f"{dev}.sqlite")
    # The broker's nodes in this station's own order (run.py: a permutation
    # per station, so homes and the nodes taking over a dead one's spread).
    ports = spec.get("ports") or [spec["port"]]
    order = [int(k) for k in device.get("order", "0").split(",")]
    endpoints = tuple(Endpoint(f"node{k + 1}", spec["host"], ports[k]) for k in order)
    settings = UplinkSettings(
        device_id=dev,
        host=spec["host"],
        port=spec["port"],
        endpoints=endpoints,
        kid=device["kid"],
        key=bytes.fromhex(device["key"]),
        batch_max_records=spec["batch"],
        max_inflight=spec["inflight"],
        heartbeat_s=spec["heartbeat_s"],
        version="fleet",
    )
    started = time.monotonic()
    maker = OrderMaker(dev, random.Random(spec["seed"] * 100_003 + index))
    uplink = Uplink(settings, store, lambda: heartbeat_body(store, started, maker.nozzles))
    return Station(dev, store, uplink, maker, random.Random(spec["seed"] * 7919 + index))


async def _wait(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(POLL_S)
    return True


async def run(spec: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    go, stop = asyncio.Event(), asyncio.Event()
    loop.add_signal_handler(signal.SIGUSR1, go.set)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    stations = [_station(spec, d, i) for i, d in enumerate(spec["devices"])]
    uplinks = [asyncio.create_task(s.uplink.run()) for s in stations]
    try:
        ready = await _wait(
            lambda: all(s.uplink.stats.connected for s in stations), READY_TIMEOUT_S
        )
        links = Counter(s.uplink.link()["name"] for s in stations if s.uplink.stats.connected)
        _emit({"worker": spec["worker"], "ready": sum(links.values()), "links": links})
        if not ready:
            return
        await go.wait()
        cpu0, wall0 = time.process_time(), time.monotonic()
        lags: list[float] = []
        probe = asyncio.create_task(_lag_probe(lags))
        uplinks.append(probe)
        until = wall0 + spec["seconds"]
        await asyncio.gather(
            *(s.generate(spec["rate"], until, spec["nozzle_records"]) for s in stations)
        )
        generated_s = time.monotonic() - wall0
        drained = await _wait(
            lambda: not any(s.store.unsent_page(0, 1) for s in stations), DRAIN_TIMEOUT_S
        )
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        lags.sort()
        with open(spec["commits"], "w") as out:
            for s in stations:
                out.writelines(f"{s.dev}\t{kind}\t{rid}\t{ns}\n" for kind, rid, ns in s.commits)
        stats = [s.uplink.stats for s in stations]
        _emit(
            {
                "worker": spec["worker"],
                "done": True,
                "drained": drained,
                "collectors": len(stations),
                "generated": sum(len(s.commits) for s in stations),  # records of every kind
                "sales_skipped": sum(s.skipped for s in stations),
                "generate_s": round(generated_s, 3),
                "window_s": round(wall, 3),
                "cpu_s": round(cpu, 3),
                "messages": sum(st.messages for st in stats),
                "records": sum(st.records for st in stats),
                "payload_bytes": sum(st.bytes for st in stats),
                "connects": sum(st.connects for st in stats),
                "loop_lag_ms": {
                    "p50": round(lags[len(lags) // 2] * 1000, 1) if lags else None,
                    "p99": round(lags[int(len(lags) * 0.99)] * 1000, 1) if lags else None,
                    "max": round(lags[-1] * 1000, 1) if lags else None,
                },
            }
        )
        await stop.wait()
    finally:
        for task in uplinks:
            task.cancel()
        await asyncio.gather(*uplinks, return_exceptions=True)
        for s in stations:
            with contextlib.suppress(Exception):
                s.store.close()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m hil.fleet.worker SPEC.json", file=sys.stderr)
        return 2
    # Logs to stderr (stdout is the parent's JSON protocol), at the daemon's level.
    structlog.configure(
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
    )
    asyncio.run(run(json.loads(Path(args[0]).read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
