"""The simulated dispenser process: a :class:`SimPump` on a pty, driven by asyncio.

``python -m hil.dispenser --protocol sinopec --link PATH --nozzles N --orders K
--rate R [--address 1] [--port-number 1] [--seed S] [--tz +08:00]
[--fill-seconds F]``

- Creates a pty pair, sets the slave raw and keeps the slave open for its
  whole life, so the master side never sees EIO when the collector closes
  and reopens the line; ``PATH`` is a symlink to the slave's device,
  replaced atomically, removed on exit (SIGTERM / SIGINT exit 0).
- Answers frames addressed to ``--address`` (see :mod:`hil.dispenser.pump`).
- Runs K fuelling sessions, started at R per second on average (exponential
  gaps), nozzles round robin, one session per nozzle at a time, nozzles in
  parallel: lifted ~0.1·F s, fuelling F s, hung up → a pending record.
- Prints one JSON line per order on stdout (the ground truth, see
  :meth:`SimPump.hang_up`), nothing else; diagnostics go to stderr, where
  ``{"done": K}`` says all K sessions are finished. It then keeps answering
  polls so the master can drain the pending records, until killed.

Deterministic given ``--seed`` except for wall-clock times: volumes, nozzle
order, transaction numbers and totalizers come from the seeded generator
in session order, and records are created in session order.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sys
import tty
from datetime import datetime, timezone, tzinfo
from pathlib import Path

from hil.dispenser.pump import MAX_NOZZLES, MAX_VOLUME, MIN_VOLUME, SimNozzle, SimPump
from protocols.events import ProtocolError
from protocols.sinopec.framer import FrameDecoder, encode_frame

#: Bytes read from the pty per wake-up: more than a few requests' worth.
READ_CHUNK = 4096

#: Lifted-but-not-yet-fuelling time as a fraction of the fill time.
LIFT_FRACTION = 0.1

#: Back-off before reading again after an unexpected read error on the pty.
READ_RETRY_S = 0.1


def log(**fields: object) -> None:
    print(json.dumps(fields, default=str), file=sys.stderr, flush=True)


class PtyLink:
    """A pty pair whose slave is reachable as ``path`` (a symlink)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.device = os.ttyname(self.slave)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        os.symlink(self.device, tmp)
        os.replace(tmp, path)  # atomic: a reader sees the old link or the new one

    def close(self) -> None:
        try:
            if os.readlink(self.path) == self.device:
                self.path.unlink()
        except OSError:
            pass
        os.close(self.master)
        os.close(self.slave)


class Simulator:
    def __init__(self, args: argparse.Namespace, tz: tzinfo) -> None:
        self.args = args
        self.tz = tz
        self.rng = random.Random(args.seed)
        self.pump = SimPump(args.address, args.nozzles, self.rng, args.port_number)
        self.decoder = FrameDecoder()
        self.changed = asyncio.Event()  # a nozzle freed or a record confirmed
        self.link: PtyLink | None = None
        self._out = bytearray()
        self._loop = asyncio.get_running_loop()

    # ------------------------------------------------------------ the line

    def attach(self, link: PtyLink) -> None:
        self.link = link
        self._loop.add_reader(link.master, self._readable)

    def _readable(self) -> None:
        assert self.link is not None
        try:
            chunk = os.read(self.link.master, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError as exc:  # not expected while we hold the slave open
            log(error="pty read", detail=str(exc))
            self._loop.remove_reader(self.link.master)
            self._loop.call_later(READ_RETRY_S, self.attach, self.link)
            return
        confirmed = self.pump.confirmed
        for item in self.decoder.receive_data(chunk):
            if isinstance(item, ProtocolError):
                log(protocol_error=item.kind, detail=item.detail)
                continue
            reply, note = self.pump.handle(item, self._loop.time())
            if note:
                log(note=note)
            if reply is not None:
                self._send(encode_frame(reply))
        if self.pump.confirmed != confirmed:
            self.changed.set()

    def _send(self, data: bytes) -> None:
        assert self.link is not None
        pending = bool(self._out)
        self._out += data
        if not pending:
            self._flush()

    def _flush(self) -> None:
        assert self.link is not None
        try:
            written = os.write(self.link.master, self._out)
        except BlockingIOError:
            written = 0
        del self._out[:written]
        if self._out:
            self._loop.add_writer(self.link.master, self._writer_ready)

    def _writer_ready(self) -> None:
        assert self.link is not None
        self._loop.remove_writer(self.link.master)
        self._flush()

    # ------------------------------------------------------------ fuelling

    async def run_sessions(self) -> None:
        args, rng = self.args, self.rng
        planned = self._loop.time()
        previous: asyncio.Future[None] | None = None
        tasks = []
        for i in range(args.orders):
            planned += rng.expovariate(args.rate)
            nozzle = self.pump.nozzles[i % len(self.pump.nozzles)]
            volume = rng.randint(MIN_VOLUME, MAX_VOLUME)
            await asyncio.sleep(max(0.0, planned - self._loop.time()))
            while not self.pump.can_start(nozzle):
                self.changed.clear()
                await self.changed.wait()
            self.pump.lift(nozzle, volume)
            done: asyncio.Future[None] = self._loop.create_future()
            tasks.append(asyncio.create_task(self._session(nozzle, previous, done)))
            previous = done
        await asyncio.gather(*tasks)
        log(done=args.orders, pending=len(self.pump.pending))

    async def _session(
        self, nozzle: SimNozzle, previous: asyncio.Future[None] | None, done: asyncio.Future[None]
    ) -> None:
        fill = self.args.fill_seconds
        await asyncio.sleep(LIFT_FRACTION * fill)
        self.pump.start_fuel(nozzle, self._loop.time(), fill)
        await asyncio.sleep(fill)
        if previous is not None:
            await previous  # records are numbered in session order
        ended_at = datetime.now(self.tz).replace(microsecond=0)
        order = self.pump.hang_up(nozzle, ended_at)
        print(json.dumps(order.truth), flush=True)
        done.set_result(None)
        self.changed.set()


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, tzinfo]:
    p = argparse.ArgumentParser(prog="python -m hil.dispenser", description=__doc__.split("\n")[0])
    p.add_argument("--protocol", choices=["sinopec"], required=True)
    p.add_argument("--link", type=Path, required=True, help="symlink to create to the pty")
    p.add_argument("--nozzles", type=int, required=True)
    p.add_argument("--orders", type=int, required=True, help="fuelling sessions in total")
    p.add_argument("--rate", type=float, required=True, help="sessions started per second")
    p.add_argument("--address", type=int, default=1, help="the pump's bus address")
    p.add_argument("--port-number", type=int, default=1, help="collector port, for nozzle keys")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--tz", default="+08:00", help="offset of the pump's wall clock")
    p.add_argument("--fill-seconds", type=float, default=0.5)
    args = p.parse_args(argv)
    if not 1 <= args.nozzles <= MAX_NOZZLES:
        p.error(f"--nozzles must be 1..{MAX_NOZZLES}")
    if args.orders < 0 or args.rate <= 0 or args.fill_seconds <= 0:
        p.error("--orders must be >= 0, --rate and --fill-seconds > 0")
    if not 0 <= args.address <= 0xDF:  # 0xE0-0xF9 is the POS side (protocols.md §2)
        p.error("--address must be 0..223")
    if not 1 <= args.port_number <= 99:
        p.error("--port-number must be 1..99")
    try:
        tz = datetime.strptime(args.tz, "%z").tzinfo
    except ValueError:
        p.error("--tz must look like +08:00")
    assert isinstance(tz, timezone)
    return args, tz


async def amain(args: argparse.Namespace, tz: tzinfo) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sim = Simulator(args, tz)
    link = PtyLink(args.link)
    failed: list[BaseException] = []

    def finished(task: asyncio.Task[None]) -> None:
        exc = None if task.cancelled() else task.exception()
        if exc is not None:
            failed.append(exc)
            stop.set()

    try:
        sim.attach(link)
        log(link=str(args.link), device=link.device, address=args.address)
        sessions = asyncio.create_task(sim.run_sessions())
        sessions.add_done_callback(finished)
        await stop.wait()
        sessions.cancel()
    finally:
        loop.remove_reader(link.master)
        loop.remove_writer(link.master)
        link.close()
    if failed:
        log(error="sessions failed", detail=repr(failed[0]))
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args, tz = parse_args(argv)
    return asyncio.run(amain(args, tz))
