"""Start → READY and resident memory of the collector with 32 ports, measured for real.

    .venv/bin/python bench/startup.py [--runs 3] [--ports 32] [--settle 20]

Per run: a real mosquitto, ``--ports`` dispenser simulators on ptys (Sinopec,
DART, Gilbarco in turn, idle; hil/station.py, the same station as
bench/ports32.py), then the collector (``forecourt run``) with
``NOTIFY_SOCKET`` pointing at a datagram socket this bench listens on, as
systemd's would (``Type=notify``). Measured:

- ``ready_s``: exec → the ``READY=1`` datagram (store open, every port bound:
  what systemd waits for);
- ``started_s``: exec → the ``started`` log line (just after READY=1);
- VmRSS / VmHWM / RssAnon / RssFile after ``--settle`` seconds of idle
  polling with the uplink connected (goal: RSS ≤ 40 MB, READY ≤ 1 s);
- ``heavy_so``: which extension modules of the deny-list (collector/tools/footprint.py)
  are mapped into the daemon (/proc/<pid>/maps).

Prints one JSON line per run and a summary line of medians.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hil import stack, station

STATUS_KEYS = ("VmRSS", "VmHWM", "RssAnon", "RssFile")


def memory_kb(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in STATUS_KEYS:
            out[key] = int(value.split()[0])
    return out


def mapped_extensions(pid: int) -> list[str]:
    """Shared objects of site-packages mapped into ``pid`` (the heavy imports show here)."""
    names = set()
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        path = line.split(maxsplit=5)[-1]
        if "site-packages" in path and ".so" in path:
            names.add(path.split("site-packages/", 1)[1])
    return sorted(names)


class NotifyListener:
    """A systemd-style NOTIFY_SOCKET: records when each state arrives."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.states: dict[str, float] = {}
        self.ready = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while True:
            try:
                data = self.sock.recv(4096)
            except OSError:
                return
            at = time.monotonic()
            for item in data.decode().split("\n"):
                self.states.setdefault(item, at)
                if item == "READY=1":
                    self.ready.set()

    def close(self) -> None:
        self.sock.close()


def one_run(
    work: Path, ports: int, settle_s: float, env: dict[str, str], sets: list[str] | None = None
) -> dict[str, object]:
    broker = stack.Mosquitto(work / "broker")
    broker.start()
    sims = station.start_dispensers(work, ports, orders=0, rate=0.1)
    config = station.write_config(
        work / "station.toml", work, broker.port, ports, poll_interval_ms=200
    )
    listener = NotifyListener(work / "notify.sock")
    saved = dict(os.environ)
    os.environ.update(env, NOTIFY_SOCKET=str(listener.path))  # the collector's environment
    try:
        began = time.monotonic()
        collector = stack.collector(work, config, sets or [])
    finally:
        os.environ.clear()
        os.environ.update(saved)
    try:
        if not listener.ready.wait(60):
            tail = collector.log_path.read_text()[-2000:]
            raise RuntimeError(f"no READY=1 within 60 s; {collector.log_path} ends:\n{tail}")
        ready_s = listener.states["READY=1"] - began
        stack.wait_until(lambda: "started" in collector.log_path.read_text(), 30, "started")
        started_s = time.monotonic() - began  # an upper bound: the log is polled
        time.sleep(settle_s)
        pid = collector.popen.pid
        mem = memory_kb(pid)
        extensions = mapped_extensions(pid)
        threads = len(list(Path(f"/proc/{pid}/task").iterdir()))
    finally:
        collector.stop()
        listener.close()
        for sim in sims.values():
            sim.stop()
        broker.stop()
    return {
        "ports": ports,
        "ready_s": round(ready_s, 3),
        "started_s_upper": round(started_s, 3),
        **{f"{key}_kb": value for key, value in mem.items()},
        "threads": threads,
        "extensions": extensions,
        "loadavg": Path("/proc/loadavg").read_text().split()[0],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--ports", type=int, default=32)
    parser.add_argument("--settle", type=float, default=20.0, help="idle seconds before RSS")
    parser.add_argument("--json", action="store_true", help="one JSON object: the summary")
    parser.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE",
        help="set in the collector's environment, e.g. MALLOC_ARENA_MAX=2",
    )  # fmt: skip
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", dest="sets",
        help="a config override (forecourt run --set), e.g. store.evidence_days=0",
    )  # fmt: skip
    args = parser.parse_args()
    results = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            env = dict(item.split("=", 1) for item in args.env)
            result = one_run(Path(tmp), args.ports, args.settle, env, args.sets)
        if not args.json:
            print(json.dumps(result))
        results.append(result)
    keys = ["ready_s", *(f"{key}_kb" for key in STATUS_KEYS)]
    summary = {key: statistics.median(float(r[key]) for r in results) for key in keys}  # type: ignore[arg-type]
    meta = {"runs": args.runs, "ports": args.ports, "env": args.env, "set": args.sets}
    print(json.dumps({"median": summary, **meta}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
