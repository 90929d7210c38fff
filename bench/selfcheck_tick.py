"""Cost of the self-check tasks' periodic work (SPEC F1, F3).

    .venv/bin/python bench/selfcheck_tick.py [--ports 32] [--seals 128] [--rounds 2000]

Line check: one :meth:`LineWatch.feed` per port of a busy line (counters
moving, a full window), as the task does each second. Seals: one
:func:`read_seal` + :meth:`SealWatch.feed` per seal on a tmpfs value file,
as the seal task does each period. Prints one JSON line: microseconds per
tick for all ports, and per seal read.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from collector import logs
from collector.station.linecheck import LineWatch, Sample
from collector.station.seals import SealSpec, SealWatch, read_seal


def line_tick_us(ports: int, rounds: int) -> float:
    watches = [LineWatch(protocol="sinopec", addresses=[1, 2]) for _ in range(ports)]
    started = time.perf_counter()
    for t in range(rounds):
        for w in watches:
            w.feed(Sample(float(t), True, 300 * t, 0, 10 * t, t // 10, 5 * t, 0, ()))
    return (time.perf_counter() - started) / rounds * 1e6


def seal_read_us(seals: int, rounds: int) -> float:
    with tempfile.TemporaryDirectory(dir="/dev/shm") as tmp:
        specs = []
        for i in range(seals):
            value = Path(tmp) / f"gpio{i}"
            value.write_text("1\n")
            specs.append(SealSpec(f"s{i}", f"p{i % 32 + 1:02d}.a1", value, 1, 0.5))
        watch = SealWatch(specs, lambda source, code: False)
        started = time.perf_counter()
        for _ in range(rounds // 10):
            for spec in specs:
                watch.feed(spec.name, read_seal(spec))
        return (time.perf_counter() - started) / (rounds // 10 * seals) * 1e6


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--ports", type=int, default=32)
    p.add_argument("--seals", type=int, default=128)
    p.add_argument("--rounds", type=int, default=2000)
    args = p.parse_args()
    logs.configure("warning", "console")  # the first reads log each seal's state
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    print(
        json.dumps(
            {
                "line_tick_us_all_ports": round(line_tick_us(args.ports, args.rounds), 1),
                "ports": args.ports,
                "seal_read_us": round(seal_read_us(args.seals, args.rounds), 1),
                "loadavg_1m": load,
            }
        )
    )


if __name__ == "__main__":
    main()
