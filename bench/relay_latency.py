"""Added latency of the relay (goal: p99 ≤ 2 ms).

A Sinopec poll frame is written to the POS-side pty and read back on the
dispenser-side pty, through a RelayPort running in a child process (its own
event loop, real store, real parser: the request path). Baseline: the same
frame through one direct pty pair. Trips alternate (direct, relay, direct …)
so both see the same machine load. Reported: p50 / p99 / max of each, the
difference, and the relay's absolute p99 (an upper bound of what it adds).

    .venv/bin/python bench/relay_latency.py [--rounds 2000] [--json]

``--json``: one JSON object instead of the text (bench/run.py reads it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import pty
import select
import statistics
import tempfile
import time
import tty
from datetime import timedelta, timezone
from pathlib import Path

from protocols.sinopec.driver import SinopecPoller


def pty_pair() -> tuple[int, int, str]:
    master, slave = pty.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    return master, slave, os.ttyname(slave)


def run_relay(dispenser_dev: str, pos_dev: str, db: str) -> None:
    from buffer.store import OrderStore
    from collector.device.serialfd import LineSettings
    from collector.station.nozzles import NozzleTable
    from collector.station.relay import RelayPort
    from collector.station.sink import PortSink
    from protocols import load_monitor

    store = OrderStore(Path(db))
    sink = PortSink(
        number=1,
        store=store,
        nozzles=NozzleTable(),
        station="S",
        tz=timezone(timedelta(hours=8)),
        on_commit=lambda: None,
    )
    relay = RelayPort(
        number=1,
        dispenser=LineSettings(dispenser_dev, 9600, 8, "N", 1),
        pos=LineSettings(pos_dev, 9600, 8, "N", 1),
        monitor=load_monitor("sinopec")([1]),
        sink=sink,
    )

    async def relay_and_writer() -> None:
        async with asyncio.TaskGroup() as tg:  # as the daemon runs them
            tg.create_task(store.writer.run())
            tg.create_task(relay.run())

    asyncio.run(relay_and_writer())


def one_trip(write_fd: int, read_fd: int, frame: bytes) -> float:
    began = time.perf_counter()
    os.write(write_fd, frame)
    got = 0
    while got < len(frame):
        select.select([read_fd], [], [], 5)
        got += len(os.read(read_fd, 4096))
    return time.perf_counter() - began


def quantiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50": statistics.median(ordered) * 1e3,
        "p99": ordered[int(len(ordered) * 0.99) - 1] * 1e3,
        "max": ordered[-1] * 1e3,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--json", action="store_true", help="one JSON object")
    args = parser.parse_args()
    frame = SinopecPoller([1]).next_request()
    assert frame is not None

    # Baseline: one direct pty pair, master → slave.
    master, slave, _ = pty_pair()
    direct: list[float] = []

    # Relay: POS-side master → relay → dispenser-side master.
    disp_master, _disp_slave, disp_dev = pty_pair()
    pos_master, _pos_slave, pos_dev = pty_pair()
    with tempfile.TemporaryDirectory() as tmp:
        ctx = multiprocessing.get_context("spawn")
        child = ctx.Process(target=run_relay, args=(disp_dev, pos_dev, f"{tmp}/b.sqlite"))
        child.start()
        time.sleep(1.5)  # the child imports and opens both lines
        for _ in range(50):  # warm up
            one_trip(pos_master, disp_master, frame)
        relayed: list[float] = []
        for _ in range(args.rounds):
            direct.append(one_trip(master, slave, frame))
            relayed.append(one_trip(pos_master, disp_master, frame))
        child.terminate()
        child.join()

    base, through = quantiles(direct), quantiles(relayed)
    added_p50 = through["p50"] - base["p50"]
    added_p99 = through["p99"] - base["p99"]
    if args.json:
        result = {
            "bench": "relay_latency_ms",
            "rounds": args.rounds,
            "direct": {k: round(v, 3) for k, v in base.items()},
            "relay": {k: round(v, 3) for k, v in through.items()},
            "added_p50": round(added_p50, 3),
            "added_p99": round(added_p99, 3),
            "goal_added_p99_ms": 2.0,
        }
        print(json.dumps(result))
        return
    print(f"machine: {platform.machine()} {platform.processor() or ''} {os.cpu_count()} cpus")
    print(f"python {platform.python_version()}, rounds {args.rounds}, frame {len(frame)} B")
    for name, q in (("direct pty", base), ("relay", through)):
        print(f"{name:>11}: p50 {q['p50']:.3f} ms  p99 {q['p99']:.3f} ms  max {q['max']:.3f} ms")
    print(f"added: p50 {added_p50:.3f} ms  p99 {added_p99:.3f} ms  (goal p99 ≤ 2 ms)")


if __name__ == "__main__":
    main()
