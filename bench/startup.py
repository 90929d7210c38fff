"""Start-up time and resident memory of the collector, measured for real.

    .venv/bin/python bench/startup.py [--runs 5] [--json]

Starts the dispenser simulator on a pty, then the collector (``forecourt
run`` with config/demo.toml, store in a temp dir, broker port closed so the
uplink only retries) under a ``NOTIFY_SOCKET`` datagram socket of our own,
as systemd runs it, and measures: time from exec to the ``READY=1`` datagram
(store open, ports bound: what systemd waits for), and VmRSS / VmHWM after
5 s of polling. Prints one JSON line per run and a summary; ``--json`` only
the summary, one JSON object (bench/run.py reads it).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hil import stack

#: Longest wait for READY=1: far above the 1 s goal, so a slow start on a
#: loaded machine is measured rather than reported as a failure.
READY_TIMEOUT_S = 60


def rss(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            key, value = line.split(":")
            out[key] = int(value.split()[0])
    return out


def wait_ready(sock: socket.socket) -> None:
    """Datagrams until READY=1 (the daemon may send STATUS= lines first)."""
    while True:
        if b"READY=1" in sock.recv(4096).split(b"\n"):
            return


def one_run(work: Path) -> dict[str, float]:
    link = work / "pump1"
    sim = stack.dispenser(work, link, orders=1000, nozzles=4, rate=0.5, fill_seconds=2.0)
    notify_path = work / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify_path))
    sock.settimeout(READY_TIMEOUT_S)
    argv = [
        sys.executable, "-m", "collector", "run", "--config", str(stack.ROOT / "config/demo.toml"),
        "--set", f"store.path={work}/store.sqlite", "--set", f"ports.0.device={link}",
        "--set", f"uplink.port={stack.free_port()}", "--set", "log.format=json",
        "--set", f"control.socket={work}/control.sock",
    ]  # fmt: skip
    env = {**os.environ, "NOTIFY_SOCKET": str(notify_path)}
    began = time.monotonic()
    proc = subprocess.Popen(
        argv, cwd=stack.ROOT, env=env, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL
    )
    try:
        wait_ready(sock)
        ready = time.monotonic() - began
        time.sleep(5)
        mem = rss(proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)
        sim.stop()
        sock.close()
    return {"ready_s": round(ready, 3), "rss_kb": mem["VmRSS"], "hwm_kb": mem["VmHWM"]}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="one JSON object: the summary")
    args = parser.parse_args()
    results = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            result = one_run(Path(tmp))
        if not args.json:
            print(json.dumps(result))
        results.append(result)
    keys = ("ready_s", "rss_kb", "hwm_kb")
    summary = {key: statistics.median(r[key] for r in results) for key in keys}
    print(json.dumps({"bench": "startup", "median": summary, "runs": args.runs}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
