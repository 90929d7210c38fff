"""Torture: the broker gone for 20 s, then flapping every few seconds, while two
dispensers sell: zero lost, nothing doubled, per-nozzle order kept, chains ok
(SPEC D5, D17, F2). bench/torture.py runs an hour-long outage."""

from __future__ import annotations

import random
import time
from pathlib import Path

from hil.torture import Station, summary


def test_broker_down_then_flapping_loses_nothing(tmp_path: Path) -> None:
    station = Station(tmp_path, pumps=2, orders_per_pump=30, rate=0.8, seed=21)
    try:
        station.start_collector()
        station.receiver.wait_lines(lambda line: line.get("type") == "order", 3, 60)
        station.broker.stop()
        before = station.stored_orders()
        time.sleep(20)
        # Collection went on without the broker: orders were committed meanwhile.
        assert station.stored_orders() > before
        station.broker.start()
        station.flap_broker(4, random.Random(3), up=(1.0, 3.0))
        verdict = station.judge(timeout=120)
        print(summary(verdict))
        assert verdict.problems == []
        assert verdict.report["received"] == station.total_orders
    finally:
        station.stop()
