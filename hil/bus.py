"""A line with a tap, for listen tests: POS ⇄ pump, copied to a tap.

``python -m hil.bus --pos PATH --pump PATH --tap PATH [--tap-side both|pump] [--loop]``

``--pos`` and ``--pump`` are links the POS and dispenser simulators made;
the bus opens both and passes every byte between them (one half-duplex
pair has both directions on it). ``--tap`` is a new pty link where the
collector listens: it gets a copy of every byte in both directions, in
line order — or, with ``--tap-side pump``, only what the pump sends (a tap
on the pump's transmit pair of an RS-422 line, where each direction has
its own pair). Whatever is written *into* the tap would go onto the bus of a
real installation; here it is only counted. The bus runs at the line
setting the pump's simulator put on its link (hil/dispenser/ptylink.py):
the tap starts at it, and a listener that sets another rate, parity or data
bits on the tap reads what a UART at that setting would. ``--loop``: a two-wire current
loop (Gilbarco, protocols.md §4), where the master hears its own bytes
before the reply: every byte from the POS side is also written back to it
(the pump simulator then runs ``--no-echo``; a pump does not hear itself —
its UART ignores the loop while it sends). On SIGTERM the bus prints
``{"tap_written": N, "bus_bytes": M, "tap": PATH}`` on stdout and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tty
from pathlib import Path

from hil.dispenser.ptylink import PtyLink
from hil.dispenser.uart import Uart

READ_CHUNK = 4096


def open_raw(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    tty.setraw(fd)
    return fd


async def amain(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    pos, pump = open_raw(args.pos), open_raw(args.pump)
    from collector.device.serialfd import applied

    line = applied(pump)
    tap = PtyLink(args.tap, Uart(line.baudrate, line.parity, line.bytesize, line.stopbits))
    counts = {"tap_written": 0, "bus_bytes": 0}

    def move(src: int, dst: int) -> None:
        try:
            data = os.read(src, READ_CHUNK)
        except BlockingIOError:
            return
        counts["bus_bytes"] += len(data)
        os.write(dst, data)  # test traffic: a few bytes, the pty always has room
        if args.loop and src == pos:
            os.write(pos, data)  # the loop returns the master's bytes to it
        if args.tap_side == "both" or src == pump:
            tap.write(data)  # a full tap drops bytes: a tap never holds the bus up

    def tapped() -> None:
        try:
            # Raw bytes: what the listener wrote, whatever its setting.
            counts["tap_written"] += len(os.read(tap.master, READ_CHUNK))
        except (BlockingIOError, OSError):
            return

    loop.add_reader(pos, move, pos, pump)
    loop.add_reader(pump, move, pump, pos)
    loop.add_reader(tap.master, tapped)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for fd in (pos, pump, tap.master):
        loop.remove_reader(fd)
    tap.close()
    os.close(pos)
    os.close(pump)
    print(json.dumps({**counts, "tap": str(args.tap)}), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(amain(parse_args(argv)))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m hil.bus", description=__doc__.split("\n")[0])
    p.add_argument("--pos", type=Path, required=True)
    p.add_argument("--pump", type=Path, required=True)
    p.add_argument("--tap", type=Path, required=True)
    p.add_argument("--tap-side", choices=("both", "pump"), default="both")
    p.add_argument("--loop", action="store_true", help="the POS hears its own bytes (current loop)")
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
