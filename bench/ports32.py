"""32 polled ports: the collector's idle CPU and hang-up → platform latency.

    .venv/bin/python bench/ports32.py idle [--seconds 30]
    .venv/bin/python bench/ports32.py busy [--orders 20] [--rate 0.5]
    .venv/bin/python bench/ports32.py soak [--seconds 3600] [--rate 0.05]

``idle``: 32 dispenser simulators (Sinopec, DART, Gilbarco in turn, 4
nozzles each, no sales), the collector polling all of them every 50 ms
(config from hil/station.py), broker and receiver running. After a 5 s
settle, the collector's CPU time (utime + stime from /proc/<pid>/stat) over
``--seconds`` is reported as % of one core (goal: ≤ 2 %).

``busy``: the same station with sales (``--orders`` per port at ``--rate``
fills/s each); each simulator stamps its hang-up (``--stamp-hangup``), the
receiver stamps the arrival (``rx_ms``); reported: p50 / p99 / max of
arrival − hang-up over every order hung up once all 32 ports were collecting
(goal: p99 ≤ 500 ms). This includes the
poll interval: a sale is seen at the pump's next poll.

``soak``: the same station selling at ``--rate`` fills/s per port for
``--seconds``; the collector's VmRSS after ``--warmup`` s (steady, goal
≤ 40 MB), sampled every :data:`SOAK_SAMPLE_S`, and at the end (the growth
is end − steady). Also reported by ``idle``.

``--profile FILE``: the collector runs under pyinstrument (a dev
dependency) and its report goes to FILE when it stops (text, or a session
for ``pyinstrument --load`` when FILE ends in .pyisession) — the hot-path
profile of docs/performance.md. Figures measured so are not the bench's.

Prints one JSON line (``--json`` is accepted for bench/run.py).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hil import stack, station

CLK_TCK = os.sysconf("SC_CLK_TCK")

#: RSS sample period of the soak: 10 s is 360 samples in the hour, enough to
#: see a slope, and nothing the collector notices.
SOAK_SAMPLE_S = 10.0

#: Longest clean stop of a profiled collector: pyinstrument renders its report
#: after the daemon returned, which takes seconds for a long run.
PROFILE_STOP_S = 120.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def vm_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of ``pid`` in KiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            key, value = line.split(":")
            out[key] = int(value.split()[0])
    return out


def start_collector(
    work: Path, config: Path, profile: Path | None, sets: list[str] | None = None
) -> stack.Proc:
    if profile is None:
        return stack.collector(work, config, sets or [])
    # A .pyisession file can be rendered again later (pyinstrument --load F).
    renderer = "pyisession" if profile.suffix == ".pyisession" else "text"
    argv = [
        sys.executable, "-m", "pyinstrument", "--renderer", renderer, "--outfile", str(profile),
        "-m", "collector", "run", "--config", str(config),
        "--set", f"control.socket={work / 'control.sock'}",
        "--set", f"edge.max_flow_l_per_min={stack.SIMULATED_FLOW_L_PER_MIN}",
    ]  # fmt: skip
    return stack.Proc("collector", argv, work)


def soak(collector: stack.Proc, receiver: stack.Proc, args: argparse.Namespace) -> dict[str, Any]:
    pid = collector.popen.pid
    time.sleep(args.warmup)
    steady = vm_kb(pid)["VmRSS"]
    samples = [steady]
    began = time.monotonic()
    while time.monotonic() - began < args.seconds:
        time.sleep(min(SOAK_SAMPLE_S, max(0.0, args.seconds - (time.monotonic() - began))))
        samples.append(vm_kb(pid)["VmRSS"])
    delivered = sum(1 for x in receiver.snapshot() if x.get("type") == "order")
    return {"bench": "soak_rss", "ports": args.ports, "warmup_s": args.warmup,
            "soak_s": round(time.monotonic() - began), "rss_steady_kb": steady,
            "rss_end_kb": samples[-1], "rss_max_kb": max(samples),
            "growth_kb": samples[-1] - steady, "hwm_kb": vm_kb(pid)["VmHWM"],
            "orders_delivered": delivered, "goal_rss_mb": 40}  # fmt: skip


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(mode: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    PORTS = args.ports
    broker = stack.Mosquitto(work / "broker")
    broker.start()
    receiver = stack.receiver(work, broker.port, station.DEMO_KEYS)
    orders = {"idle": 0, "busy": args.orders}.get(mode, 0)
    if mode == "soak":  # selling for the whole soak, and a margin
        orders = int((args.warmup + args.seconds) * args.rate) + 10
    sims = station.start_dispensers(
        work,
        PORTS,
        orders=orders,
        rate=args.rate,
        fill_seconds=args.fill_seconds,
        common=["--stamp-hangup"],
    )
    config = station.write_config(
        work / "station.toml", work, broker.port, PORTS,
        poll_interval_ms=args.poll_ms, idle_poll_interval_ms=args.idle_poll_ms,
    )  # fmt: skip
    collector = start_collector(work, config, args.profile, args.sets)
    try:
        if mode == "soak":
            return soak(collector, receiver, args)
        if mode == "idle":
            time.sleep(5)  # start-up and first reads (identities, totals) done
            pid = collector.popen.pid
            cpu0, t0 = cpu_seconds(pid), time.monotonic()
            time.sleep(args.seconds)
            cpu1, t1 = cpu_seconds(pid), time.monotonic()
            return {"bench": "idle_cpu", "ports": PORTS, "seconds": round(t1 - t0, 1),
                    "cpu_pct_of_one_core": round(100 * (cpu1 - cpu0) / (t1 - t0), 2),
                    "goal_pct": 2.0, "rss_kb": vm_kb(pid)["VmRSS"]}  # fmt: skip
        # Simulators fuel from their start, before the collector runs: measure
        # only sales hung up once every port is collecting.
        receiver.wait_lines(lambda x: x.get("type") == "order", PORTS, 120)
        since_ms = time.time_ns() // 1_000_000
        cpu0, t0 = cpu_seconds(collector.popen.pid), time.monotonic()
        total = PORTS * orders
        truth = {
            (line["nozzle"], line["order_no"]): line["hung_up_ms"]
            for sim in sims.values()
            for line in sim.wait_lines(lambda x: "order_no" in x, orders, 600)
        }
        lines = receiver.wait_lines(lambda x: x.get("type") == "order", total, 600)
        busy_cpu = 100 * (cpu_seconds(collector.popen.pid) - cpu0) / (time.monotonic() - t0)
        hung_up = [(truth[(x["record"]["nozzle"], x["record"]["order_no"])], x) for x in lines]
        lags = [x["rx_ms"] - at for at, x in hung_up if at > since_ms]
        by_protocol: dict[str, list[int]] = {}
        for at, x in hung_up:
            if at > since_ms:
                port = int(x["record"]["nozzle"][1:3])
                by_protocol.setdefault(station.protocol_of(port), []).append(x["rx_ms"] - at)
        p99s = {name: quantile(v, 0.99) for name, v in sorted(by_protocol.items())}
        return {"bench": "hangup_to_platform_ms", "ports": PORTS, "orders": len(lags),
                "p50": quantile(lags, 0.5), "p99": quantile(lags, 0.99), "max": max(lags),
                "mean": round(statistics.fmean(lags), 1), "goal_p99_ms": 500,
                "p99_by_protocol": p99s,
                "collector_cpu_pct_of_one_core": round(busy_cpu, 1)}  # fmt: skip
    finally:
        collector.stop(PROFILE_STOP_S if args.profile else 10.0)
        for sim in sims.values():
            sim.stop()
        receiver.stop()
        broker.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("mode", choices=["idle", "busy", "soak"])
    p.add_argument("--ports", type=int, default=32)
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--poll-ms", type=int, default=200, help="poll interval (config default 200)")
    p.add_argument("--idle-poll-ms", type=int, default=1000, help="idle interval (default 1000)")
    p.add_argument("--orders", type=int, default=20, help="per port (busy)")
    p.add_argument("--fill-seconds", type=float, default=2.0, help="fuel flow time per fill")
    p.add_argument(
        "--rate", type=float, default=None, help="fills/s per port (busy 0.5, soak 0.05)"
    )
    p.add_argument("--warmup", type=float, default=30, help="soak: seconds before the steady RSS")
    p.add_argument("--profile", type=Path, help="run the collector under pyinstrument")
    p.add_argument("--json", action="store_true", help="(the output is one JSON object)")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", dest="sets",
        help="a config override (forecourt run --set), e.g. store.evidence_days=0",
    )  # fmt: skip
    args = p.parse_args()
    if args.rate is None:
        args.rate = 0.05 if args.mode == "soak" else 0.5
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(run(args.mode, args, Path(tmp))))


if __name__ == "__main__":
    main()
