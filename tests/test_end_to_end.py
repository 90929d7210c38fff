"""The walking skeleton end to end: pty → collector → SQLite → MQTT → receiver.

Real parts only: the dispenser simulator on a real pty pair, the collector
as its own process, a real SQLite file, a real mosquitto, the reference
receiver opening real SM4-GCM envelopes. The simulator's stdout is the
ground truth (SPEC D1, D4–D6, D9, F2).
"""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hil import stack
from hil.stack import Mosquitto, Proc
from records.chain import verify_chain
from tests.store_edit import stored_texts

ORDERS = 50
DEMO_CONFIG = stack.ROOT / "config" / "demo.toml"
DEMO_KEYS = stack.ROOT / "config" / "demo-keys.toml"

#: Fields the dispenser's record fixes; every one must arrive exactly.
TRUTH_FIELDS = (
    "nozzle", "order_no", "grade", "price", "volume", "amount",
    "totalizer_volume_start", "totalizer_volume_end", "ended_at",
)  # fmt: skip


@dataclass
class Station:
    work: Path
    broker: Mosquitto
    dispenser: Proc
    receiver: Proc
    store: Path
    link: Path
    collectors: list[Proc]

    def start_collector(self) -> Proc:
        overrides = [
            f"store.path={self.store}",
            f"ports.0.device={self.link}",
            f"uplink.port={self.broker.port}",
            "uplink.reconnect_min_s=0.2",
            "uplink.reconnect_max_s=1.0",
            "ports.0.poll_interval_ms=30",
            "log.format=json",
        ]
        proc = stack.collector(
            self.work, DEMO_CONFIG, overrides, f"collector{len(self.collectors)}"
        )
        self.collectors.append(proc)
        return proc

    def truth(self) -> list[dict[str, Any]]:
        return self.dispenser.wait_lines(lambda line: "order_no" in line, ORDERS, 120)

    def received(self, count: int = ORDERS, timeout: float = 120) -> list[dict[str, Any]]:
        return self.receiver.wait_lines(lambda line: line.get("type") == "order", count, timeout)


@pytest.fixture
def station(tmp_path: Path, broker: Mosquitto) -> Iterator[Station]:
    link = tmp_path / "pump1"
    receiver = stack.receiver(tmp_path, broker.port, DEMO_KEYS, client_id=f"rx-{tmp_path.name}")
    dispenser = stack.dispenser(tmp_path, link, orders=ORDERS, nozzles=4, rate=8, seed=7)
    st = Station(tmp_path, broker, dispenser, receiver, tmp_path / "store.sqlite", link, [])
    try:
        yield st
    finally:
        for proc in [*st.collectors, dispenser, receiver]:
            proc.stop()


def assert_exactly_the_truth(truth: list[dict[str, Any]], lines: list[dict[str, Any]]) -> None:
    records = [line["record"] for line in lines]
    assert len(records) == ORDERS, "the receiver deduplicates on rid: exactly one line per order"
    by_key = {(r["nozzle"], r["order_no"]): r for r in records}
    assert len(by_key) == ORDERS
    for expected in truth:
        got = by_key[(expected["nozzle"], expected["order_no"])]
        assert {k: got[k] for k in TRUTH_FIELDS} == {k: expected[k] for k in TRUTH_FIELDS}
        assert got["station"] == "DEMO-0001"
        assert got["flags"] == []
        assert got["rid"] == f"{got['nozzle']}:{got['nseq']}"
        assert got["totalizer_amount_start"] is None and got["totalizer_amount_end"] is None
    assert all(line["chain"] == "ok" for line in lines), [x for x in lines if x["chain"] != "ok"]
    # Per nozzle: nseq 1..n without a gap, first arrivals in nseq order (D5).
    per_nozzle: dict[str, list[int]] = defaultdict(list)
    for r in records:
        per_nozzle[r["nozzle"]].append(r["nseq"])
    for nozzle, seqs in per_nozzle.items():
        assert seqs == list(range(1, len(seqs) + 1)), nozzle
    # The dispenser's own order per nozzle is the nseq order.
    truth_order: dict[str, list[str]] = defaultdict(list)
    for t in truth:
        truth_order[t["nozzle"]].append(t["order_no"])
    for nozzle, order_nos in truth_order.items():
        got_nos = [
            r["order_no"] for r in sorted(records, key=lambda r: r["nseq"]) if r["nozzle"] == nozzle
        ]
        assert got_nos == order_nos


def stored_orders(store: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(store) as db:
        texts = stored_texts(db, "order")
    return [json.loads(t) for t in texts]


def wait_all_sent(store: Path) -> None:
    """Every stored order ends up marked sent (after its PUBACK)."""

    def unsent() -> int:
        with sqlite3.connect(store) as db:
            return int(
                db.execute(
                    "SELECT count(*) FROM records WHERE kind='order' AND sent_ms IS NULL"
                ).fetchone()[0]
            )

    stack.wait_until(lambda: unsent() == 0, 30, "every order marked sent")


def test_fifty_orders_arrive_exactly(station: Station) -> None:
    collector = station.start_collector()
    truth = station.truth()
    lines = station.received()
    assert_exactly_the_truth(truth, lines)
    wait_all_sent(station.store)
    assert collector.stop() == 0, "SIGTERM stops the collector cleanly"
    # A clean stop says so on the retained state topic (D7): the will is not sent.
    station.receiver.wait_lines(
        lambda line: line.get("type") == "state" and line["body"] == {"online": False}, 1, 10
    )
    assert len(stored_orders(station.store)) == ORDERS


def test_broker_gone_for_ten_seconds_loses_nothing(station: Station) -> None:
    station.start_collector()
    station.received(count=10)
    station.broker.stop()
    time.sleep(10)  # orders keep being collected into the store meanwhile
    station.broker.start()
    truth = station.truth()
    lines = station.received()
    assert_exactly_the_truth(truth, lines)


def test_collector_sigkilled_and_restarted_loses_nothing(station: Station) -> None:
    first = station.start_collector()
    station.received(count=12)
    first.kill()  # SIGKILL: no chance to flush or say goodbye
    assert first.popen.returncode == -signal.SIGKILL
    time.sleep(1.0)  # the dispenser keeps fuelling and queues its records
    station.start_collector()
    truth = station.truth()
    lines = station.received()
    assert_exactly_the_truth(truth, lines)
    # The store's own chains are intact after the kill (F2).
    by_nozzle: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in stored_orders(station.store):
        by_nozzle[record["nozzle"]].append(record)
    wait_all_sent(station.store)
    for records in by_nozzle.values():
        assert verify_chain(sorted(records, key=lambda r: r["nseq"])) is None
    assert sum(len(v) for v in by_nozzle.values()) == ORDERS
