"""The fleet run: broker, receivers, collector workers, the go, the figures.

Every part is its own process (hil/stack.py ``Proc``, ``Mosquitto``); the
CPU of each is read from /proc over the measurement window, which runs from
the go (SIGUSR1 to every worker) until the last published record was opened
by a receiver.

``cluster``: the broker is three RabbitMQ 3.10 nodes (hil/cluster.py) instead
of one mosquitto. Each station lists the three nodes as its endpoints in
its own order (permutation *i* mod 3!), so the connections spread, and so do
the stations of a node that dies (``kill_node``: SIGKILLed ``kill_after_s``
into the run, its stations' moves inside the figures);
RabbitMQ's MQTT plugin has no shared subscriptions, so receiver *k*
subscribes on node *k* mod 3 to the up topics of its own share of the
devices, one filter each.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hil.cluster import RabbitCluster
from hil.fleet import check
from hil.fleet.receiver import UP_FILTER
from hil.fleet.worker import DRAIN_TIMEOUT_S, READY_TIMEOUT_S
from hil.stack import Mosquitto, Proc, wait_until

#: Seconds to wait for a receiver's subscription (process start + CONNECT).
SUBSCRIBE_TIMEOUT_S = 30.0

#: Seconds, after the workers drained, for the receivers to open the last
#: published record: a receiver that keeps up needs well under one.
RECEIVE_TIMEOUT_S = 120.0

#: A receiver busy this share of one core over the window is saturated: the
#: figures then measure the receiver, not the fleet (and the report says so).
SATURATED_SHARE = 0.9

#: Seconds the receivers may still be opening after the last PUBACK: more
#: means messages queued at the broker for them, i.e. they fell behind.
SATURATED_CATCH_UP_S = 2.0

_TICK_S = 1 / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class FleetOptions:
    collectors: int = 200
    seconds: float = 60.0
    rate: float = 1.0
    workers: int = 4
    receivers: int = 2
    heartbeat_s: float = 30.0
    batch: int = 100
    inflight: int = 4
    seed: int = 1
    idle_seconds: float = 5.0
    nozzle_records: bool = True
    dir: Path | None = None
    keep: bool = False
    cluster: bool = False
    kill_node: int | None = None
    kill_after_s: float = 10.0


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process, from /proc (fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) * _TICK_S


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _devices(n: int) -> list[dict[str, str]]:
    # Each station its own device id, kid and random SM4 key (provisioning does the same).
    return [
        {"dev": f"fleet-{i:04d}", "kid": f"k-fleet-{i:04d}", "key": os.urandom(16).hex()}
        for i in range(1, n + 1)
    ]


def _spec(work: Path, name: str, spec: dict[str, Any]) -> Path:
    path = work / f"{name}.json"
    path.write_text(json.dumps(spec))
    path.chmod(0o600)  # it holds keys
    return path


class Fleet:
    def __init__(self, opts: FleetOptions, work: Path) -> None:
        self.opts, self.work = opts, work
        self.devices = _devices(opts.collectors)
        self.broker: Mosquitto | None = None
        self.cluster: RabbitCluster | None = None
        if opts.cluster:
            self.cluster = RabbitCluster(work / "cluster")
        else:
            self.broker = Mosquitto(work / "broker")
        self.receivers: list[Proc] = []
        self.workers: list[Proc] = []
        self.ready: list[dict[str, Any]] = []
        self.rss_empty: dict[str, int] = {}
        self.cpu_empty: dict[str, float] = {}

    @property
    def ports(self) -> list[int]:
        if self.cluster is not None:
            return [n.mqtt_port for n in self.cluster.nodes]
        assert self.broker is not None
        return [self.broker.port]

    def broker_pids(self) -> dict[str, int]:
        if self.cluster is not None:
            return {f"node{n.index}": n.proc.pid for n in self.cluster.nodes if n.proc}
        assert self.broker is not None and self.broker.proc is not None
        return {"broker": self.broker.proc.pid}

    def _filters(self, i: int) -> list[str]:
        o = self.opts
        if self.cluster is not None:  # no $share: each receiver its own devices
            return [f"forecourt/v1/{d['dev']}/up/#" for d in self.devices[i :: o.receivers]]
        return [f"$share/fleet/{UP_FILTER}" if o.receivers > 1 else UP_FILTER]

    def start(self) -> None:
        o = self.opts
        if self.cluster is not None:
            self.cluster.start()
        else:
            assert self.broker is not None
            self.broker.start()
        # The broker before any station connects (its own idle CPU: Erlang's
        # schedulers, the cluster's heartbeats), for per-connection costs.
        brokers = self.broker_pids()
        self.rss_empty = {name: rss_kb(pid) for name, pid in brokers.items()}
        cpu0, t0 = {name: cpu_seconds(pid) for name, pid in brokers.items()}, time.monotonic()
        if self.cluster is not None:  # mosquitto idles at ~0: not worth the wait
            time.sleep(o.idle_seconds)
        elapsed = max(time.monotonic() - t0, 1e-3)
        self.cpu_empty = {n: (cpu_seconds(pid) - cpu0[n]) / elapsed for n, pid in brokers.items()}
        ports = self.ports
        # Station i lists the nodes in permutation i mod n!: each node is the
        # first of a third of the stations, and a dead node's stations split
        # evenly over the others (a rotation would send them all to one).
        orders = list(itertools.permutations(range(len(ports))))
        for i, d in enumerate(self.devices):
            d["order"] = ",".join(map(str, orders[i % len(orders)]))
        keys = {d["kid"]: d["key"] for d in self.devices}
        kid_dev = {d["kid"]: d["dev"] for d in self.devices}
        for i in range(o.receivers):
            spec = {
                "index": i, "host": "127.0.0.1", "port": ports[i % len(ports)],
                "filters": self._filters(i), "state": i == 0, "keys": keys, "kid_dev": kid_dev,
                "out": str(self.work / f"rx{i}.tsv"),
            }  # fmt: skip
            argv = [
                sys.executable,
                "-m",
                "hil.fleet.receiver",
                str(_spec(self.work, f"rx{i}", spec)),
            ]
            self.receivers.append(Proc(f"rx{i}", argv, self.work))
        for rx in self.receivers:
            rx.wait_lines(lambda line: "subscribed" in line, 1, SUBSCRIBE_TIMEOUT_S)
        workers = max(1, min(o.workers, o.collectors))
        shares = [self.devices[w::workers] for w in range(workers)]
        for w in range(workers):
            spec = {
                "worker": w, "host": "127.0.0.1", "port": ports[0], "ports": ports,
                "rate": o.rate, "seconds": o.seconds, "seed": o.seed, "batch": o.batch,
                "inflight": o.inflight, "heartbeat_s": o.heartbeat_s,
                "nozzle_records": o.nozzle_records,
                "dir": str(self.work / "stores"), "commits": str(self.work / f"commits{w}.tsv"),
                "devices": shares[w],
            }  # fmt: skip
            argv = [sys.executable, "-m", "hil.fleet.worker", str(_spec(self.work, f"w{w}", spec))]
            self.workers.append(Proc(f"worker{w}", argv, self.work))
        for proc, share in zip(self.workers, shares, strict=True):
            ready = proc.wait_lines(lambda line: "ready" in line, 1, READY_TIMEOUT_S + 30)
            self.ready.append(ready[0])
            expected = len(share)
            if ready[0]["ready"] != expected:
                raise RuntimeError(
                    f"{proc.name}: {ready[0]['ready']} of {expected} uplinks connected"
                )

    def measure(self) -> dict[str, Any]:
        """Go, wait for the drain and the last receipt; CPU and wall of the window."""
        o = self.opts
        brokers = self.broker_pids()
        pids = {**brokers, **{p.name: p.popen.pid for p in (*self.receivers, *self.workers)}}
        rss0 = {name: rss_kb(pid) for name, pid in brokers.items()}
        load_start = loadavg()
        # Idle first: every uplink connected, heartbeats and keepalives only.
        idle0, i0 = {name: cpu_seconds(pid) for name, pid in pids.items()}, time.monotonic()
        time.sleep(o.idle_seconds)
        idle_window = time.monotonic() - i0
        cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
        idle = {name: (cpu0[name] - idle0[name]) / idle_window for name in pids}
        go_ns, t0 = time.time_ns(), time.monotonic()
        for proc in self.workers:
            proc.signal(signal.SIGUSR1)
        killer = None
        last_cpu: dict[str, float] = {}  # a killed node's CPU up to its death
        if self.cluster is not None and o.kill_node is not None:
            node = self.cluster.node(o.kill_node)

            def kill() -> None:
                assert node.proc is not None
                last_cpu[f"node{node.index}"] = cpu_seconds(node.proc.pid)
                node.kill()

            killer = threading.Timer(o.kill_after_s, kill)
            killer.start()
        done = [
            p.wait_lines(lambda line: "done" in line, 1, o.seconds + DRAIN_TIMEOUT_S + 60)[0]
            for p in self.workers
        ]
        published = sum(d["records"] for d in done)

        def received() -> int:
            total = 0
            for rx in self.receivers:
                progress = [line for line in rx.snapshot() if "records" in line]
                total += progress[-1]["records"] if progress else 0
            return total

        drained = time.monotonic()
        if killer is not None:
            killer.cancel()
        wait_until(lambda: received() >= published, RECEIVE_TIMEOUT_S, "the receivers")
        window = time.monotonic() - t0
        # Every PUBACK was in when the workers reported; what the receivers
        # still had to open then is their backlog (a few ms when they keep up).
        catch_up = time.monotonic() - drained
        cpu = {
            name: (last_cpu[name] if name in last_cpu else cpu_seconds(pid)) - cpu0[name]
            for name, pid in pids.items()
        }
        # The broker as one figure (the sum of its nodes), each node beside it.
        for figures in (cpu, idle):
            figures["broker"] = sum(figures[name] for name in brokers)
        rss = {
            name: [self.rss_empty[name], rss0[name], 0 if name in last_cpu else rss_kb(pid)]
            for name, pid in brokers.items()
        }
        return {"go_ns": go_ns, "window_s": window, "cpu": cpu, "done": done, "idle": idle,
                "catch_up_s": catch_up, "broker_nodes": sorted(brokers), "rss_kb": rss,
                "load_start": load_start, "load_end": loadavg()}  # fmt: skip

    def stop(self) -> list[dict[str, Any]]:
        finals = []
        for rx in self.receivers:
            rx.stop()
            finals += [line for line in rx.snapshot() if line.get("final")]
        for proc in self.workers:
            proc.stop(timeout=30)
        if self.cluster is not None:
            self.cluster.close()
        if self.broker is not None:
            self.broker.stop()
        return finals


def report(
    opts: FleetOptions, m: dict[str, Any], finals: list[dict[str, Any]], work: Path
) -> dict[str, Any]:
    outcome = check.check(
        check.read_commits(sorted(work.glob("commits*.tsv"))),
        check.read_receipts(sorted(work.glob("rx*.tsv"))),
        m["go_ns"],
    )
    counts: dict[str, int] = {}
    for final in finals:
        for name, n in final["counts"].items():
            counts[name] = counts.get(name, 0) + n
    window, cpu, done = m["window_s"], m["cpu"], m["done"]
    orders = max(outcome["generated"], 1)
    worker_cpu = sum(v for k, v in cpu.items() if k.startswith("worker"))
    rx_share = {k: round(v / window, 3) for k, v in cpu.items() if k.startswith("rx")}
    heartbeats = max(counts.get("heartbeat_messages", 0), 1)
    return {
        "collectors": opts.collectors,
        "workers": len(done),
        "receivers": opts.receivers,
        "seconds": opts.seconds,
        "rate_per_collector": opts.rate,
        "offered_orders_per_s": round(opts.collectors * opts.rate, 1),
        **outcome,
        "drained": all(d["drained"] for d in done),
        "reconnects": sum(d["connects"] for d in done) - opts.collectors,
        "rejects": {k: v for k, v in counts.items() if k.startswith("reject_")},
        "window_s": round(window, 3),
        "cpu_share_of_core": {
            "broker": round(cpu["broker"] / window, 3),
            "receivers": rx_share,
            "workers": round(worker_cpu / window, 3),
            "per_collector": round(worker_cpu / window / opts.collectors, 5),
        },
        "idle_cpu_share_of_core": {
            "broker": round(m["idle"]["broker"], 4),
            "receivers": round(sum(v for k, v in m["idle"].items() if k.startswith("rx")), 4),
            "per_collector": round(
                sum(v for k, v in m["idle"].items() if k.startswith("worker")) / opts.collectors, 5
            ),
        },
        "cpu_us_per_sale": {
            "collector": round(worker_cpu / orders * 1e6),
            "broker": round(cpu["broker"] / orders * 1e6),
            "receivers": round(sum(v for k, v in cpu.items() if k.startswith("rx")) / orders * 1e6),
        },
        "worker_loop_lag_ms": [d["loop_lag_ms"] for d in done],
        "receiver_catch_up_s": round(m["catch_up_s"], 3),
        "receiver_saturated": any(share >= SATURATED_SHARE for share in rx_share.values())
        or m["catch_up_s"] > SATURATED_CATCH_UP_S,
        "sales_skipped": sum(d["sales_skipped"] for d in done),
        "wire": {
            "order_messages": counts.get("order_messages", 0),
            "orders_per_message": round(
                counts.get("order_records", 0) / max(counts.get("order_messages", 0), 1), 2
            ),
            "order_payload_bytes_per_order": round(
                counts.get("order_payload_bytes", 0) / orders, 1
            ),
            "order_mqtt_bytes_per_order": round(counts.get("order_mqtt_bytes", 0) / orders, 1),
            "nozzle_messages": counts.get("nozzle_messages", 0),
            "messages_per_sale": round(
                (counts.get("order_messages", 0) + counts.get("nozzle_messages", 0)) / orders, 2
            ),
            "mqtt_bytes_per_sale": round(
                (counts.get("order_mqtt_bytes", 0) + counts.get("nozzle_mqtt_bytes", 0)) / orders, 1
            ),
            "nozzle_payload_bytes_per_record": round(
                counts.get("nozzle_payload_bytes", 0) / max(counts.get("nozzle_records", 0), 1), 1
            ),
            "heartbeats_per_s_per_collector": round(
                outcome["heartbeats_in_window"] / outcome["delivery_window_s"] / opts.collectors, 4
            ),
            "heartbeat_payload_bytes": round(
                counts.get("heartbeat_payload_bytes", 0) / heartbeats, 1
            ),
        },
        "connections": opts.collectors + opts.receivers,
        "broker_nodes": {
            name: {
                "cpu_share_of_core": round(cpu[name] / window, 3),
                "empty_cpu_share_of_core": round(m["cpu_empty"][name], 4),
                "idle_cpu_share_of_core": round(m["idle"][name], 4),
                "rss_kb_empty_idle_end": m["rss_kb"][name],
            }
            for name in m["broker_nodes"]
        },
        "stations_per_endpoint": _spread(m.get("ready", [])),
        "retained_online_states": sum(f.get("online", 0) for f in finals),
        "loadavg_start": m["load_start"],
        "loadavg_end": m["load_end"],
        "cpus": os.cpu_count(),
    }


def _spread(ready: list[dict[str, Any]]) -> dict[str, int]:
    """Stations connected per endpoint, from the workers' ready lines."""
    total: dict[str, int] = {}
    for line in ready:
        for name, n in line.get("links", {}).items():
            total[name] = total.get(name, 0) + n
    return dict(sorted(total.items()))


def run_fleet(opts: FleetOptions) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="fleet-", dir=opts.dir))
    fleet = Fleet(opts, work)
    try:
        fleet.start()
        measured = fleet.measure()
        measured["ready"] = fleet.ready
        measured["cpu_empty"] = fleet.cpu_empty
    except BaseException:
        fleet.stop()
        print(f"hil.fleet: failed; logs kept in {work}", file=sys.stderr)
        raise
    finals = fleet.stop()
    result = report(opts, measured, finals, work)
    result["options"] = {k: str(v) for k, v in asdict(opts).items()}
    if opts.keep:
        result["work"] = str(work)
    else:
        shutil.rmtree(work, ignore_errors=True)
    return result
