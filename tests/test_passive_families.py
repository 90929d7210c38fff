"""Protocols that cannot be polled read-only, through the whole collector
(SPEC D15, D19, D20): relay and listen only.

The station controller (hil/masters/<protocol>.py, through hil/pos.py)
authorises and acknowledges as a real one must; the simulated pumps hold
each sale until it does. Relay: every byte passes unchanged both ways and
every order reaches the platform once, with every field the dispenser
fixes. Listen: the tap records every order and writes nothing.
"""

from __future__ import annotations

import signal
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from hil import stack
from hil.stack import Mosquitto, Proc

DEMO_CONFIG = stack.ROOT / "config" / "demo.toml"
DEMO_KEYS = stack.ROOT / "config" / "demo-keys.toml"
ORDERS = 12

#: Seconds between the simulator's hang-up and the monitor seeing the pump
#: idle: a few of the controller's poll cycles; generous on a shared machine.
MAX_SEEN_LAG_S = 10.0

#: The first fill waits until the collector reads the controller's traffic
#: (:func:`start`): a UDC fill that starts and ends unseen is not recorded
#: (the monitor keeps no sale it did not see begin: docs/protocols/udc.md),
#: and a Censtar sale's totals are proven against totals read before it.
START = ["--start-on-usr2"]


def start(sim: Proc, receiver: Proc, protocol: str) -> None:
    """SIGUSR2 to the simulator once the platform has every nozzle's totals:
    the controller talks to every pump through the collector, which has read
    their totals (a nozzle snapshot each)."""
    nozzles = 2 * SETUP[protocol][0]
    receiver.wait_lines(
        lambda line: (
            line.get("type") == "nozzle" and line["record"].get("totalizer_volume") is not None
        ),
        nozzles,
        60,
    )
    sim.signal(signal.SIGUSR2)


EXACT_FIELDS = (
    "nozzle", "order_no", "grade", "price", "volume", "amount",
    "totalizer_volume_start", "totalizer_volume_end",
    "totalizer_amount_start", "totalizer_amount_end",
)  # fmt: skip

#: Per protocol: pumps' nozzles and the options the port needs (grades:
#: the wire carries none; the simulator's are 1092, 1095 by nozzle).
SETUP: dict[str, tuple[int, list[str]]] = {
    "udc": (2, ['ports.0.udc.grades={1 = "1092", 2 = "1095"}']),
    # One nozzle per fuelling point (the source's view); grades by address.
    "censtar": (1, ['ports.0.censtar.grades={1 = "1092", 2 = "1092"}']),
}


def overrides(tmp_path: Path, broker: Mosquitto, protocol: str, **port: str) -> list[str]:
    return [
        f"store.path={tmp_path}/store.sqlite",
        f"uplink.port={broker.port}",
        f"ports.0.protocol={protocol}",
        "ports.0.addresses=[1, 2]",
        "uplink.reconnect_min_s=0.2",
        "log.format=json",
        *SETUP[protocol][1],
        *(f"ports.0.{k}={v}" for k, v in port.items()),
    ]


def check_orders(orders: list[dict[str, Any]], truth: list[dict[str, Any]]) -> None:
    assert len(orders) == len(truth) == ORDERS
    by_key = {(o["nozzle"], o["volume"], o["amount"]): o for o in orders}
    assert len(by_key) == ORDERS, "each order once"
    for expected in truth:
        got = by_key[(expected["nozzle"], expected["volume"], expected["amount"])]
        fields = [f for f in EXACT_FIELDS if f in expected]
        assert {f: got[f] for f in fields} == {f: expected[f] for f in fields}
        lag = datetime.fromisoformat(got["ended_at"]) - datetime.fromisoformat(expected["ended_at"])
        assert -1.0 <= lag.total_seconds() <= MAX_SEEN_LAG_S, (got["ended_at"], expected)
    assert all(o["flags"] == [] for o in orders)


@pytest.mark.parametrize("protocol", sorted(SETUP))
def test_relay_passes_every_byte_and_records_every_order(
    protocol: str, tmp_path: Path, broker: Mosquitto
) -> None:
    pump_link, pos_link = tmp_path / "pump", tmp_path / "pos"
    nozzles = SETUP[protocol][0]
    receiver = stack.receiver(tmp_path, broker.port, DEMO_KEYS, client_id=f"rx-{tmp_path.name}")
    sim = stack.dispenser(
        tmp_path, pump_link, orders=ORDERS, nozzles=nozzles, rate=6, seed=3, protocol=protocol,
        extra=["--pumps", "2", "--record", str(tmp_path / "pump"), *START],
    )  # fmt: skip
    pos = stack.pos(tmp_path, pos_link, addresses="1,2", record=tmp_path / "pos", protocol=protocol)
    port = {"mode": "relay", "device": str(pump_link), "pos_device": str(pos_link)}
    collector = stack.collector(
        tmp_path, DEMO_CONFIG, overrides(tmp_path, broker, protocol, **port)
    )
    try:
        start(sim, receiver, protocol)
        truth = sim.wait_lines(lambda line: "order_no" in line, ORDERS, 90)
        lines = receiver.wait_lines(lambda line: line.get("type") == "order", ORDERS, 90)
        pos_sales = pos.wait_lines(lambda line: "order_no" in line, ORDERS, 30)
    finally:
        pos.stop()  # stops asking, keeps the answer to its last request
        for proc in (sim, collector, receiver):
            proc.stop()
    # The controller ran the station as if the collector were a cable.
    assert sorted(s["order_no"] for s in pos_sales) == sorted(t["order_no"] for t in truth)
    check_orders([line["record"] for line in lines], truth)
    pos_tx, pos_rx = (tmp_path / "pos.tx").read_bytes(), (tmp_path / "pos.rx").read_bytes()
    pump_tx, pump_rx = (tmp_path / "pump.tx").read_bytes(), (tmp_path / "pump.rx").read_bytes()
    assert len(pos_tx) > 500 and len(pump_tx) > 500
    assert pump_rx == pos_tx, "the dispenser received exactly what the controller sent"
    assert pos_rx == pump_tx, "the controller received exactly what the dispenser sent"


@pytest.mark.parametrize("protocol", sorted(SETUP))
def test_listen_records_every_order_and_writes_nothing(
    protocol: str, tmp_path: Path, broker: Mosquitto
) -> None:
    pump_link, pos_link, tap_link = tmp_path / "pump", tmp_path / "pos", tmp_path / "tap"
    nozzles = SETUP[protocol][0]
    receiver = stack.receiver(tmp_path, broker.port, DEMO_KEYS, client_id=f"rx-{tmp_path.name}")
    sim = stack.dispenser(
        tmp_path, pump_link, orders=ORDERS, nozzles=nozzles, rate=6, seed=5, protocol=protocol,
        extra=["--pumps", "2", *START],
    )  # fmt: skip
    pos = bus = collector = None
    try:
        # The bus opens both ends, so the controller must exist first; the tap
        # (collector) joins the bus before the first fill ends.
        pos = stack.pos(tmp_path, pos_link, addresses="1,2", protocol=protocol)
        bus = stack.bus(tmp_path, pos=pos_link, pump=pump_link, tap=tap_link)
        port = {"mode": "listen", "device": str(tap_link)}
        collector = stack.collector(
            tmp_path, DEMO_CONFIG, overrides(tmp_path, broker, protocol, **port)
        )
        start(sim, receiver, protocol)
        truth = sim.wait_lines(lambda line: "order_no" in line, ORDERS, 90)
        lines = receiver.wait_lines(lambda line: line.get("type") == "order", ORDERS, 90)
    finally:
        for proc in (collector, pos):
            if proc is not None:
                proc.stop()
        counts = None
        if bus is not None:
            bus.stop()
            counts = bus.snapshot()[-1]
        sim.stop()
        receiver.stop()
    check_orders([line["record"] for line in lines], truth)
    assert counts is not None and counts["bus_bytes"] > 1000
    assert counts["tap_written"] == 0, "nothing is ever written to the line"
