"""PORT_OFFLINE is about the line, PumpLink offline about the pump (D14/D15).

One Sinopec port. The simulator first cuts the signal (``line-cut``: the pty
stays open, the pump answers nothing — a dead pump on a healthy cable), then
unplugs the pty (``unplug``: closed and gone for 2 s, as a pulled USB
adapter). Only the unplug is a PORT_OFFLINE: raised within 3 s of the
simulator's own unplug time, cleared once the line is back, one of each; and
every sale is stored.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from buffer.store import OrderStore
from hil import stack
from hil.dispenser.faults import parse_fault

DEMO = stack.ROOT / "config" / "demo.toml"
ORDERS = 6


def test_unplug_fault_parses_as_a_line_fault() -> None:
    fault = parse_fault("at=5:unplug=4")
    assert (fault.at, fault.kind, fault.value, fault.pump) == (5.0, "unplug", 4.0, None)
    with pytest.raises(ValueError, match="hits the line"):
        parse_fault("at=5:unplug=4:pump=1")


def test_unplug_is_port_offline_and_a_dead_pump_is_not(tmp_path: Path) -> None:
    link = tmp_path / "pump1"
    sim = stack.dispenser(
        tmp_path, link, orders=ORDERS, nozzles=2, rate=1.0, seed=7,
        extra=["--fault", "at=2:line-cut=2", "--fault", "at=6:unplug=2"],
    )  # fmt: skip
    collector = stack.collector(
        tmp_path,
        DEMO,
        [
            f"store.path={tmp_path}/store.sqlite",
            f"ports.0.device={link}",
            "ports.0.poll_interval_ms=50",
            f"uplink.port={stack.free_port()}",  # no broker: the store is what we read
            "log.format=json",
        ],
    )
    try:
        truth = sim.wait_lines(lambda line: "order_no" in line, ORDERS, 60)
        log = collector.log_path
        stack.wait_until(
            lambda: log.read_text().count('"PORT_OFFLINE"') >= 2, 30, "port offline and back"
        )
        stack.wait_until(
            lambda: log.read_text().count('"order_stored"') >= ORDERS, 30, "every order stored"
        )
    finally:
        collector.stop()
        sim.stop()
    pump_links = [
        json.loads(raw) for raw in collector.log_path.read_text().splitlines() if "pump_link" in raw
    ]
    events = [json.loads(raw) for raw in sim.log_path.read_text().splitlines() if "{" in raw]
    unplugged_ms = next(e["wall_ms"] for e in events if e.get("fault") == "unplug")
    store = OrderStore(tmp_path / "store.sqlite")
    try:
        alarms = [a for a in store.records("alarm") if a["code"] == "PORT_OFFLINE"]
        stored = {o["order_no"] for o in store.orders()}
    finally:
        store.close()
    # The line-cut (dead pump, cable fine) was seen as the pump going offline …
    assert any(p["online"] is False for p in pump_links)
    # … and raised no PORT_OFFLINE; the unplug raised one episode.
    assert [(a["source"], a["state"]) for a in alarms] == [("p01", "raised"), ("p01", "cleared")]
    raised_ms = datetime.fromisoformat(alarms[0]["at"]).timestamp() * 1000
    assert 0 <= raised_ms - unplugged_ms <= 3000
    assert stored == {t["order_no"] for t in truth}
