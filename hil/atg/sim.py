"""The simulated tank gauge process: a :class:`Console` on a pty and/or TCP, on asyncio.

``python -m hil.atg [--link PATH] [--tcp PORT] --tanks N [--seed S]
[--scenario FILE] [--speed K] [--start ISO] [--security-code CODE]
[--sales FILE --tank-of NOZZLE=TANK ... | --tank-map N1=T1,N2=T2]
[--alarm-on-usr1 TANK:CODE]``

- ``--link PATH``: a pty pair whose slave is set raw and kept open for the
  process's life (so the master never sees EIO when the collector closes
  and reopens the line); ``PATH`` is a symlink to the slave, replaced
  atomically, removed on exit.
- ``--tcp PORT``: the same protocol on ``127.0.0.1:PORT`` (consoles serve
  it on 10001); ``0`` picks a free port. Any number of connections, one
  console. At least one of ``--link`` / ``--tcp`` is required.
- The console's clock starts at ``--start`` (or the scenario's ``start``,
  or now at ``--tz``, the station's offset, +08:00 by default) and runs
  ``--speed`` times real time; ``--speed 0`` freezes it (a constant state,
  for tests that compare two readers).
- Scenario events (:mod:`hil.atg.scenario`) fire at their simulated time;
  those at ``at_s`` ≤ 0 before the console answers anything.
- ``--sales FILE``: the dispenser simulator's stdout (one ground-truth JSON
  line per sale), followed like ``tail -f`` from its first line (the file
  may appear later; a partial last line waits for its end). Each sale is
  drained from its nozzle's tank (``--tank-of`` / ``--tank-map``, e.g. the
  config's ``[[tanks]]`` nozzles) when read; a nozzle mapped to no tank is
  ignored, said once on stderr.
- ``--alarm-on-usr1 TANK:CODE``: each SIGUSR1 turns that tank alarm (i205
  code, e.g. ``1:9`` probe out) on, the next off — an alarm at a moment the
  test chooses, not at a scenario time.

Output: stdout carries the ground truth only, one JSON line each: a
``"tank"`` line per tank at start (real and declared capacity), a
``"delivery"`` line per delivery when it ends, hidden ones marked
``"hidden": true``, a ``"sale"`` line per sale drained from ``--sales``, an
``"alarm"`` line per ``--alarm-on-usr1`` toggle (``tank``, ``code``, ``active``).
Diagnostics go to stderr as JSON, among them ``{"tcp": PORT}`` once
listening and ``{"link": PATH}`` once the pty is up.
SIGTERM / SIGINT exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from config.derived import parse_offset
from hil.atg.commands import ABORT, CommandReader
from hil.atg.console import MAX_DEVICE, SECURITY_CODE_LEN, Console
from hil.atg.scenario import Scenario, apply, apply_sale, make_tanks, parse_tank_map
from hil.dispenser.ptylink import PtyLink

#: Bytes read per wake-up: many commands' worth.
READ_CHUNK = 4096
#: How often (real seconds) scenario events are checked and the truth published.
TICK_S = 0.1


def log(**fields: object) -> None:
    print(json.dumps(fields, default=str), file=sys.stderr, flush=True)


def emit(line: dict[str, Any]) -> None:
    print(json.dumps(line), flush=True)


class SalesTail:
    """Follow a growing file of JSON lines from its start; whole lines only."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""

    def lines(self) -> list[str]:
        """The complete lines appended since the last call (none while the file is absent)."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self._offset += len(data)
        *whole, self._partial = (self._partial + data).split(b"\n")
        return [w.decode("utf-8", errors="replace") for w in whole if w.strip()]


class SimClock:
    """The console's wall clock: ``start`` + ``speed`` × real time elapsed."""

    def __init__(self, start: datetime, speed: float) -> None:
        self.start, self.speed = start, speed
        self._t0 = time.monotonic()

    def elapsed(self) -> float:
        return (time.monotonic() - self._t0) * self.speed

    def __call__(self) -> datetime:
        return self.start + timedelta(seconds=self.elapsed())


class Gauge:
    def __init__(
        self,
        console: Console,
        clock: SimClock,
        scenario: Scenario,
        sales: SalesTail | None = None,
        tank_of: dict[str, int] | None = None,
    ) -> None:
        self.console, self.clock, self.scenario = console, clock, scenario
        self.sales, self.tank_of = sales, tank_of or {}
        self._unmapped: set[str] = set()
        self._loop = asyncio.get_running_loop()
        self._pty_out = bytearray()
        self._pty: PtyLink | None = None

    def answer(self, reader: CommandReader, data: bytes, out: bytearray) -> None:
        """Feed host bytes; append the responses to ``out`` (ESC clears it)."""
        for command in reader.feed(data):
            if command == ABORT:
                out.clear()  # §5: ESC halts the response in progress
                continue
            out += self.console.handle(command)
        self.publish()

    def publish(self) -> None:
        for line in self.console.pop_truth():
            emit(line)

    async def tick(self) -> None:
        while True:
            for event in self.scenario.due(self.clock.elapsed()):
                try:
                    apply(self.console, event)
                except (ValueError, KeyError) as exc:
                    log(error="scenario event", event=event.type, detail=str(exc))
            self.drain_sales()
            self.console.advance(self.clock())
            self.publish()
            await asyncio.sleep(TICK_S)

    def drain_sales(self) -> None:
        """Drain the sales appended to the ``--sales`` file since the last tick."""
        if self.sales is None:
            return
        for line in self.sales.lines():
            try:
                drained = apply_sale(self.console, line, self.tank_of)
            except ValueError as exc:
                log(error="sale line", detail=str(exc))
                continue
            if drained is not None:
                emit(drained)
                continue
            nozzle = str(json.loads(line)["nozzle"])
            if nozzle not in self._unmapped:
                self._unmapped.add(nozzle)
                log(warning="sales of a nozzle mapped to no tank are ignored", nozzle=nozzle)

    # ------------------------------------------------------------ pty

    def attach(self, link: PtyLink) -> None:
        self._pty = link
        self._pty_reader = CommandReader(security=self.console.security_code is not None)
        self._loop.add_reader(link.master, self._readable)

    def _readable(self) -> None:
        assert self._pty is not None
        try:
            chunk = os.read(self._pty.master, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError as exc:
            log(error="pty read", detail=str(exc))
            return
        pending = bool(self._pty_out)
        self.answer(self._pty_reader, chunk, self._pty_out)
        if self._pty_out and not pending:
            self._flush()

    def _flush(self) -> None:
        assert self._pty is not None
        try:
            written = os.write(self._pty.master, self._pty_out)
        except BlockingIOError:
            written = 0
        del self._pty_out[:written]
        if self._pty_out:
            self._loop.add_writer(self._pty.master, self._writable)

    def _writable(self) -> None:
        assert self._pty is not None
        self._loop.remove_writer(self._pty.master)
        self._flush()

    # ------------------------------------------------------------ tcp

    async def serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        commands = CommandReader(security=self.console.security_code is not None)
        out = bytearray()
        try:
            while data := await reader.read(READ_CHUNK):
                self.answer(commands, data, out)
                if out:
                    writer.write(bytes(out))
                    out.clear()
                    await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m hil.atg", description=__doc__.split("\n")[0])
    p.add_argument("--link", type=Path, help="symlink to create to the pty")
    p.add_argument("--tcp", type=int, help="serve on 127.0.0.1:PORT (0 = any free port)")
    p.add_argument("--tanks", type=int, required=True)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--scenario", type=Path)
    p.add_argument("--speed", type=float, default=1.0, help="simulated s per real s; 0 freezes")
    p.add_argument("--start", help="console clock at start, naive ISO (default: now at --tz)")
    p.add_argument(
        "--tz", default="+08:00", help="offset of the console's wall clock (the station's)"
    )
    p.add_argument("--security-code", help="6 characters every command must carry (§5)")
    p.add_argument("--sales", type=Path, help="the dispenser simulator's stdout, followed")
    p.add_argument(
        "--tank-of", action="append", default=[], metavar="NOZZLE=TANK", help="repeatable"
    )
    p.add_argument("--tank-map", action="append", default=[], metavar="N1=T1,N2=T2,...")
    p.add_argument("--alarm-on-usr1", metavar="TANK:CODE", help="SIGUSR1 toggles this alarm")
    args = p.parse_args(argv)
    if args.alarm_on_usr1 is not None:
        tank, _, code = args.alarm_on_usr1.partition(":")
        if not (tank.isdigit() and code.isdigit()):
            p.error("--alarm-on-usr1 takes TANK:CODE, e.g. 1:9")
        args.alarm_on_usr1 = (int(tank), int(code))
    try:
        args.tank_of = parse_tank_map([*args.tank_of, *args.tank_map])
    except ValueError as exc:
        p.error(str(exc))
    if args.tank_of and args.sales is None:
        p.error("--tank-of / --tank-map need --sales FILE")
    if args.sales is not None and not args.tank_of:
        p.error("--sales needs --tank-of NOZZLE=TANK or --tank-map")
    if any(not 1 <= t <= args.tanks for t in args.tank_of.values()):
        p.error(f"tank numbers in the tank map must be 1..{args.tanks}")
    if args.link is None and args.tcp is None:
        p.error("give --link PATH and/or --tcp PORT")
    if not 1 <= args.tanks <= MAX_DEVICE:
        p.error(f"--tanks must be 1..{MAX_DEVICE}")
    if args.tcp is not None and not 0 <= args.tcp <= 65535:
        p.error("--tcp must be 0..65535")
    if args.speed < 0:
        p.error("--speed must be >= 0")
    try:
        parse_offset(args.tz)
    except ValueError as exc:
        p.error(f"--tz {exc}")
    if args.security_code is not None and len(args.security_code) != SECURITY_CODE_LEN:
        p.error("--security-code must have 6 characters")
    return args


async def amain(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    scenario = Scenario.load(args.scenario)
    start = args.start and datetime.fromisoformat(args.start)
    # A console's clock shows the station's wall time, whatever the host's TZ.
    now = datetime.now(timezone(parse_offset(args.tz))).replace(tzinfo=None, microsecond=0)
    clock = SimClock(start or scenario.start or now, args.speed)
    tanks = make_tanks(args.tanks, args.seed, scenario.tanks)
    console = Console(tanks, clock, security_code=args.security_code)
    for t in tanks:
        emit(
            {
                "event": "tank",
                "tank": t.number,
                "product": t.product,
                "capacity_l": round(t.capacity_l, 3),
                "declared_capacity_l": round(t.declared_capacity_l, 3),
                "volume_l": round(t.volume_l, 3),
            }
        )
    for event in scenario.due(0):  # events at the start happen before the first answer
        apply(console, event)
    if args.alarm_on_usr1 is not None:
        tank, code = args.alarm_on_usr1
        active = [False]

        def toggle() -> None:
            active[0] = not active[0]
            console.set_alarm(tank, code, active[0])
            emit({"event": "alarm", "tank": tank, "code": code, "active": active[0]})

        loop.add_signal_handler(signal.SIGUSR1, toggle)
    sales = SalesTail(args.sales) if args.sales is not None else None
    gauge = Gauge(console, clock, scenario, sales, args.tank_of)
    link = PtyLink(args.link) if args.link is not None else None
    server = None
    try:
        if link is not None:
            gauge.attach(link)
            log(link=str(args.link), device=link.device)
        if args.tcp is not None:
            server = await asyncio.start_server(gauge.serve_tcp, "127.0.0.1", args.tcp)
            log(tcp=server.sockets[0].getsockname()[1])
        ticker = asyncio.create_task(gauge.tick())
        await stop.wait()
        ticker.cancel()
    finally:
        if server is not None:
            server.close()
        if link is not None:
            loop.remove_reader(link.master)
            loop.remove_writer(link.master)
            link.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(amain(parse_args(argv)))
