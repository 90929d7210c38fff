"""Port modes relay and listen end to end for Wayne DART (SPEC D19, D20; docs/relay.md).

As tests/test_relay_listen.py for Sinopec: the POS simulator is the master
(our poll driver reading, plus the authorisations and price updates a
station POS sends), the dispenser simulator the pumps. Relay: every byte
each end sent arrives at the other unchanged while every order is recorded
once. Listen: the collector taps the bus the POS and the pumps share,
records every order once, and writes nothing (counted at the tap's pty).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hil import stack
from hil.stack import Mosquitto
from tests.test_relay_listen import DEMO_CONFIG, DEMO_KEYS, orders_of, overrides

ORDERS = 12
#: The POS authorises and sets prices between its reads, as a station's does.
POS_COMMANDS = ["--commands", "authorise,price", "--command-every-ms", "300"]


def dart(tmp_path: Path, broker: Mosquitto, **port: str) -> list[str]:
    return overrides(tmp_path, broker, protocol="dart", **port)


def check_commands(pos: stack.Proc) -> None:
    (done,) = [line for line in pos.snapshot() if "commands_sent" in line]
    # How many depends on the run's length (the machine's load), not on us:
    # what matters is that the line carried both kinds while orders flowed.
    assert done["commands_sent"]["authorise"] >= 1 and done["commands_sent"]["price"] >= 1
    # The pumps took them all, but for one sent before the line was up (the POS
    # starts first) or while it stopped.
    assert done["commands_acked"] >= sum(done["commands_sent"].values()) - 2


def same_orders(orders: list[dict[str, Any]], truth: list[dict[str, Any]]) -> None:
    assert len(orders) == len(truth) == ORDERS
    assert sorted((o["nozzle"], o["order_no"]) for o in orders) == sorted(
        (t["nozzle"], t["order_no"]) for t in truth
    )
    assert all(o["flags"] == [] for o in orders)


def test_dart_relay_passes_every_byte_and_records_every_order(
    tmp_path: Path, broker: Mosquitto
) -> None:
    pump_link, pos_link = tmp_path / "pump", tmp_path / "pos"
    receiver = stack.receiver(tmp_path, broker.port, DEMO_KEYS, client_id=f"rx-{tmp_path.name}")
    sim = stack.dispenser(
        tmp_path, pump_link, orders=ORDERS, nozzles=2, rate=3, seed=3, protocol="dart",
        extra=["--pumps", "2", "--record", str(tmp_path / "pump")],
    )  # fmt: skip
    pos = stack.pos(
        tmp_path, pos_link, addresses="1,2", record=tmp_path / "pos", protocol="dart",
        extra=POS_COMMANDS,
    )  # fmt: skip
    collector = stack.collector(
        tmp_path, DEMO_CONFIG,
        dart(tmp_path, broker, mode="relay", device=str(pump_link), pos_device=str(pos_link)),
    )  # fmt: skip
    try:
        truth = sim.wait_lines(lambda line: "order_no" in line, ORDERS, 90)
        orders = orders_of(receiver, ORDERS)
        pos_sales = pos.wait_lines(lambda line: "order_no" in line, ORDERS, 30)
    finally:
        pos.stop()  # stops asking, keeps the answer to its last request
        sim.stop()
        collector.stop()
        receiver.stop()
    # The POS ran the station as if the collector were a cable: it read every
    # sale itself, authorised and set prices, and the pumps acknowledged it all.
    assert {s["order_no"] for s in pos_sales} == {t["order_no"] for t in truth}
    check_commands(pos)
    # ... and the collector recorded each sale exactly once.
    same_orders(orders, truth)
    # Byte for byte, both ways.
    pos_tx, pos_rx = (tmp_path / "pos.tx").read_bytes(), (tmp_path / "pos.rx").read_bytes()
    pump_tx, pump_rx = (tmp_path / "pump.tx").read_bytes(), (tmp_path / "pump.rx").read_bytes()
    assert len(pos_tx) > 500 and len(pump_tx) > 1000
    assert pump_rx == pos_tx, "the dispenser received exactly what the POS sent"
    assert pos_rx == pump_tx, "the POS received exactly what the dispenser sent"


def test_dart_listen_records_every_order_and_writes_nothing(
    tmp_path: Path, broker: Mosquitto
) -> None:
    pump_link, pos_link, tap_link = tmp_path / "pump", tmp_path / "pos", tmp_path / "tap"
    receiver = stack.receiver(tmp_path, broker.port, DEMO_KEYS, client_id=f"rx-{tmp_path.name}")
    sim = stack.dispenser(
        tmp_path, pump_link, orders=ORDERS, nozzles=2, rate=3, seed=5, protocol="dart",
        extra=["--pumps", "2"],
    )  # fmt: skip
    pos = bus = collector = None
    try:
        # The bus opens both ends, so the POS must exist first; it starts polling
        # at once, and the tap (collector) joins the bus before the first sale.
        pos = stack.pos(tmp_path, pos_link, addresses="1,2", protocol="dart", extra=POS_COMMANDS)
        bus = stack.bus(tmp_path, pos=pos_link, pump=pump_link, tap=tap_link)
        collector = stack.collector(
            tmp_path, DEMO_CONFIG, dart(tmp_path, broker, mode="listen", device=str(tap_link))
        )
        truth = sim.wait_lines(lambda line: "order_no" in line, ORDERS, 90)
        orders = orders_of(receiver, ORDERS)
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
    same_orders(orders, truth)
    assert pos is not None
    check_commands(pos)
    assert counts is not None and counts["bus_bytes"] > 1000
    assert counts["tap_written"] == 0, "nothing is ever written to the line"
