"""Torture harness (issue #6): SIGKILL the collector at random moments, stop
and flap the broker, while simulated dispensers sell and the uplink drains.

The dispensers' stdout is the ground truth; the platform receiver's stdout is
what arrived. :func:`check` compares them: every generated order exactly once
after dedupe (the receiver drops repeated rids), every chain ``ok`` and nseq
1..n without a gap per nozzle, first arrivals in nseq order (SPEC D4–D6, D17, F2).

Used by tests/test_torture_*.py (short runs) and bench/torture.py (long runs).
"""

from __future__ import annotations

import random
import signal
import sqlite3
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hil import stack
from hil.stack import Mosquitto, Proc

KEYS = stack.ROOT / "config" / "demo-keys.toml"

#: Nozzles per simulated pump; four like the demo dispenser.
NOZZLES = 4


def write_config(work: Path, links: list[Path], broker_port: int, store: Path) -> Path:
    """A collector config with one Sinopec port per simulated dispenser."""
    ports = "".join(
        f"""
[[ports]]
number = {n}
device = "{link}"
protocol = "sinopec"
parity = "N"
addresses = [1]
poll_interval_ms = 30
response_timeout_ms = 300
"""
        for n, link in enumerate(links, start=1)
    )
    path = work / "torture.toml"
    path.write_text(
        f"""[device]
id = "torture-gw"
station = "TORTURE-1"

[store]
path = "{store}"

[uplink]
host = "127.0.0.1"
port = {broker_port}
keys_file = "{KEYS}"
kid = "demo-k1"
batch_max_records = 50
heartbeat_s = 10
reconnect_min_s = 0.2
reconnect_max_s = 1.0

[log]
format = "json"
{ports}"""
    )
    return path


@dataclass
class Station:
    """Broker, receiver, ``pumps`` dispensers and a collector that may be killed."""

    work: Path
    pumps: int
    orders_per_pump: int
    rate: float
    seed: int = 1
    broker: Mosquitto = field(init=False)
    receiver: Proc = field(init=False)
    dispensers: list[Proc] = field(default_factory=list)
    collector: Proc | None = None
    starts: int = 0
    kills: int = 0

    def __post_init__(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        self.broker = Mosquitto(self.work / "broker")
        self.broker.start()
        self.receiver = stack.receiver(self.work, self.broker.port, KEYS, client_id="rx-torture")
        links = []
        for n in range(1, self.pumps + 1):
            link = self.work / f"pump{n}"
            self.dispensers.append(
                stack.dispenser(
                    self.work,
                    link,
                    orders=self.orders_per_pump,
                    nozzles=NOZZLES,
                    rate=self.rate,
                    seed=self.seed + n,
                    port_number=n,
                    name=f"dispenser{n}",
                )
            )
            links.append(link)
        self.store = self.work / "store.sqlite"
        self.config = write_config(self.work, links, self.broker.port, self.store)

    @property
    def total_orders(self) -> int:
        return self.pumps * self.orders_per_pump

    def start_collector(self) -> Proc:
        self.starts += 1
        self.collector = stack.collector(self.work, self.config, [], f"collector{self.starts}")
        return self.collector

    def kill_collector(self) -> None:
        assert self.collector is not None
        self.collector.kill()
        assert self.collector.popen.returncode == -signal.SIGKILL
        self.kills += 1
        self.collector = None

    def kill_loop(self, kills: int, rng: random.Random, delay: tuple[float, float]) -> None:
        """Start the collector and SIGKILL it after a random delay, ``kills`` times."""
        for _ in range(kills):
            self.start_collector()
            time.sleep(rng.uniform(*delay))
            self.kill_collector()

    def flap_broker(self, flaps: int, rng: random.Random, up: tuple[float, float]) -> None:
        """Stop and start the broker ``flaps`` times, up and down a few seconds each."""
        for _ in range(flaps):
            time.sleep(rng.uniform(*up))
            self.broker.stop()
            time.sleep(rng.uniform(*up))
            self.broker.start()

    def truth(self, timeout: float) -> list[dict[str, Any]]:
        lines: list[dict[str, Any]] = []
        for proc in self.dispensers:
            lines += proc.wait_lines(lambda line: "order_no" in line, self.orders_per_pump, timeout)
        return lines

    def received(self, timeout: float) -> list[dict[str, Any]]:
        return self.receiver.wait_lines(
            lambda line: line.get("type") == "order", self.total_orders, timeout
        )

    def stored_orders(self) -> int:
        with sqlite3.connect(self.store) as db:
            return int(db.execute("SELECT count(*) FROM records WHERE kind='order'").fetchone()[0])

    def stop(self) -> None:
        for proc in [self.collector, *self.dispensers, self.receiver]:
            if proc is not None:
                proc.stop()
        self.broker.stop()


def check(truth: list[dict[str, Any]], lines: list[dict[str, Any]]) -> list[str]:
    """Every problem found (empty: the receiver holds exactly the truth)."""
    problems: list[str] = []
    records = [line["record"] for line in lines if line.get("type") == "order"]
    by_key = {(r["nozzle"], r["order_no"]): r for r in records}
    if len(by_key) != len(records):
        problems.append(f"{len(records) - len(by_key)} orders arrived under two rids")
    for t in truth:
        got = by_key.get((t["nozzle"], t["order_no"]))
        if got is None:
            problems.append(f"lost: {t['nozzle']} {t['order_no']}")
        elif any(got[k] != t[k] for k in ("volume", "amount", "price", "grade")):
            problems.append(f"altered: {t['nozzle']} {t['order_no']}")
    extra = set(by_key) - {(t["nozzle"], t["order_no"]) for t in truth}
    problems += [f"not generated: {k}" for k in sorted(extra)]
    problems += [f"chain {x['chain']}: {x['record']['rid']}" for x in lines if x["chain"] != "ok"]
    per_nozzle: dict[str, list[int]] = defaultdict(list)
    for r in records:
        per_nozzle[r["nozzle"]].append(r["nseq"])
    for nozzle, seqs in per_nozzle.items():
        if seqs != list(range(1, len(seqs) + 1)):
            problems.append(f"{nozzle}: nseq arrived as {seqs[:20]}…, not 1..{len(seqs)}")
    truth_order: dict[str, list[str]] = defaultdict(list)
    for t in truth:
        truth_order[t["nozzle"]].append(t["order_no"])
    for nozzle, nos in truth_order.items():
        got_nos = [
            r["order_no"] for r in sorted(records, key=lambda r: r["nseq"]) if r["nozzle"] == nozzle
        ]
        if got_nos != nos:
            problems.append(f"{nozzle}: nseq order differs from the dispenser's order")
    return problems
