"""Every fault the dispenser simulator injects gives its documented flag or
alarm (docs/alarms.md) and no false order (SPEC A1, A2, A7, A10, D14, D15).

One run, real parts: the Sinopec simulator (two pumps of two nozzles) on a
pty with a schedule of faults, the collector, mosquitto, the receiver.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from hil import stack
from hil.stack import Mosquitto

DEMO_CONFIG = stack.ROOT / "config" / "demo.toml"
DEMO_KEYS = stack.ROOT / "config" / "demo-keys.toml"
ORDERS = 40

FAULTS = (
    "at=1.0:price=450:pump=1:nozzle=2",  # grade 1095 below its 7.00 floor from now
    "at=1.5:totalizer-jump=500:pump=1:nozzle=1",  # 5.00 L drawn with no order
    "at=1.5:totalizer-jump=-300:pump=2:nozzle=1",  # the totalizer steps back 3.00 L
    "at=2.0:skip-order=2:pump=1",  # two transactions never offered
    "at=2.5:amount-off=3:pump=2",  # the next sale's amount 0.03 yuan off
    "at=3.0:alarm=64:pump=1",  # metering out of tolerance …
    "at=6.0:alarm-clear=64:pump=1",  # … and cleared (3B is read every ~1 s)
    "at=4.0:power-cycle=2.5:pump=2",  # pump 2 silent: its nozzles offline, then back
    "at=7.0:unplug=3",  # the adapter pulled out for 3 s
)


def fault_notes(log: Path) -> dict[str, dict[str, Any]]:
    notes = {}
    for raw in log.read_text().splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if "fault" in line:
            notes[line["fault"]] = line
    return notes


def test_each_fault_gives_its_flag_or_alarm_and_no_false_order(
    tmp_path: Path, broker: Mosquitto
) -> None:
    link = tmp_path / "pump1"
    receiver = stack.receiver(tmp_path, broker.port, DEMO_KEYS, client_id=f"rx-{tmp_path.name}")
    extra = ["--pumps", "2"] + [arg for f in FAULTS for arg in ("--fault", f)]
    sim = stack.dispenser(
        tmp_path, link, orders=ORDERS, nozzles=2, rate=5, seed=11, fill_seconds=0.2, extra=extra
    )
    overrides = [
        f"store.path={tmp_path}/store.sqlite",
        f"ports.0.device={link}",
        "ports.0.addresses=[1, 2]",
        "ports.0.poll_interval_ms=20",
        f"uplink.port={broker.port}",
        "uplink.reconnect_min_s=0.2",
        "uplink.reconnect_max_s=1.0",
        "edge.price_floors.1095=7.0",
        "log.format=json",
    ]
    collector = stack.collector(tmp_path, DEMO_CONFIG, overrides)
    try:
        truth = sim.wait_lines(lambda line: "order_no" in line, ORDERS, 120)
        lines = receiver.wait_lines(lambda line: line.get("type") == "order", ORDERS, 120)

        def alarms() -> list[dict[str, Any]]:
            got = receiver.snapshot()
            return [x["record"] for x in got if x.get("type") == "alarm"]

        expected = {
            (code, state)
            for code in ("METERING_OUT_OF_TOLERANCE", "NOZZLE_OFFLINE", "PORT_OFFLINE")
            for state in ("raised", "cleared")
        }
        stack.wait_until(
            lambda: expected <= {(a["code"], a["state"]) for a in alarms()},
            60,
            f"alarms {sorted(expected)}",
        )
    finally:
        collector.stop()
        sim.stop()
        receiver.stop()

    # No false order: exactly the dispenser's orders, each once.
    orders = [line["record"] for line in lines]
    assert len(orders) == ORDERS
    assert {(o["nozzle"], o["order_no"]) for o in orders} == {
        (t["nozzle"], t["order_no"]) for t in truth
    }
    flagged = defaultdict(list)
    for order in orders:
        for flag in order["flags"]:
            flagged[flag].append(order)
    notes = fault_notes(sim.log_path)

    # A10: every order at 4.50 on the 1095 nozzle, and only those.
    below = [o for o in orders if o["price"] == "4.50"]
    assert below and all(o["nozzle"] == "p01.a1.n2" for o in below)
    assert flagged["PRICE_BELOW_FLOOR"] == below

    # A1: one gap of 5.00 L on p01.a1.n1, one step back of 3.00 L on p01.a2.n1.
    (gap,) = flagged["TOTALIZER_GAP"]
    (back,) = flagged["TOTALIZER_BACK"]
    assert gap["nozzle"] == "p01.a1.n1" and back["nozzle"] == "p01.a2.n1"

    # A7: the counter jump of pump 1, exactly where the simulator skipped.
    (jump,) = flagged["ORDER_GAP"]
    skipped = notes["skip-order"]["skipped"]
    assert jump["nozzle"].startswith("p01.a1.") and int(jump["order_no"]) == skipped[-1] + 1

    # A2: the one sale whose amount the pump got wrong.
    (off,) = flagged["AMOUNT_MISMATCH"]
    assert Decimal(off["amount"]) - Decimal(off["price"]) * Decimal(off["volume"]) > Decimal("0.01")
    assert len([o for o in orders if o["flags"]]) == len(below) + 4, "nothing else flagged"

    by_code: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for alarm in alarms():
        by_code[alarm["code"], alarm["state"]].append(alarm)
    # Each finding is also an alarm naming its order.
    for code, found in flagged.items():
        assert sorted(a["detail"]["order"] for a in by_code[code, "raised"]) == sorted(
            o["rid"] for o in found
        )
    assert by_code["TOTALIZER_GAP", "raised"][0]["detail"]["difference"] == "5.00"
    assert by_code["TOTALIZER_BACK", "raised"][0]["detail"]["difference"] == "-3.00"
    assert by_code["ORDER_GAP", "raised"][0]["detail"]["missing"] == 2

    # D14: the pump's own metering alarm, raised then cleared.
    for state in ("raised", "cleared"):
        (metering,) = by_code["METERING_OUT_OF_TOLERANCE", state]
        assert metering["source"].startswith("p01.a1")
    # D14: pump 2's nozzles offline once, back once.
    for state in ("raised", "cleared"):
        sources = sorted(a["source"] for a in by_code["NOZZLE_OFFLINE", state])
        assert sources == ["p01.a2.n1", "p01.a2.n2"], state
    # D15: the unplugged port, raised within 3 s of the unplug, then cleared.
    (raised,) = by_code["PORT_OFFLINE", "raised"]
    (cleared,) = by_code["PORT_OFFLINE", "cleared"]
    unplugged_ms = notes["unplug"]["wall_ms"]
    raised_ms = datetime.fromisoformat(raised["at"]).timestamp() * 1000
    assert 0 <= raised_ms - unplugged_ms <= 3000, raised_ms - unplugged_ms
    assert datetime.fromisoformat(cleared["at"]) > datetime.fromisoformat(raised["at"])

    # D2: state changes reached up/nozzle (offline, then back) for pump 2.
    nozzle_records = [x["record"] for x in receiver.snapshot() if x.get("type") == "nozzle"]
    states = [r["state"] for r in nozzle_records if r["nozzle"] == "p01.a2.n1"]
    assert "offline" in states and "fuelling" in states and states[-1] == "idle"
