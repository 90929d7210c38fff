"""The tank gauge end to end: hil.atg → collector → SQLite → MQTT → receiver.

Real parts only: the gauge simulator on TCP with its clock at 120× (a
10-minute delivery takes 5 s), the dispenser simulator on the demo port's
pty, the collector as its own process with the demo config, a real
mosquitto and the reference receiver. The simulators' stdout is the ground
truth (SPEC T1, T2, A3–A5, A8).

A shared scenario: the dispenser's stdout is teed to a file the gauge
simulator follows (``--sales``), so each of its sales drains the tank its
nozzle is mapped to in the demo config. Its pump is powered off for its
first :data:`PUMP_OFF_S` (a ``power-cycle`` fault at 0 s: the sessions wait
for it), so its :data:`ORDERS` sales — nozzle 1, tank 1 — come once the
collector runs and the deliveries are over, in honest periods of tank 1.

Scenario, in simulated seconds after the gauge starts:

- tank 1: a reported delivery of 3000 L at 600 s;
- tank 2: a hidden delivery (A3) of 5000 L at 900 s, and a declared
  capacity of 30 000 L in the config against a 39 270 L console (A4);
- tank 3: a probe-out alarm from 0 to 1200 s, a leak test at 0 s, and
  400 L drained at 2700 s without any order (a hidden sale, A8);
- tank 1 again: the dispenser's sales from ~1600 s (after :data:`PUMP_OFF_S`).
"""

from __future__ import annotations

import json
import sys
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any

from hil import stack
from hil.stack import Mosquitto, Proc

DEMO_CONFIG = stack.ROOT / "config" / "demo.toml"
DEMO_KEYS = stack.ROOT / "config" / "demo-keys.toml"
SPEED = 120
START = "2026-03-01T08:00:00"
HIDDEN_SALE_L = 400
#: Bound on waiting for the last record (the variance of the period holding
#: the hidden sale at ~22 s real); a deadline to give up, not a goal.
WAIT_S = 45
#: The dispenser's sales: one nozzle (p01.a1.n1 → tank 1), one at a time, so
#: a sale the collector commits a moment before or after the gauge drains it
#: (≤ 80 L) cannot alone exceed the 100 L variance threshold at a period edge;
#: 6 sales of seed 3 are ~240 L, well beyond it had they not drained the tank.
ORDERS = 6
#: Real seconds the pump stays off at start: its sales begin at ~1600
#: simulated seconds, after both deliveries and their settling, and end well
#: before the period holding the hidden sale (2700 s).
PUMP_OFF_S = 14

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


def demo_tank_map() -> dict[str, int]:
    """Nozzle key → tank, from the demo config's ``[[tanks]]``."""
    config = tomllib.loads(DEMO_CONFIG.read_text())
    return {n: t["number"] for t in config["tanks"] for n in t["nozzles"]}


def start_dispenser(work: Path, link: Path, sales: Path) -> Proc:
    """``hil.stack.dispenser`` with its stdout teed to ``sales``."""
    argv = [
        sys.executable, "-m", "hil.dispenser", "--protocol", "sinopec", "--link", str(link),
        "--nozzles", "1", "--orders", str(ORDERS), "--rate", "10", "--seed", "3",
        "--fill-seconds", "0.5", "--port-number", "1",
        "--fault", f"at=0:power-cycle={PUMP_OFF_S}:pump=1",
    ]  # fmt: skip
    proc = Proc("dispenser", argv, work, tee=sales)
    stack.wait_until(lambda: link.exists(), 10, f"the simulator's link {link}")
    return proc


def test_tank_records_deliveries_and_the_wetstock_alarms(tmp_path: Path, broker: Mosquitto) -> None:
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps(SCENARIO))
    link = tmp_path / "pump1"
    sales = tmp_path / "sales.jsonl"
    tank_of = demo_tank_map()
    receiver = stack.receiver(tmp_path, broker.port, DEMO_KEYS, client_id=f"rx-{tmp_path.name}")
    procs = [receiver]
    try:
        dispenser = start_dispenser(tmp_path, link, sales)
        procs.append(dispenser)
        port = stack.free_port()
        atg = stack.atg(
            tmp_path,
            tanks=3,
            tcp=port,
            speed=SPEED,
            start=START,
            scenario=scenario,
            sales=sales,
            tank_of=tank_of,
        )
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
        drained = atg.wait_lines(lambda line: line.get("event") == "sale", ORDERS, 5)
        sold = dispenser.wait_lines(lambda line: "nozzle" in line, ORDERS, 5)
        receiver.wait_lines(lambda line: line.get("type") == "order", ORDERS, 5)
        lines = receiver.snapshot()
    finally:
        for proc in reversed(procs):
            proc.stop()

    # The shared scenario: every sale the dispenser made drained its tank, and
    # the collector reported the same orders (the honest periods' sales).
    assert {s["nozzle"] for s in sold} == {"p01.a1.n1"}
    assert [(d["tank"], Decimal(str(d["litres"]))) for d in drained] == [
        (tank_of[s["nozzle"]], Decimal(s["volume"])) for s in sold
    ]
    assert all(d["taken_l"] == d["litres"] for d in drained)
    orders = [line["record"] for line in lines if line.get("type") == "order"]
    assert sorted(Decimal(o["volume"]) for o in orders) == sorted(
        Decimal(s["volume"]) for s in sold
    )
    assert sum(Decimal(s["volume"]) for s in sold) > 2 * Decimal(100)  # beyond the threshold

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
