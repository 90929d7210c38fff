"""The simulated dispenser process: pumps on a pty, any protocol, driven by asyncio.

``python -m hil.dispenser --protocol NAME --link PATH
--nozzles N --orders K --rate R [--address A | --pumps P | --addresses 1,2]
[--port-number 1] [--seed S] [--tz +08:00] [--fill-seconds F]
[--bit-error-rate X] [--drop-rate X] [--fault SPEC ...] [--no-echo]
[--start-on-usr2] [--baudrate B] [--parity N|E|O] [--bytesize 7|8]``

- Creates a pty pair, sets the slave raw and keeps the slave open for its
  whole life, so the master side never sees EIO when the collector closes
  and reopens the line; ``PATH`` is a symlink to the slave's device,
  replaced atomically, removed on exit (SIGTERM / SIGINT exit 0).
- Runs at one line setting (``--baudrate``, ``--parity``, ``--bytesize``;
  each one not given: the protocol's first line setting) and reads the one
  its peer put on the pty at every read and write: when rate, parity or
  data bits disagree, the peer gets what a UART at its setting would make
  of our frames, and we get what ours would make of its bytes
  (hil/dispenser/uart.py, hil/dispenser/ptylink.py).
- The pumps (:class:`~hil.dispenser.model.PumpModel`, one per address:
  default one pump at address 1, ``--pumps P`` addresses 1..P) sit behind
  the protocol's responder (its descriptor's ``responder``, loaded by
  :mod:`hil.dispenser.responder`; ``NAME`` is any protocol that names one,
  an installed third party's too), which answers the master and renders the
  model in its wire format.
- Runs K fuelling sessions (from the start, or with ``--start-on-usr2``
  from a SIGUSR2: a test whose controller and collector must be on the line
  before the first fill sends it when they are), started at R per second on
  average (exponential gaps), spread round robin over every nozzle of every
  pump (nozzle 1 of each pump, then nozzle 2 …), one session per nozzle at a
  time, nozzles in parallel: lifted ~0.1·F s (and until the controller
  authorises the fill, for a pump that needs it: ``PumpModel.authorise``),
  fuelling F s, hung up → a pending sale.
- Prints one JSON line per sale on stdout (the ground truth,
  ``SimSale.truth``; with the amount totalizer when the protocol carries
  it), nothing else; diagnostics go to stderr, where ``{"done": K, ...}``
  says all K sessions are finished. It then keeps answering so the master
  can drain the pending sales, until killed.
- Faults: ``--bit-error-rate`` / ``--drop-rate`` hit every byte written;
  ``--fault`` schedules one event (:func:`hil.dispenser.faults.parse_fault`)
  at a time after start: ``at=5:line-cut=3`` (nothing passes either way for
  3 s), ``at=8:power-cycle=2:pump=1`` (a fill in progress ends as a sale,
  then the pump is silent for 2 s; totalizers and pending sales kept),
  ``at=10:totalizer-jump=500:pump=1:nozzle=2`` (0.01 L, negative steps
  back), ``at=12:component=encoder_id:pump=1`` (``nozzle_uid`` takes
  ``nozzle=``), ``at=15:alarm=64:pump=1`` / ``alarm-clear=64``,
  ``at=5:unplug=4`` (the pty and its link vanish for 4 s, like a pulled USB
  adapter), ``at=5:skip-order=2:pump=1`` (the transaction counter skips two
  numbers: sales the master never sees), ``at=5:amount-off=3:pump=1`` (the
  next sale's amount is 0.03 yuan off price × volume),
  ``at=5:price=450:pump=1:nozzle=1`` (that nozzle sells at 4.50 yuan/L from
  now). Each fault applied prints one JSON line ``{"fault": kind, "at": s,
  ...}`` on stderr.
- ``--option KEY=VALUE``: a keyword option of the protocol's responder
  (``echo=true`` for Uninfo's echoing loop), the value read as JSON when it
  is JSON.

Deterministic given ``--seed`` except for wall-clock times (and for which
fills a power cycle cuts short): volumes, nozzle order, transaction
numbers and totalizers come from the seeded generator in session order,
and sales are created in session order. Faults draw from their own
generators, so adding one does not change the sales.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo
from pathlib import Path
from typing import IO

from hil.dispenser.faults import Fault, LineFaults, parse_fault
from hil.dispenser.model import MAX_VOLUME, MIN_VOLUME, NozzleModel, PumpModel
from hil.dispenser.ptylink import PtyLink
from hil.dispenser.responder import Responder, answering, load_responder, simulated
from hil.dispenser.uart import add_arguments, from_arguments

#: Bytes read from the pty per wake-up: more than a few requests' worth.
READ_CHUNK = 4096

#: Lifted-but-not-yet-fuelling time as a fraction of the fill time.
LIFT_FRACTION = 0.1

#: Back-off before reading again after an unexpected read error on the pty.
READ_RETRY_S = 0.1

#: Nozzles per pump the core allows; a protocol may allow fewer (its
#: responder refuses more). 16 is the most any of our wire formats carries.
MAX_NOZZLES = 16

#: Pump addresses: the POS side of a Sinopec bus is 0xE0–0xF9 (protocols.md
#: §2); responders of other protocols map these logical numbers themselves.
MAX_ADDRESS = 0xDF


def log(**fields: object) -> None:
    print(json.dumps(fields, default=str), file=sys.stderr, flush=True)


@dataclass
class Session:
    """One fill in progress; ``ended`` once it produced its sale (or was cut)."""

    pump: PumpModel
    nozzle: NozzleModel
    ended: bool = False


class Simulator:
    def __init__(self, args: argparse.Namespace, tz: tzinfo, responder: type[Responder]) -> None:
        self.args = args
        self.tz = tz
        self.rng = random.Random(args.seed)
        self.pumps = [PumpModel.create(a, args.nozzles, self.rng) for a in args.addresses]
        self.by_address = {p.address: p for p in self.pumps}
        self.responder = responder(self.pumps, **args.options)
        if args.no_echo:  # a loop that echoes by itself (hil/bus.py --loop)
            if not hasattr(self.responder, "echo"):
                raise SystemExit(f"--no-echo: protocol {args.protocol} has no line echo")
            self.responder.echo = False
        # The loop's echo is the wire's: the master's bytes come back as it
        # sent them, at its own setting, whatever ours is. The core plays it
        # (ahead of the pumps' answer) so that a line setting garbles only
        # what the pumps send.
        self.loop_echo = False
        if hasattr(self.responder, "echo") and self.responder.echo:
            self.loop_echo, self.responder.echo = True, False
        self.amount_totalizer = responder.AMOUNT_TOTALIZER
        self.line = LineFaults(
            random.Random(f"{args.seed}:line"),
            bit_error_rate=args.bit_error_rate,
            drop_rate=args.drop_rate,
        )
        self.fault_rng = random.Random(f"{args.seed}:faults")
        self.changed = asyncio.Event()  # a nozzle freed, a sale taken, power back
        self.go = asyncio.Event()  # the sessions may start
        if not args.start_on_usr2:
            self.go.set()
        self.link: PtyLink | None = None
        self.fills: dict[tuple[int, int], Session] = {}
        self.sales = 0
        self._out = bytearray()
        self._loop = asyncio.get_running_loop()
        self._start = self._loop.time()
        self._rx: IO[bytes] | None = None
        self._tx: IO[bytes] | None = None
        if args.record:
            self._rx = open(f"{args.record}.rx", "wb")  # noqa: SIM115 - closed in close()
            self._tx = open(f"{args.record}.tx", "wb")  # noqa: SIM115

    def close(self) -> None:
        for f in (self._rx, self._tx):
            if f is not None:
                f.close()

    # ------------------------------------------------------------ the line

    def attach(self, link: PtyLink) -> None:
        self.link = link
        self._loop.add_reader(link.master, self._readable)

    def _readable(self) -> None:
        assert self.link is not None
        try:
            sent, chunk = self.link.receive(READ_CHUNK)
        except BlockingIOError:
            return
        except OSError as exc:  # not expected while we hold the slave open
            log(error="pty read", detail=str(exc))
            self._loop.remove_reader(self.link.master)
            self._loop.call_later(READ_RETRY_S, self.attach, self.link)
            return
        if self._rx is not None:
            self._rx.write(chunk)
            self._rx.flush()
        if self.line.cut:
            self.line.dropped_bytes += len(chunk)
            return
        if self.loop_echo:
            self._send(sent, echo=True)
        taken = sum(p.taken + p.authorisations for p in self.pumps)
        reply = self.responder.receive_data(chunk, self._loop.time())
        if reply:
            self._send(self.line.apply(reply))
        if sum(p.taken + p.authorisations for p in self.pumps) != taken:
            self.changed.set()

    def _send(self, data: bytes, *, echo: bool = False) -> None:
        assert self.link is not None
        if self._tx is not None:
            self._tx.write(data)
            self._tx.flush()
        if echo and not self._out:
            self.link.echo(data)  # the wire's own: never garbled
            return
        pending = bool(self._out)
        self._out += data
        if not pending:
            self._flush()

    def _flush(self) -> None:
        assert self.link is not None
        written = self.link.write(self._out)
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
        slots = [(p, p.nozzle(n)) for n in range(1, args.nozzles + 1) for p in self.pumps]
        await self.go.wait()  # the pumps answer from the start; nobody lifts yet
        planned = self._loop.time()
        previous: asyncio.Future[None] | None = None
        tasks = []
        for i in range(args.orders):
            planned += rng.expovariate(args.rate)
            pump, nozzle = slots[i % len(slots)]
            volume = rng.randint(MIN_VOLUME, MAX_VOLUME)
            await asyncio.sleep(max(0.0, planned - self._loop.time()))
            while not (
                pump.can_start(nozzle)
                and answering(pump, self._loop.time())
                and self._may_start(pump, nozzle)
            ):
                self.changed.clear()
                await self.changed.wait()
            pump.lift(nozzle, volume)
            session = Session(pump, nozzle)
            self.fills[pump.address, nozzle.nzn] = session
            done: asyncio.Future[None] = self._loop.create_future()
            tasks.append(asyncio.create_task(self._session(session, previous, done)))
            previous = done
        await asyncio.gather(*tasks)
        log(done=args.orders, sales=self.sales, pending=sum(len(p.pending) for p in self.pumps))

    def _may_start(self, pump: PumpModel, nozzle: NozzleModel) -> bool:
        """The responder's say, if it has one (hil/dispenser/responder.py)."""
        may_start = getattr(self.responder, "may_start", None)
        return True if may_start is None else bool(may_start(pump, nozzle))

    async def _session(
        self, session: Session, previous: asyncio.Future[None] | None, done: asyncio.Future[None]
    ) -> None:
        fill, pump = self.args.fill_seconds, session.pump
        await asyncio.sleep(LIFT_FRACTION * fill)
        while not (session.ended or pump.may_fuel(session.nozzle)):
            self.changed.clear()  # a pump whose controller must authorise the fill
            await self.changed.wait()
        if not session.ended:
            pump.start_fuel(session.nozzle, self._loop.time(), fill)
            await asyncio.sleep(fill)
        if previous is not None:
            await previous  # sales are numbered in session order
        if not session.ended:
            self._finish(session)
        done.set_result(None)
        self.changed.set()

    def _finish(self, session: Session) -> None:
        """Hang up: the sale is pending in the pump; its truth goes to stdout."""
        session.ended = True
        if self.fills.get((session.pump.address, session.nozzle.nzn)) is session:
            del self.fills[session.pump.address, session.nozzle.nzn]
        ended_at = datetime.now(self.tz).replace(microsecond=0)
        sale = session.pump.hang_up(session.nozzle, ended_at)
        self.sales += 1
        # A protocol that cannot carry every field (no transaction number, no
        # grade code) says what the collector can truly report instead.
        truth_of = getattr(self.responder, "truth", None)
        if truth_of is not None:
            truth = truth_of(sale, self.args.port_number)
        else:
            truth = sale.truth(self.args.port_number, amount_totalizer=self.amount_totalizer)
        if self.args.stamp_hangup:  # for latency figures (bench/hangup_latency.py)
            truth = {**truth, "hung_up_ms": time.time_ns() // 1_000_000}
        print(json.dumps(truth), flush=True)

    # ------------------------------------------------------------ faults

    def schedule(self, faults: list[Fault]) -> None:
        for fault in faults:
            self._loop.call_at(self._start + fault.at, self.apply, fault)

    def apply(self, fault: Fault) -> None:
        """Apply ``fault`` now and say so on stderr (one line per fault)."""
        now = self._loop.time()
        note: dict[str, object] = {"fault": fault.kind, "at": fault.at}
        if fault.kind == "line-cut":
            self.line.cut = True
            self._loop.call_later(float(fault.value), self._uncut)
            log(**note, seconds=fault.value)
            return
        if fault.kind == "unplug":
            self._unplug(float(fault.value))
            log(**note, seconds=fault.value, wall_ms=int(time.time() * 1000))
            return
        pump = self.by_address[self.pumps[0].address if fault.pump is None else fault.pump]
        note["pump"] = pump.address
        if fault.kind == "power-cycle":
            note["sales_ended"] = self._power_cycle(pump, now, float(fault.value))
            note["seconds"] = fault.value
        elif fault.kind == "totalizer-jump":
            nozzle = pump.nozzle(fault.nozzle)
            delta = max(int(fault.value), -nozzle.totalizer_volume)  # never below zero
            pump.jump_totalizer(nozzle, delta)
            note.update(nozzle=fault.nozzle, delta=delta, totalizer=nozzle.totalizer_volume)
        elif fault.kind == "component":
            value = pump.change_component(str(fault.value), self.fault_rng, fault.nozzle)
            note.update(component=fault.value, value=value)
            if fault.value == "nozzle_uid":
                note["nozzle"] = fault.nozzle
        elif fault.kind == "skip-order":
            note["skipped"] = pump.skip_orders(int(fault.value))
        elif fault.kind == "amount-off":
            pump.amount_bias = int(fault.value)
            note["cents"] = fault.value
        elif fault.kind == "price":
            pump.nozzle(fault.nozzle).price = int(fault.value)
            note.update(nozzle=fault.nozzle, price=fault.value)
        elif fault.kind == "alarm":
            pump.raise_alarm(int(fault.value))
            note["code"] = fault.value
        else:  # alarm-clear
            pump.clear_alarm(int(fault.value))
            note["code"] = fault.value
        log(**note)

    def _unplug(self, seconds: float) -> None:
        """The adapter is pulled out: the pty and its link vanish, then come back."""
        link = self.link
        assert link is not None
        self._loop.remove_reader(link.master)
        self._loop.remove_writer(link.master)
        self._out.clear()
        link.close()
        self.link = None
        self._loop.call_later(seconds, self._replug)

    def _replug(self) -> None:
        self.attach(PtyLink(self.args.link, self.args.uart))
        log(replugged=str(self.args.link), wall_ms=int(time.time() * 1000))

    def _uncut(self) -> None:
        self.line.cut = False

    def _power_cycle(self, pump: PumpModel, now: float, seconds: float) -> int:
        """End the pump's fills (a fill with fuel drawn becomes a sale), then power off."""
        ended = 0
        for session in [s for s in self.fills.values() if s.pump is pump]:
            nozzle = session.nozzle
            drawn = nozzle.live_volume(now) if nozzle.state == "fuelling" else 0
            if drawn > 0:
                nozzle.target = drawn
                self._finish(session)
                ended += 1
            session.ended = True
            self.fills.pop((pump.address, nozzle.nzn), None)
        pump.power_cycle()
        pump.silent_until = now + seconds
        self._loop.call_at(pump.silent_until, self.changed.set)
        self.changed.set()
        return ended


def _option(item: str) -> tuple[str, object]:
    """``KEY=VALUE``, the value read as JSON when it is JSON (``echo=true``)."""
    key, sep, text = item.partition("=")
    if not sep or not key:
        raise ValueError(f"--option {item!r} is not KEY=VALUE")
    try:
        return key, json.loads(text)
    except json.JSONDecodeError:
        return key, text


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, tzinfo]:
    p = argparse.ArgumentParser(prog="python -m hil.dispenser", description=__doc__.split("\n")[0])
    p.add_argument("--protocol", choices=simulated(), required=True)
    p.add_argument("--link", type=Path, required=True, help="symlink to create to the pty")
    p.add_argument("--nozzles", type=int, required=True, help="nozzles per pump")
    p.add_argument("--orders", type=int, required=True, help="fuelling sessions in total")
    p.add_argument("--rate", type=float, required=True, help="sessions started per second")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--address", type=int, help="one pump at this bus address (default 1)")
    where.add_argument("--pumps", type=int, help="P pumps at addresses 1..P")
    where.add_argument("--addresses", help="pumps at these addresses, e.g. 1,2")
    p.add_argument("--port-number", type=int, default=1, help="collector port, for nozzle keys")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--tz", default="+08:00", help="offset of the pumps' wall clock")
    p.add_argument("--fill-seconds", type=float, default=0.5)
    p.add_argument(
        "--start-on-usr2", action="store_true", help="start the sessions at SIGUSR2, not at once"
    )
    p.add_argument("--bit-error-rate", type=float, default=0.0, help="per bit written")
    p.add_argument("--drop-rate", type=float, default=0.0, help="per byte written")
    p.add_argument("--fault", action="append", default=[], help="e.g. at=5:line-cut=3")
    p.add_argument(
        "--unplug-on-usr1", type=float, metavar="S", help="SIGUSR1 unplugs the line for S seconds"
    )
    p.add_argument(
        "--stamp-hangup", action="store_true", help="add hung_up_ms (epoch ms) to each truth line"
    )
    p.add_argument("--record", help="write every byte received to PREFIX.rx, sent to PREFIX.tx")
    p.add_argument(
        "--no-echo",
        action="store_true",
        help="do not play the line's echo (Gilbarco on a loop that echoes: hil.bus --loop)",
    )
    p.add_argument(
        "--option", action="append", default=[], help="responder option KEY=VALUE (echo=true)"
    )
    add_arguments(p)
    args = p.parse_args(argv)
    args.uart = from_arguments(args, args.protocol)
    try:
        args.options = dict(_option(item) for item in args.option)
    except ValueError as exc:
        p.error(str(exc))
    if not 1 <= args.nozzles <= MAX_NOZZLES:
        p.error(f"--nozzles must be 1..{MAX_NOZZLES}")
    if args.orders < 0 or args.rate <= 0 or args.fill_seconds <= 0:
        p.error("--orders must be >= 0, --rate and --fill-seconds > 0")
    if not (0 <= args.bit_error_rate < 1 and 0 <= args.drop_rate < 1):
        p.error("--bit-error-rate and --drop-rate must be in [0, 1)")
    try:
        if args.pumps is not None:
            addresses = list(range(1, args.pumps + 1))
        elif args.addresses is not None:
            addresses = [int(a) for a in args.addresses.split(",")]
        else:
            addresses = [1 if args.address is None else args.address]
    except ValueError:
        p.error("--addresses must look like 1,2")
    if not addresses or len(set(addresses)) != len(addresses):
        p.error("at least one pump, each address once")
    if not all(0 <= a <= MAX_ADDRESS for a in addresses):
        p.error(f"pump addresses must be 0..{MAX_ADDRESS}")
    args.addresses = addresses
    if not 1 <= args.port_number <= 99:
        p.error("--port-number must be 1..99")
    try:
        args.faults = [parse_fault(spec) for spec in args.fault]
    except ValueError as exc:
        p.error(str(exc))
    for fault in args.faults:
        if fault.pump is not None and fault.pump not in addresses:
            p.error(f"--fault pump={fault.pump}: no such pump")
        if not 1 <= fault.nozzle <= args.nozzles:
            p.error(f"--fault nozzle={fault.nozzle}: no such nozzle")
    try:
        tz = datetime.strptime(args.tz, "%z").tzinfo
    except ValueError:
        p.error("--tz must look like +08:00")
    assert isinstance(tz, timezone)
    return args, tz


async def amain(args: argparse.Namespace, tz: tzinfo, responder: type[Responder]) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        sim = Simulator(args, tz, responder)
    except (TypeError, ValueError) as exc:  # the protocol refuses these pumps or options
        log(error="bad pumps or options for this protocol", detail=str(exc))
        return 2
    link = PtyLink(args.link, args.uart)
    failed: list[BaseException] = []

    def finished(task: asyncio.Task[None]) -> None:
        exc = None if task.cancelled() else task.exception()
        if exc is not None:
            failed.append(exc)
            stop.set()

    try:
        sim.attach(link)
        line = args.uart
        setting = f"{line.baudrate} {line.bytesize}{line.parity}{line.stopbits}"
        log(link=str(args.link), device=link.device, addresses=args.addresses, line=setting)
        sim.schedule(args.faults)
        if args.start_on_usr2:
            loop.add_signal_handler(signal.SIGUSR2, sim.go.set)
        if args.unplug_on_usr1:
            fault = Fault(0.0, "unplug", args.unplug_on_usr1)
            loop.add_signal_handler(signal.SIGUSR1, sim.apply, fault)
        sessions = asyncio.create_task(sim.run_sessions())
        sessions.add_done_callback(finished)
        await stop.wait()
        sessions.cancel()
    finally:
        if sim.link is not None:  # None while unplugged
            loop.remove_reader(sim.link.master)
            loop.remove_writer(sim.link.master)
            sim.link.close()
        sim.close()
    if failed:
        log(error="sessions failed", detail=repr(failed[0]))
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args, tz = parse_args(argv)
    try:
        responder = load_responder(args.protocol)
    except ImportError as exc:
        log(error=f"no simulated {args.protocol} dispenser yet", detail=str(exc))
        return 2
    return asyncio.run(amain(args, tz, responder))
