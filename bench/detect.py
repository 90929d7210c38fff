"""Time ``forecourt detect`` takes: one port passive, one active, many at once.

    .venv/bin/python bench/detect.py passive [--family sinopec] [--seconds 1.5]
    .venv/bin/python bench/detect.py active [--family sinopec] [--setting "4800 8E1"] [--address 40]
    .venv/bin/python bench/detect.py ports [--ports 32] [--seed 1]
    .venv/bin/python bench/detect.py all      (bench/run.py's "detect" step)

``passive``: the family's simulator at its setting (default its first)
with a station POS polling it through hil/bus.py; detect listens on the
bus's tap (it never writes there: the bus counts it). ``active``: the
simulator alone on its pty (silent until asked); detect probes. ``ports``:
``--ports`` simulators at once, each of a family with a driver, at a
setting and pump address drawn from the family's own (``--seed``), one
detect over all of them (``detect_all``, as ``forecourt detect --all``).
``all``: passive and active at Sinopec's first setting and address 1,
active again at its last setting and top address (99: the longest probe
order of any family), then 32 ports, one JSON object with each (the table
rows of bench/table.py). Goals: one port ≤ 15 s passive, ≤ 30 s active;
32 ports ≤ 60 s.

Prints one JSON line: per port the family found, its setting, the
seconds, bytes written; ``ports`` adds the slowest and the wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import protocols
from collector.detect.engine import LISTEN_S, detect, detect_all
from collector.detect.result import PortResult
from hil import stack
from protocols.descriptor import LineSetting, ProtocolDescriptor

#: Families on a current loop (tests/test_detect_sims.py LOOPS).
LOOPS = {"gilbarco": (["--no-echo"], []), "uninfo": ([], ["--option", "echo=true"])}


def setting_of(family: ProtocolDescriptor, text: str | None) -> LineSetting:
    if text is None:
        return family.line_settings[0]
    (found,) = [s for s in family.line_settings if str(s) == text]
    return found


def line_args(setting: LineSetting) -> list[str]:
    return ["--baudrate", str(setting.baudrate), "--parity", setting.parity]


def row(result: PortResult) -> dict[str, Any]:
    return {
        "device": Path(result.device).name,
        "status": result.status,
        "family": result.family,
        "line": result.line_text,
        "addresses": result.addresses,
        "how": result.how,
        "seconds": result.seconds,
        "bytes_written": result.bytes_written,
    }


def passive(work: Path, family: ProtocolDescriptor, setting: LineSetting, s: float) -> dict:
    pump, pos, tap = work / "pump", work / "pos", work / "tap"
    pump_extra, pos_extra = LOOPS.get(family.name, ([], []))
    procs = [
        stack.dispenser(
            work, pump, orders=0, nozzles=1, protocol=family.name,
            extra=["--addresses", "1", *line_args(setting), *pump_extra],
        ),
        stack.pos(work, pos, addresses="1", protocol=family.name,
                  extra=[*line_args(setting), *pos_extra]),
    ]  # fmt: skip
    bus = stack.bus(work, pos=pos, pump=pump, tap=tap, loop=family.name in LOOPS)
    try:
        result = asyncio.run(detect(str(tap), seconds=s))
    finally:
        bus.stop()
        for proc in procs:
            proc.stop()
    return {**row(result), "tap_written": bus.snapshot()[-1]["tap_written"]}


def simulators(
    work: Path, rigs: list[tuple[ProtocolDescriptor, LineSetting, int]]
) -> tuple[list[str], list[stack.Proc]]:
    links, procs = [], []
    for n, (family, setting, address) in enumerate(rigs):
        link = work / f"line{n:02d}"
        procs.append(
            stack.dispenser(
                work, link, orders=0, nozzles=1, protocol=family.name, name=f"sim{n:02d}",
                extra=["--addresses", str(address), *line_args(setting)],
            )
        )  # fmt: skip
        links.append(str(link))
    return links, procs


def active(work: Path, family: ProtocolDescriptor, setting: LineSetting, address: int) -> dict:
    links, procs = simulators(work, [(family, setting, address)])
    try:
        result = asyncio.run(detect(links[0]))
    finally:
        for proc in procs:
            proc.stop()
    return row(result)


def ports(work: Path, count: int, seed: int) -> dict:
    rng = random.Random(seed)
    pollable = [f for f in protocols.descriptors() if f.driver is not None]
    rigs = []
    for n in range(count):
        family = pollable[n % len(pollable)]
        low, high = family.address_range
        rigs.append((family, rng.choice(family.line_settings), rng.randint(low, high)))
    links, procs = simulators(work, rigs)
    try:
        began = time.monotonic()
        results = asyncio.run(detect_all(links))
        wall = time.monotonic() - began
    finally:
        for proc in procs:
            proc.signal(15)
        for proc in procs:
            proc.stop()
    rows = [
        {**row(r), "truth": [f.name, str(s), a]} for r, (f, s, a) in zip(results, rigs, strict=True)
    ]
    right = sum(
        r.family == f.name and r.addresses == [a]
        for r, (f, _, a) in zip(results, rigs, strict=True)
    )
    return {
        "ports": rows,
        "found_right": right,
        "slowest_s": max(r.seconds for r in results),
        "wall_s": round(wall, 1),
    }


def every(work: Path, count: int, seed: int, seconds: float) -> dict:
    """The ``all`` mode: each run in its own folder, one after the other."""
    sinopec = protocols.descriptor("sinopec")
    first, last = sinopec.line_settings[0], sinopec.line_settings[-1]
    top = sinopec.address_range[1]
    runs: dict[str, Any] = {}
    for name, run in (
        ("passive", lambda w: passive(w, sinopec, first, seconds)),
        ("active", lambda w: active(w, sinopec, first, 1)),
        ("active_worst", lambda w: active(w, sinopec, last, top)),
        ("ports", lambda w: ports(w, count, seed)),
    ):
        (work / name).mkdir()
        runs[name] = run(work / name)
    return runs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=("passive", "active", "ports", "all"))
    p.add_argument("--family", default="sinopec")
    p.add_argument("--setting", help='the simulator\'s line setting, e.g. "4800 8E1"')
    p.add_argument("--address", type=int, default=1)
    p.add_argument("--seconds", type=float, default=LISTEN_S)
    p.add_argument("--ports", type=int, default=32)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", action="store_true", help="accepted for bench/run.py")
    args = p.parse_args()
    family = protocols.descriptor(args.family)
    setting = setting_of(family, args.setting)
    with tempfile.TemporaryDirectory(prefix="bench-detect-") as tmp:
        work = Path(tmp)
        if args.what == "passive":
            out = passive(work, family, setting, args.seconds)
        elif args.what == "active":
            out = active(work, family, setting, args.address)
        elif args.what == "all":
            out = every(work, args.ports, args.seed, args.seconds)
        else:
            out = ports(work, args.ports, args.seed)
    print(json.dumps({"bench": f"detect_{args.what}", **out}))


if __name__ == "__main__":
    main()
