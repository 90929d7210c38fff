"""A station POS on a pty: the master of a dispenser link, for relay tests.

``python -m hil.pos --protocol sinopec --link PATH --addresses 1,2
[--poll-ms 30] [--timeout-ms 300] [--record PREFIX] [--master fcc]
[--commands authorise,price --command-every-ms 500] [--option KEY=VALUE ...]
[--baudrate B] [--parity N|E|O] [--bytesize 7|8]``

It creates a pty whose slave is reachable as ``--link`` (the collector's
relay opens it as its POS side) and polls through it with our own poll
driver, confirming every sale as a real POS would (the POS is allowed to:
it is the station's business system). A protocol that cannot be polled
read-only (no driver: the controller must acknowledge or authorise) is
driven by the station controller in ``hil/masters/<protocol>.py``
(``Master``), which sends those commands. Each sale read prints one JSON
line ``{"nozzle": "a1.n2", "order_no": "...", "key": "..."}`` on stdout; with
``--commands``, ``{"commands_sent": {...}, "commands_acked": N}`` at exit.

``--commands`` (DART, Furen, Uninfo): between its reads, at most every
``--command-every-ms``, the POS also authorises and sets prices as a
station's POS does (:mod:`hil.pos_commands`; never the collector, D20).

``--option KEY=VALUE`` passes a keyword option to the driver (the value read
as JSON when it is JSON: ``nozzles=2``, ``status_with_clock=true``), as a
port's ``[ports.<protocol>]`` table would.

``--master fcc`` (Gilbarco only) polls the way the open FCC does instead
(hil/fcc_gilbarco.py: reads each reply once, totals before the transaction,
authorises on a call). A Gilbarco loop returns the master's bytes before
each reply; the drivers skip that echo.

``--skip-confirm-every N [--skip-confirm-for-ms MS]``,
``--amount-off-every N [--amount-off-fen F]``, ``--confirm-values``
(Sinopec): the POS books badly, for the collector's reconciliation
(hil/pos_books.py): every Nth sale confirmed only after MS, or with F fen
more; each such sale's line carries ``"confirm": "skipped"`` /
``"amount_off"``. A sale read again before it is confirmed prints no line.
The line setting (each one not given: the protocol's first) is honoured as
the dispenser simulator's is (hil/dispenser/ptylink.py): a relay or bus at
another one garbles what reaches each side.

``--record PREFIX`` writes every byte sent to ``PREFIX.tx`` and every byte
received to ``PREFIX.rx`` (flushed as it goes), so a test can compare
what left one end of the relay with what arrived at the other. On
SIGTERM the POS stops asking, listens for one more response window, and
exits.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import json
import os
import signal
import sys
from pathlib import Path
from typing import IO, Any

from hil.dispenser.ptylink import PtyLink
from hil.dispenser.uart import add_arguments, from_arguments
from hil.pos_books import Booking
from hil.pos_commands import COMMANDS
from protocols import descriptor, load_driver
from protocols.events import Sale

#: Bytes read from the pty per wakeup.
READ_CHUNK = 4096


def master_class(protocol: str) -> Any:
    """The POS's master for ``protocol``: the station controller of
    ``hil/masters/<protocol>.py`` when the protocol has no read-only driver,
    else our own poll driver."""
    if descriptor(protocol).driver is not None:
        return load_driver(protocol)
    module = importlib.import_module(f"hil.masters.{protocol}")
    return module.Master


class Pos:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.driver: Any
        if args.master == "fcc":
            from hil.fcc_gilbarco import GilbarcoFcc

            self.driver = GilbarcoFcc(args.addresses)
        else:
            self.driver = master_class(args.protocol)(args.addresses, **args.options)
        self.link = PtyLink(args.link, from_arguments(args, args.protocol))
        self.tx: IO[bytes] | None = None
        self.rx: IO[bytes] | None = None
        if args.record is not None:
            self.tx = open(f"{args.record}.tx", "wb")  # noqa: SIM115 - closed in close()
            self.rx = open(f"{args.record}.rx", "wb")  # noqa: SIM115
        self.received = asyncio.Queue[bytes]()
        self.stopping = False
        self.commands = None
        if args.commands:
            if args.protocol not in COMMANDS:
                raise SystemExit(f"--commands: none for protocol {args.protocol!r}")
            cls = COMMANDS[args.protocol]
            # The driver options its commands class also takes (Uninfo's echo).
            taken = inspect.signature(cls).parameters
            extra = {k: v for k, v in args.options.items() if k in taken}
            self.commands = cls(args.addresses, args.commands.split(","), **extra)
        self.next_command = 0.0
        self.booking = Booking(
            skip_every=args.skip_confirm_every,
            skip_for_s=args.skip_confirm_for_ms / 1000,
            amount_off_every=args.amount_off_every,
            amount_off_fen=args.amount_off_fen,
            values=args.confirm_values,
        )

    def close(self) -> None:
        for f in (self.tx, self.rx):
            if f is not None:
                f.close()
        self.link.close()

    def _readable(self) -> None:
        try:
            data = self.link.read(READ_CHUNK)
        except BlockingIOError:
            return
        if self.rx is not None:
            self.rx.write(data)
            self.rx.flush()
        self.received.put_nowait(data)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(self.link.master, self._readable)
        timeout = self.args.timeout_ms / 1000
        while not self.stopping:
            request = self.driver.next_request()
            if request is not None:
                self._write(self.booking.rewrite(request))
                await self._response(loop, timeout)
            if self._command_due(loop.time()):
                self.next_command = loop.time() + self.args.command_every_ms / 1000
                await self._command(loop, timeout)
            await asyncio.sleep(self.args.poll_ms / 1000)
        # One more window for the answer to the last request (kept in .rx).
        await asyncio.sleep(timeout)
        loop.remove_reader(self.link.master)

    def _write(self, data: bytes) -> None:
        rest = data
        while rest:  # requests are a few bytes: the pty's buffer always has room
            rest = rest[self.link.write(rest) :]
        if self.tx is not None:
            self.tx.write(data)
            self.tx.flush()

    def _command_due(self, now: float) -> bool:
        """A command may go now: asked for, its time, and not inside a read."""
        between = not getattr(self.driver, "mid_exchange", False)
        return self.commands is not None and between and now >= self.next_command

    async def _command(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        """One authorise / price frame and its ACK (bytes kept from the driver)."""
        assert self.commands is not None
        frame = self.commands.next_frame()
        if frame is None:
            return
        self._write(frame)
        if not getattr(self.commands, "expects_answer", True):
            return  # a command with no answer and no echo (Uninfo's authorise)
        deadline = loop.time() + timeout
        while (remaining := deadline - loop.time()) > 0:
            try:
                async with asyncio.timeout(remaining):
                    chunk = await self.received.get()
            except TimeoutError:
                break
            if self.commands.answered(chunk):
                return
        self.commands.gave_up()

    async def _response(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        deadline = loop.time() + timeout
        while self.driver.awaiting_response:
            remaining = deadline - loop.time()
            if remaining <= 0:
                self.driver.response_timeout()
                return
            try:
                async with asyncio.timeout(remaining):
                    chunk = await self.received.get()
            except TimeoutError:
                continue
            events = self.driver.receive_data(chunk)
            if self.commands is not None:
                self.commands.observe(events)
            for event in events:
                if isinstance(event, Sale):
                    self._sale(event, loop.time())

    def _sale(self, sale: Sale, now: float) -> None:
        first = sale.key not in self.booking.seen
        confirm, done = self.booking.read(sale, now)
        if confirm:
            self.driver.sale_committed(sale)  # the POS confirms
        if not first and self.booking.active:
            return  # offered again while the POS held it back
        line = {"nozzle": f"a{sale.address}.n{sale.nozzle}",
                "order_no": sale.order_no, "key": sale.key}  # fmt: skip
        if done is not None:
            line["confirm"] = done
        print(json.dumps(line), flush=True)


async def amain(args: argparse.Namespace) -> int:
    pos = Pos(args)
    loop = asyncio.get_running_loop()

    def stop() -> None:
        pos.stopping = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    try:
        await pos.run()
    finally:
        pos.close()
    if pos.commands is not None:
        done = {"commands_sent": pos.commands.sent, "commands_acked": pos.commands.acked}
        print(json.dumps(done), flush=True)
    return 0


def _option(item: str) -> tuple[str, object]:
    key, _, text = item.partition("=")
    try:
        return key, json.loads(text)
    except json.JSONDecodeError:
        return key, text


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(json.dumps({"pos": str(args.link), "pid": os.getpid()}), file=sys.stderr, flush=True)
    return asyncio.run(amain(args))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m hil.pos", description=__doc__.split("\n")[0])
    p.add_argument("--protocol", default="sinopec")
    p.add_argument("--link", type=Path, required=True)
    p.add_argument("--addresses", default="1", help="pump addresses, e.g. 1,2")
    p.add_argument("--poll-ms", type=float, default=30)
    p.add_argument("--timeout-ms", type=float, default=300)
    p.add_argument("--record", help="write PREFIX.tx and PREFIX.rx")
    p.add_argument("--commands", help="also send these, e.g. authorise,price (DART, Furen)")
    p.add_argument("--command-every-ms", type=float, default=500)
    p.add_argument("--option", action="append", default=[], help="driver option KEY=VALUE")
    p.add_argument("--master", choices=("driver", "fcc"), default="driver")
    p.add_argument("--skip-confirm-every", type=int, default=0, help="hold every Nth sale back")
    p.add_argument("--skip-confirm-for-ms", type=float, default=3000)
    p.add_argument("--amount-off-every", type=int, default=0, help="confirm every Nth sale off")
    p.add_argument("--amount-off-fen", type=int, default=100)
    p.add_argument("--confirm-values", action="store_true", help="3C with amount and volume")
    add_arguments(p)
    args = p.parse_args(argv)
    if args.master == "fcc" and args.protocol != "gilbarco":
        p.error("--master fcc: Gilbarco only")
    args.addresses = [int(a) for a in args.addresses.split(",")]
    args.options = dict(_option(item) for item in args.option)
    return args


if __name__ == "__main__":
    sys.exit(main())
