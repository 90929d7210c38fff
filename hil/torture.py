"""Torture harness: SIGKILL the collector at random moments and inside the two
windows that matter, stop and flap the broker, while simulated dispensers
sell and the uplink drains — then judge what the platform holds.

The dispensers' stdout is the ground truth; the platform receiver
(hil/platform: the contract implemented on its own, never with the
collector's uplink code) says what arrived. :meth:`Station.judge` waits for
quiescence first — every generated order received, then a heartbeat sealed
after that saying nothing is unsent, then :data:`QUIET_S` without a new line
— so records arriving late (a duplicate, an extra) are seen before counting.
It then finds (:func:`check`):

- every generated order exactly once, with **every** field the dispenser
  reported (volume, amount, price, grade, totalizers, ``ended_at``), the
  station, ``rid`` = ``nozzle:nseq``, no edge flags, a ``started_at`` that
  fits the sale, the chain ``ok``, nseq 1..n per nozzle arriving in order,
  in the dispenser's own order;
- nothing that was not generated, no order under two rids, and no second,
  *different* record under one rid (a repeat of the same record is at-least-
  once delivery: counted, not a fault).

And it reports what the kills covered (config/testpoints.py): for each
random kill, whether it fell inside a window; each aimed kill, stopped
exactly inside its window — after an order's commit and before its
confirmation to the dispenser (``order_committed``), after a PUBACK and
before the sent mark (``batch_acked``) — and what followed: sales the
dispensers offered again and the collector recognised (``order_duplicate``
in its log), records the platform received twice.

Used by tests/test_torture_*.py (short runs) and bench/torture.py (long runs).
"""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from config import testpoints
from hil import stack
from hil.stack import Mosquitto, Proc

KEYS = stack.ROOT / "config" / "demo-keys.toml"
STATION = "TORTURE-1"

#: Nozzles per simulated pump; four like the demo dispenser.
NOZZLES = 4
#: The tortured collector's heartbeat period: its ``unsent`` counts tell the
#: harness when nothing is left to send, so it is short.
HEARTBEAT_S = 1
#: No new receiver line for this long, after the collector reported nothing
#: unsent: quiet. Covers a PUBACKed batch still on its way to the receiver.
QUIET_S = 2.0
#: How long an aimed kill waits for its test point before giving up (a miss
#: is reported, never taken for a hit).
AIM_TIMEOUT_S = 30.0
#: The share of a kill loop its aimed kills are spread over: the first part,
#: while sales still flow (an order batch needs orders to send).
AIMED_SPAN = 0.75
#: A sale's ``started_at`` (the lift the collector saw) lies at most this long
#: before its ``ended_at``, and at most :data:`ENDED_SLACK` after it: the
#: dispenser's time has whole seconds, truncated.
FILL_BOUND = timedelta(seconds=60)
ENDED_SLACK = timedelta(seconds=1)


def write_config(work: Path, links: list[Path], broker_port: int, store: Path) -> Path:
    """A collector config with one Sinopec port per simulated dispenser."""
    ports = "".join(
        f"""
[[ports]]
number = {n}
device = "{link}"
protocol = "sinopec"
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
station = "{STATION}"

[store]
path = "{store}"

[uplink]
host = "127.0.0.1"
port = {broker_port}
keys_file = "{KEYS}"
kid = "demo-k1"
batch_max_records = 50
heartbeat_s = {HEARTBEAT_S}
reconnect_min_s = 0.2
reconnect_max_s = 1.0

[log]
format = "json"
{ports}"""
    )
    return path


@dataclass(frozen=True)
class Kill:
    """One SIGKILL: ``aimed`` at a test point (``hit``: stopped inside it) or
    at a random moment (``inside``: the windows open when it fell)."""

    aimed: str | None
    hit: bool
    inside: tuple[str, ...]


@dataclass
class Verdict:
    problems: list[str]
    report: dict[str, Any]


def stopped(pid: int) -> bool:
    """Whether ``pid`` is stopped (SIGSTOP): the state after the command name."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] in ("T", "t")


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
    collectors: list[Proc] = field(default_factory=list)
    starts: int = 0
    kill_log: list[Kill] = field(default_factory=list)

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

    @property
    def kills(self) -> int:
        return len(self.kill_log)

    def _trace(self) -> Path:
        return self.work / f"trace{self.starts}.bin"

    def start_collector(self, stop: str | None = None) -> Proc:
        """Start a collector, tracing its windows; ``stop``: a test point to stop at
        (``order_committed``, ``batch_acked:order`` …, config/testpoints.py)."""
        self.starts += 1
        spec = f"trace={self._trace()}" + (f";stop={stop}" if stop else "")
        self.collector = stack.collector(
            self.work, self.config, [], f"collector{self.starts}", env={testpoints.ENV: spec}
        )
        self.collectors.append(self.collector)
        return self.collector

    def kill_collector(self, aimed: str | None = None, hit: bool = False) -> Kill:
        assert self.collector is not None
        self.collector.kill()
        assert self.collector.popen.returncode == -signal.SIGKILL
        trace = testpoints.read_trace(self._trace())
        inside = tuple(point for point, (came, went) in trace.items() if came > went)
        kill = Kill(aimed, hit, inside)
        self.kill_log.append(kill)
        self.collector = None
        return kill

    def aimed_kill(self, point: str) -> Kill:
        """Start a collector that stops itself inside ``point``'s window; kill it there."""
        proc = self.start_collector(stop=point)
        deadline = time.monotonic() + AIM_TIMEOUT_S
        while not (hit := stopped(proc.popen.pid)) and time.monotonic() < deadline:
            if proc.popen.poll() is not None:
                raise RuntimeError(f"{proc.name} exited; see {proc.log_path}")
            time.sleep(0.01)
        return self.kill_collector(aimed=point, hit=hit)

    def kill_loop(
        self,
        kills: int,
        rng: random.Random,
        delay: tuple[float, float],
        aims: Sequence[str] = (),
    ) -> None:
        """``kills`` SIGKILLs: the ``aims`` (test points) spread evenly over the
        first :data:`AIMED_SPAN` of the loop (while the dispensers still sell),
        among random ones, each random one after a random delay."""
        span = AIMED_SPAN * kills
        at = {round((i + 0.5) * span / len(aims)): aim for i, aim in enumerate(aims)}
        for i in range(kills):
            if i in at:
                self.aimed_kill(at[i])
                continue
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

    def settle(self, timeout: float) -> bool:
        """Wait for quiescence: every generated order received, then a heartbeat
        sealed after that with nothing unsent, then :data:`QUIET_S` without a
        new receiver line. False when it did not come within ``timeout`` (the
        judgement then says what is missing)."""
        deadline = time.monotonic() + timeout

        def orders() -> int:
            return sum(1 for x in self.receiver.snapshot() if x.get("type") == "order")

        while orders() < self.total_orders:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        since_ms = time.time_ns() // 1_000_000

        def drained() -> bool:
            return any(
                x.get("type") == "heartbeat"
                and x.get("ts", 0) > since_ms
                and not any((x.get("body") or {}).get("unsent", {}).values())
                for x in self.receiver.snapshot()
            )

        while not drained():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)

        def activity() -> int:  # heartbeats come every second whatever happens
            return sum(1 for x in self.receiver.snapshot() if x.get("type") != "heartbeat")

        count, quiet_since = activity(), time.monotonic()
        while time.monotonic() - quiet_since < QUIET_S:
            time.sleep(0.1)
            if (now := activity()) != count:
                count, quiet_since = now, time.monotonic()
            if time.monotonic() > deadline:
                return False
        return True

    def reoffered(self) -> int:
        """Sales a dispenser offered again after their commit and the collector
        recognised (``order_duplicate`` in the collectors' logs)."""
        found = 0
        for proc in self.collectors:
            for raw in proc.log_path.read_text(errors="replace").splitlines():
                if '"order_duplicate"' in raw:
                    found += 1
        return found

    def judge(self, timeout: float) -> Verdict:
        """Quiescence, then :func:`check` and the report of what was covered."""
        truth = self.truth(timeout)
        quiet = self.settle(timeout)
        lines = self.receiver.snapshot()
        problems = check(truth, lines, STATION)
        if not quiet:
            problems.append(f"no quiescence within {timeout:.0f} s")
        duplicates = Counter(x["duplicate"]["type"] for x in lines if "duplicate" in x)
        aimed: dict[str, dict[str, int]] = defaultdict(lambda: {"kills": 0, "hit": 0})
        random_inside: Counter[str] = Counter()
        for kill in self.kill_log:
            if kill.aimed is not None:
                aimed[kill.aimed]["kills"] += 1
                aimed[kill.aimed]["hit"] += int(kill.hit)
            random_inside.update(kill.inside if kill.aimed is None else ())
        report = {
            "orders": len(truth),
            "received": sum(1 for x in lines if x.get("type") == "order"),
            "duplicates": dict(duplicates),
            "duplicates_differing": sum(
                1 for x in lines if "duplicate" in x and not x["duplicate"]["same"]
            ),
            "kills": {
                "random": sum(1 for k in self.kill_log if k.aimed is None),
                "random_inside": {p: random_inside.get(p, 0) for p in testpoints.POINTS},
                "aimed": dict(aimed),
            },
            "reoffered_sales": self.reoffered(),
            "started_at_known": sum(
                1 for x in lines if x.get("type") == "order" and x["record"].get("started_at")
            ),
            "problems": len(problems),
        }
        return Verdict(problems, report)

    def stored_orders(self) -> int:
        with sqlite3.connect(self.store) as db:
            return int(db.execute("SELECT count(*) FROM records WHERE kind='order'").fetchone()[0])

    def stop(self) -> None:
        for proc in [self.collector, *self.dispensers, self.receiver]:
            if proc is not None:
                proc.stop()
        self.broker.stop()


def _when(text: Any) -> datetime | None:
    try:
        at = datetime.fromisoformat(str(text))
    except ValueError:
        return None
    return at if at.tzinfo is not None else None


def _order_problems(t: dict[str, Any], got: dict[str, Any], station: str) -> list[str]:
    """Every field of one received order against the dispenser's truth."""
    name = f"{t['nozzle']} {t['order_no']}"
    problems = [
        f"{name}: {k} is {got.get(k)!r}, the dispenser said {v!r}"
        for k, v in t.items()
        # hung_up_ms and a harness's own stamps (``_t``: when a line was read)
        # are not fields of the order.
        if k != "hung_up_ms" and not k.startswith("_") and got.get(k) != v
    ]
    for k in ("totalizer_amount_start", "totalizer_amount_end"):
        if k not in t and got.get(k) is not None:
            problems.append(f"{name}: {k} is {got.get(k)!r}, the protocol carries none")
    if got.get("station") != station:
        problems.append(f"{name}: station {got.get('station')!r}")
    if got.get("rid") != f"{got.get('nozzle')}:{got.get('nseq')}":
        problems.append(f"{name}: rid {got.get('rid')!r} is not nozzle:nseq")
    if got.get("flags") != []:
        problems.append(f"{name}: flags {got.get('flags')!r} on a clean sale")
    if got.get("resent") is not False:
        problems.append(f"{name}: first arrival with resent {got.get('resent')!r}")
    ended, started = _when(got.get("ended_at")), got.get("started_at")
    if started is not None:
        began = _when(started)
        if began is None or ended is None or began.utcoffset() != ended.utcoffset():
            problems.append(f"{name}: started_at {started!r} is no time at the station's offset")
        elif not ended - FILL_BOUND <= began <= ended + ENDED_SLACK:
            problems.append(f"{name}: started_at {started} does not fit ended_at {ended}")
    return problems


def check(truth: list[dict[str, Any]], lines: list[dict[str, Any]], station: str) -> list[str]:
    """Every problem found (empty: the receiver holds exactly the truth)."""
    problems: list[str] = []
    received = [line for line in lines if line.get("type") == "order"]
    records = [line["record"] for line in received]
    by_key = {(r["nozzle"], r["order_no"]): r for r in records}
    if len(by_key) != len(records):
        problems.append(f"{len(records) - len(by_key)} orders arrived under two rids")
    for t in truth:
        got = by_key.get((t["nozzle"], t["order_no"]))
        if got is None:
            problems.append(f"lost: {t['nozzle']} {t['order_no']}")
        else:
            problems += _order_problems(t, got, station)
    extra = set(by_key) - {(t["nozzle"], t["order_no"]) for t in truth}
    problems += [f"not generated: {k}" for k in sorted(extra)]
    problems += [
        f"chain {x['chain']}: {x['record']['rid']}" for x in received if x["chain"] != "ok"
    ]
    problems += [
        f"a different {x['duplicate']['type']} under rid {x['duplicate']['rid']}"
        for x in lines
        if "duplicate" in x and not x["duplicate"]["same"]
    ]
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


def summary(verdict: Verdict) -> str:
    """One JSON line: the report and the first problems."""
    return json.dumps({**verdict.report, "first_problems": verdict.problems[:20]})
