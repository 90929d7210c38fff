"""Start-up time and resident memory of the collector, measured for real.

    .venv/bin/python bench/startup.py [--runs 5]

Starts the dispenser simulator on a pty, then the collector (``forecourt
run`` with config/demo.toml, store in a temp dir, broker port closed so the
uplink only retries), and measures: time from exec to the ``started`` log
line (store open, ports bound — when READY=1 goes to systemd), and VmRSS /
VmHWM after 5 s of polling. Prints one JSON line per run and a summary.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hil import stack


def rss(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            key, value = line.split(":")
            out[key] = int(value.split()[0])
    return out


def one_run(work: Path) -> dict[str, float]:
    link = work / "pump1"
    sim = stack.dispenser(work, link, orders=1000, nozzles=4, rate=0.5, fill_seconds=2.0)
    argv = [
        sys.executable, "-m", "collector", "run", "--config", str(stack.ROOT / "config/demo.toml"),
        "--set", f"store.path={work}/store.sqlite", "--set", f"ports.0.device={link}",
        "--set", f"uplink.port={stack.free_port()}", "--set", "log.format=json",
    ]  # fmt: skip
    began = time.monotonic()
    proc = subprocess.Popen(argv, cwd=stack.ROOT, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    started = None
    for line in proc.stderr:
        if '"event": "started"' in line:
            started = time.monotonic() - began
            break
    time.sleep(5)
    mem = rss(proc.pid)
    proc.terminate()
    proc.wait(10)
    sim.stop()
    assert started is not None, "the collector never logged 'started'"
    return {"startup_s": round(started, 3), "rss_kb": mem["VmRSS"], "hwm_kb": mem["VmHWM"]}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    results = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            result = one_run(Path(tmp))
        print(json.dumps(result))
        results.append(result)
    summary = {
        key: statistics.median(r[key] for r in results) for key in ("startup_s", "rss_kb", "hwm_kb")
    }
    print(json.dumps({"median": summary, "runs": args.runs}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
