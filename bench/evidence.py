"""What the raw log (buffer/rawlog.py) takes on flash per port per busy day.

One Sinopec port polled every 100 ms by the real driver
(protocols/sinopec/driver.py) against the simulator's responder
(hil/dispenser/sinopec.py), on a virtual clock: no pty, no sleeping — a day
runs in a minute or two. A busy day: ``--sales`` per nozzle (150, the busy
station of docs/store.md's sizing), each fill lifted a few seconds then
fuelling 40–120 s, at random times of the day. Every chunk goes through
the recorder's block builder (runs of identical exchanges once, zlib) into
a real raw-log file; the figure is the file's pages in use at the end
(after a checkpoint), per day.

    .venv/bin/python -m bench.evidence [--hours 24] [--nozzles 2] [--sales 150] [--block-s 600]

Prints one JSON line: line bytes, blocks, file bytes, bytes per day, the
30-day × 32-port total, and the recorder's CPU per chunk.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

from buffer.rawblocks import RX, TX, BlockBuilder
from buffer.rawlog import RawLog
from collector.station.evidence import BLOCK_RAW_MAX, BLOCK_S
from hil.dispenser.model import PumpModel
from hil.dispenser.sinopec import SinopecResponder
from protocols.events import Sale
from protocols.sinopec.driver import SinopecPoller
from uplink.crypto import sm3

POLL_S = 0.1  # the arithmetic: a Sinopec port polled every 100 ms
GAP_S = 0.01  # the next step of an exchange (collector/station/port.py)
ANSWER_S = 0.015  # the pump's turnaround, 9600 baud


def simulate(
    hours: float, nozzles: int, sales: int, seed: int, path: Path, block_s: float = BLOCK_S
) -> dict[str, object]:
    rng = random.Random(seed)
    pump = PumpModel.create(1, nozzles, rng)
    responder = SinopecResponder([pump])
    driver = SinopecPoller([1])
    end = hours * 3600
    fills: list[tuple[float, int]] = sorted(
        (rng.uniform(0, end - 200), n)
        for n in range(1, nozzles + 1)
        for _ in range(int(sales * hours / 24))
    )
    day0 = datetime(2026, 12, 7)
    builder = BlockBuilder(1)
    rawlog = RawLog(path, sm3, max_bytes=1 << 40, keep_days=3650)
    line_bytes = chunks = sold = 0
    cpu = 0.0
    block_start = 0.0
    ongoing: dict[int, float] = {}  # nozzle → hang-up time
    now = 0.0
    while now < end:
        while fills and fills[0][0] <= now:
            _, n = fills.pop(0)
            nozzle = pump.nozzle(n)
            if n in ongoing or not pump.can_start(nozzle):
                continue
            pump.lift(nozzle, rng.randint(1000, 6000))
            pump.start_fuel(nozzle, now + rng.uniform(2, 6), rng.uniform(40, 120))
            ongoing[n] = now + 8 + nozzle.fuel_seconds
        for n, done in list(ongoing.items()):
            if now >= done:
                pump.hang_up(pump.nozzle(n), day0 + timedelta(seconds=now))
                del ongoing[n]
        request = driver.next_request()
        pause = POLL_S
        if request is not None:
            answer = responder.receive_data(request, now)
            t0 = time.process_time()
            builder.add(int(now * 1000), TX, request)
            if answer:
                builder.add(int((now + ANSWER_S) * 1000), RX, answer)
            cpu += time.process_time() - t0
            chunks += 1 + bool(answer)
            line_bytes += len(request) + len(answer)
            events = driver.receive_data(answer) if answer else driver.response_timeout()
            for event in events:
                if isinstance(event, Sale):
                    driver.sale_committed(event)
                    sold += 1
                    pause = GAP_S
            if getattr(driver, "mid_exchange", False):
                pause = GAP_S
        t0 = time.process_time()
        if now - block_start >= block_s or builder.pending_bytes >= BLOCK_RAW_MAX:
            sealed = builder.seal()
            if sealed:
                rawlog.append([sealed])
            block_start = now
        cpu += time.process_time() - t0
        now += pause
    sealed = builder.seal()
    if sealed:
        rawlog.append([sealed])
    rawlog._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    on_flash = rawlog.bytes_in_use()
    blocks = rawlog._db.execute("SELECT count(*), sum(length(body)) FROM blocks").fetchone()
    rawlog.close()
    per_day = on_flash * 24 / hours
    return {
        "hours": hours,
        "block_s": block_s,
        "nozzles": nozzles,
        "sales_per_nozzle_day": sales,
        "sales_read": sold,
        "line_bytes": line_bytes,
        "line_bytes_per_s": round(line_bytes / end, 1),
        "chunks": chunks,
        "blocks": blocks[0],
        "body_bytes": blocks[1],
        "file_bytes_in_use": on_flash,
        "bytes_per_port_day": round(per_day),
        "ratio": round(line_bytes / on_flash, 1),
        "mb_30_days_32_ports": round(per_day * 30 * 32 / 1e6, 1),
        "recorder_cpu_us_per_chunk": round(cpu / max(chunks, 1) * 1e6, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--nozzles", type=int, default=2)
    parser.add_argument("--sales", type=int, default=150, help="per nozzle per day")
    parser.add_argument("--seed", type=int, default=22)
    parser.add_argument("--block-s", type=float, default=BLOCK_S, help="a block's span, s")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        result = simulate(
            args.hours, args.nozzles, args.sales, args.seed, Path(tmp) / "e.sqlite", args.block_s
        )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
