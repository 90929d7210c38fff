"""The tank gauge end to end: hil.atg → collector → SQLite → MQTT → receiver.

Real parts only: the gauge simulator on TCP with its clock at 120× (a
10-minute delivery takes 5 s), the dispenser simulator on a pty (the demo
port needs its line; it sells nothing here), the collector as its own
process with the demo config, a real mosquitto and the reference receiver.
The simulator's stdout is the ground truth (SPEC T1, T2, A3–A5, A8).

Scenario, in simulated seconds after the gauge starts:

- tank 1: a reported delivery of 3000 L at 600 s;
- tank 2: a hidden delivery (A3) of 5000 L at 900 s, and a declared
  capacity of 30 000 L in the config against a 39 270 L console (A4);
- tank 3: a probe-out alarm from 0 to 1200 s, a leak test at 0 s, and
  400 L drained at 2700 s without any order (a hidden sale, A8).
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from hil import stack
from hil.stack import Mosquitto

DEMO_CONFIG = stack.ROOT / "config" / "demo.toml"
DEMO_KEYS = stack.ROOT / "config" / "demo-keys.toml"
SPEED = 120
START = "2026-03-01T08:00:00"
HIDDEN_SALE_L = 400
#: Bound on waiting for the last record (the variance of the period holding
#: the hidden sale at ~22 s real); a deadline to give up, not a goal.
WAIT_S = 45

GEOMETRY = {"product": "1", "diameter_mm": 2500, "length_mm": 8000}
SCENARIO = {
    "tanks": [
        {"tank": 1, **GEOMETRY, "volume_l": 12000},
        {"tank": 2, **GEOMETRY, "volume_l": 15000},
        {"tank": 3, **GEOMETRY, "volume_l": 20000},
    ],
    "events": [
        {"at_s": 0, "type": "alarm", "tank": 3, "code": 9, "active": True},
        {"at_s": 0, "type": "leak_test", "tank": 3, "hours": 0.05},
        {"at_s": 600, "type": "delivery", "tank": 1, "litres": 3000, "minutes": 10},
        {"at_s": 900, "type": "delivery", "tank": 2, "litres": 5000, "minutes": 10, "hidden": True},
        {"at_s": 1200, "type": "alarm", "tank": 3, "code": 9, "active": False},
        {"at_s": 2700, "type": "sale", "tank": 3, "litres": HIDDEN_SALE_L},
    ],
}


def alarms(lines: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [
        (r["source"], r["code"], r["state"])
        for r in (line["record"] for line in lines if line.get("type") == "alarm")
    ]


def test_tank_records_deliveries_and_the_wetstock_alarms(tmp_path: Path, broker: Mosquitto) -> None:
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps(SCENARIO))
    link = tmp_path / "pump1"
    receiver = stack.receiver(tmp_path, broker.port, DEMO_KEYS, client_id=f"rx-{tmp_path.name}")
    procs = [receiver]
    try:
        procs.append(stack.dispenser(tmp_path, link, orders=0, nozzles=4, rate=1, seed=3))
        port = stack.free_port()
        atg = stack.atg(tmp_path, tanks=3, tcp=port, speed=SPEED, start=START, scenario=scenario)
        procs.append(atg)
        overrides = [
            f"store.path={tmp_path / 'store.sqlite'}",
            f"ports.0.device={link}",
            f"uplink.port={broker.port}",
            "uplink.reconnect_min_s=0.2",
            "uplink.reconnect_max_s=1.0",
            "log.format=json",
            "gauge.enabled=true",
            "gauge.link=tcp",
            f"gauge.port={port}",
            "gauge.inventory_s=0.5",  # one reading per simulated minute
            "gauge.deliveries_s=1.0",
            "gauge.alarms_s=1.0",
            "gauge.leak_s=1.0",
            "wetstock.delivery_settle_s=180",
            "wetstock.reconcile_period_s=4",  # 8 simulated minutes
            "tanks.1.declared_capacity_l=30000.0",
        ]
        procs.append(stack.collector(tmp_path, DEMO_CONFIG, overrides))

        def variance_raised(line: dict[str, Any]) -> bool:
            record = line.get("record", {})
            return line.get("type") == "alarm" and record.get("code") == "WETSTOCK_VARIANCE"

        [variance] = receiver.wait_lines(variance_raised, 1, WAIT_S)
        truth = atg.wait_lines(lambda line: line.get("event") == "delivery", 2, 5)
        lines = receiver.snapshot()
    finally:
        for proc in reversed(procs):
            proc.stop()

    tanks = [line["record"] for line in lines if line.get("type") == "tank"]
    assert {t["tank"] for t in tanks} == {1, 2, 3}
    assert {(t["tank"], t["grade"]) for t in tanks} == {(1, "92"), (2, "95"), (3, "0")}

    deliveries = [line["record"] for line in lines if line.get("type") == "delivery"]
    by_source = {(d["tank"], d["source"]): d for d in deliveries}
    assert sorted(by_source) == [(1, "gauge"), (2, "edge")], deliveries
    [reported] = [t for t in truth if not t["hidden"]]
    [hidden] = [t for t in truth if t["hidden"]]
    gauge = by_source[(1, "gauge")]
    assert abs(Decimal(gauge["volume_l"]) - Decimal(str(reported["litres"]))) <= Decimal("0.01")
    edge = by_source[(2, "edge")]
    assert edge["flags"] == ["UNREPORTED_DELIVERY"]
    error = abs(Decimal(edge["volume_l"]) - Decimal(str(hidden["litres"])))
    assert error / Decimal(str(hidden["litres"])) < Decimal("0.01"), (edge, hidden)
    assert edge["rid"].startswith("2:e:")

    leaks = [line["record"] for line in lines if line.get("type") == "leak"]
    assert [(r["tank"], r["result"]) for r in leaks] == [(3, "PASSED")]

    seen = alarms(lines)
    assert seen.count(("tank:3", "PROBE_OUT_ALARM", "raised")) == 1
    assert seen.count(("tank:3", "PROBE_OUT_ALARM", "cleared")) == 1
    assert seen.count(("tank:2", "UNREPORTED_DELIVERY", "raised")) == 1
    assert seen.count(("tank:2", "CAPACITY_MISMATCH", "raised")) == 1
    assert not any(code == "CAPACITY_MISMATCH" for src, code, _ in seen if src != "tank:2")
    # Honest periods (tanks 1 and 2, deliveries included) raise nothing;
    # the period with the hidden sale does, with its figures.
    assert [a for a in seen if a[1] == "WETSTOCK_VARIANCE"] == [
        ("tank:3", "WETSTOCK_VARIANCE", "raised")
    ]
    detail = variance["record"]["detail"]
    assert abs(Decimal(detail["variance_l"]) - HIDDEN_SALE_L) < 1, detail
    assert detail["sales_l"] == "0.00" and detail["deliveries_l"] == "0.00"
