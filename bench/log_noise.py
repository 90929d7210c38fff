"""Log bytes a dispenser line carrying random noise costs (docs/security.md).

The real daemon (``forecourt run``, the demo config, JSON log lines as on
journald) polls a Sinopec port on a pty; instead of a dispenser, random
bytes arrive at the line's rate (9 600 baud 8N1: 960 bytes a second), and
what the daemon asks is read and thrown away. After a warm-up, the daemon's
log is measured over the rest of the run: bytes and lines per minute, and
the same extrapolated to a day. A mosquitto on loopback takes the uplink, so
that its lines do not count.

    .venv/bin/python bench/log_noise.py [--seconds 150] [--baud 9600] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import pty
import random
import tempfile
import threading
import time
import tty
from collections import Counter
from datetime import datetime
from pathlib import Path

from hil import stack

#: Lines before this many seconds after the port opens are start-up, not noise.
WARM_UP_S = 10.0


def noise(master: int, baud: int, stop: threading.Event, seed: int) -> None:
    """Random bytes at ``baud`` (10 bits a byte) in 20 ms slices; what the
    daemon writes is drained so its writes never block."""
    rng = random.Random(seed)
    per_slice = baud / 10 * 0.02
    owed = 0.0
    os.set_blocking(master, False)
    next_at = time.monotonic()
    while not stop.is_set():
        owed += per_slice
        n = int(owed)
        owed -= n
        if n:
            os.write(master, rng.randbytes(n))
        try:
            while os.read(master, 4096):
                pass
        except BlockingIOError:
            pass
        next_at += 0.02
        time.sleep(max(0.0, next_at - time.monotonic()))


def stamp(line: dict[str, object]) -> float | None:
    ts = line.get("timestamp")
    if not isinstance(ts, str):
        return None
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=150.0)
    parser.add_argument("--baud", type=int, default=9600)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        broker = stack.Mosquitto(work / "broker")
        broker.start()
        master, slave = pty.openpty()
        tty.setraw(master)
        link = work / "pump1"
        link.symlink_to(os.ttyname(slave))
        stop = threading.Event()
        feeder = threading.Thread(target=noise, args=(master, args.baud, stop, args.seed))
        proc = stack.collector(
            work,
            stack.ROOT / "config" / "demo.toml",
            [
                f"store.path={work / 'store.sqlite'}",
                f"ports.0.device={link}",
                f"uplink.port={broker.port}",
                "log.format=json",
            ],
        )
        try:
            stack.wait_until(lambda: "port_open" in proc.log_path.read_text(), 30, "port_open")
            feeder.start()
            time.sleep(args.seconds)
        finally:
            stop.set()
            if feeder.is_alive():
                feeder.join()
            proc.stop()
            broker.stop()
            os.close(master)
            os.close(slave)
        raw = proc.log_path.read_bytes().splitlines(keepends=True)
    lines = []
    for text in raw:
        try:
            lines.append((json.loads(text), len(text)))
        except ValueError:
            continue
    opened = next(stamp(line) for line, _ in lines if line.get("event") == "port_open")
    assert opened is not None
    begin, end = opened + WARM_UP_S, opened + args.seconds
    counted = [(line, size) for line, size in lines if begin <= (stamp(line) or 0) < end]
    minutes = (end - begin) / 60
    total = sum(size for _, size in counted)
    events = Counter(str(line.get("event")) for line, _ in counted)
    result = {
        "baud": args.baud,
        "measured_s": round(end - begin, 1),
        "log_bytes_per_min": round(total / minutes),
        "log_lines_per_min": round(len(counted) / minutes, 1),
        "log_bytes_per_day": round(total / minutes * 1440),
        "log_lines_per_day": round(len(counted) / minutes * 1440),
        "events": dict(events.most_common()),
    }
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"noise at {args.baud} baud for {result['measured_s']} s: "
        f"{result['log_bytes_per_min']} log bytes/min ({result['log_lines_per_min']} lines/min), "
        f"{result['log_bytes_per_day'] / 1048576:.2f} MiB/day "
        f"({result['log_lines_per_day']} lines/day)"
    )
    print("events:", result["events"])


if __name__ == "__main__":
    main()
