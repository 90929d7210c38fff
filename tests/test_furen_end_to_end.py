"""Furen Haosheng through the whole collector, in every port mode (SPEC D15,
D19, D20).

Poll: the simulated fuelling point on a pty, the collector its master with
the default options: every order reaches the platform with every field the
pump fixes, and the pump heard only sale and totals reads (its received
bytes decoded: no 30, which carries a clock, no write). Relay: a station
controller (our driver with the status on, authorising and setting prices)
⇄ collector ⇄ pump: every byte passes both ways unchanged and every order
is recorded once. Listen: a tap on the pump's RS-422 pair only records
every order once and writes nothing.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from hil import stack
from hil.stack import Mosquitto
from protocols.furen.framer import Frame, FrameDecoder
from tests.test_relay_listen import DEMO_CONFIG, DEMO_KEYS, orders_of

ORDERS = 10
#: The simulator's grades by nozzle (hil/dispenser/model.py GRADES): Furen
#: carries no grade code, the port's config names them.
GRADES = '{1 = "1092", 2 = "1095"}'
#: Seconds between a hang-up and the collector reading the sale: a few rounds.
MAX_SEEN_LAG_S = 10.0
#: A station controller: the status on (as an FCC polls), authorising and
#: setting prices between its reads.
CONTROLLER = [
    "--option", "nozzles=2", "--option", "status_with_clock=true",
    "--commands", "authorise,price", "--command-every-ms", "300",
]  # fmt: skip
EXACT_FIELDS = (
    "nozzle", "order_no", "grade", "price", "volume", "amount",
    "totalizer_volume_start", "totalizer_volume_end",
    "totalizer_amount_start", "totalizer_amount_end",
)  # fmt: skip


def furen(tmp_path: Path, broker: Mosquitto, **port: str) -> list[str]:
    return [
        f"store.path={tmp_path}/store.sqlite",
        f"uplink.port={broker.port}",
        "uplink.reconnect_min_s=0.2",
        "log.format=json",
        "ports.0.protocol=furen",
        "ports.0.addresses=[1]",
        "ports.0.furen.nozzles=2",
        f"ports.0.furen.grades={GRADES}",
        *(f"ports.0.{k}={v}" for k, v in port.items()),
    ]


def exact(orders: list[dict[str, Any]], truth: list[dict[str, Any]]) -> None:
    """Each sale once, every field the pump fixes as it fixed it."""
    assert len(orders) == len(truth) == ORDERS
    by_key = {(o["nozzle"], o["order_no"]): o for o in orders}
    assert len(by_key) == ORDERS
    for expected in truth:
        got = by_key[(expected["nozzle"], expected["order_no"])]
        assert {f: got[f] for f in EXACT_FIELDS} == {f: expected[f] for f in EXACT_FIELDS}
        lag = datetime.fromisoformat(got["ended_at"]) - datetime.fromisoformat(expected["ended_at"])
        assert -1.0 <= lag.total_seconds() <= MAX_SEEN_LAG_S
    assert all(o["flags"] == [] for o in orders)
    assert {o["nozzle"] for o in orders} == {"p01.a1.n1", "p01.a1.n2"}


def frames(data: bytes) -> list[Frame]:
    found = FrameDecoder().receive_data(data)
    assert all(isinstance(f, Frame) for f in found), "a clean pty carries whole frames"
    return [f for f in found if isinstance(f, Frame)]


def test_furen_poll_reads_every_order_with_reads_alone(tmp_path: Path, broker: Mosquitto) -> None:
    link = tmp_path / "pump"
    receiver = stack.receiver(tmp_path, broker.port, DEMO_KEYS, client_id=f"rx-{tmp_path.name}")
    sim = stack.dispenser(
        tmp_path, link, orders=ORDERS, nozzles=2, rate=3, seed=13, protocol="furen",
        fill_seconds=0.5, extra=["--record", str(tmp_path / "pump")],
    )  # fmt: skip
    overrides = furen(
        tmp_path, broker, device=str(link), poll_interval_ms="20", idle_poll_interval_ms="20"
    )
    collector = stack.collector(tmp_path, DEMO_CONFIG, overrides)
    try:
        truth = sim.wait_lines(lambda line: "order_no" in line, ORDERS, 60)
        orders = orders_of(receiver, ORDERS)
    finally:
        collector.stop()
        sim.stop()
        receiver.stop()
    exact(orders, truth)
    # SPEC D20 at the pump: everything it heard is a sale or a totals read.
    heard = frames((tmp_path / "pump.rx").read_bytes())
    assert len(heard) > 50
    assert {(f.command, len(f.data)) for f in heard} == {(0x56, 1), (0x58, 1)}


def test_furen_relay_passes_every_byte_and_records_every_order(
    tmp_path: Path, broker: Mosquitto
) -> None:
    pump_link, pos_link = tmp_path / "pump", tmp_path / "pos"
    receiver = stack.receiver(tmp_path, broker.port, DEMO_KEYS, client_id=f"rx-{tmp_path.name}")
    sim = stack.dispenser(
        tmp_path, pump_link, orders=ORDERS, nozzles=2, rate=3, seed=3, protocol="furen",
        fill_seconds=0.5, extra=["--record", str(tmp_path / "pump")],
    )  # fmt: skip
    pos = stack.pos(tmp_path, pos_link, record=tmp_path / "pos", protocol="furen", extra=CONTROLLER)
    collector = stack.collector(
        tmp_path, DEMO_CONFIG,
        furen(tmp_path, broker, mode="relay", device=str(pump_link), pos_device=str(pos_link)),
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
    # The controller ran the station as if the collector were a cable: it read
    # every sale, polled the status, authorised and set prices.
    assert {s["order_no"] for s in pos_sales} == {t["order_no"] for t in truth}
    (done,) = [line for line in pos.snapshot() if "commands_sent" in line]
    assert done["commands_sent"]["authorise"] > 3 and done["commands_sent"]["price"] > 3
    exact(orders, truth)
    pos_tx, pos_rx = (tmp_path / "pos.tx").read_bytes(), (tmp_path / "pos.rx").read_bytes()
    pump_tx, pump_rx = (tmp_path / "pump.tx").read_bytes(), (tmp_path / "pump.rx").read_bytes()
    assert len(pos_tx) > 500 and len(pump_tx) > 1000
    assert pump_rx == pos_tx, "the pump received exactly what the controller sent"
    assert pos_rx == pump_tx, "the controller received exactly what the pump sent"
    assert 0x30 in {f.command for f in frames(pump_rx)}  # the controller's status, not ours


def test_furen_listen_on_the_pumps_pair_records_every_order_and_writes_nothing(
    tmp_path: Path, broker: Mosquitto
) -> None:
    pump_link, pos_link, tap_link = tmp_path / "pump", tmp_path / "pos", tmp_path / "tap"
    receiver = stack.receiver(tmp_path, broker.port, DEMO_KEYS, client_id=f"rx-{tmp_path.name}")
    sim = stack.dispenser(
        tmp_path, pump_link, orders=ORDERS, nozzles=2, rate=3, seed=5, protocol="furen",
        fill_seconds=0.5,
    )  # fmt: skip
    pos = bus = collector = None
    try:
        pos = stack.pos(tmp_path, pos_link, protocol="furen", extra=CONTROLLER)
        bus = stack.bus(tmp_path, pos=pos_link, pump=pump_link, tap=tap_link, tap_side="pump")
        collector = stack.collector(
            tmp_path, DEMO_CONFIG, furen(tmp_path, broker, mode="listen", device=str(tap_link))
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
    exact(orders, truth)
    assert counts is not None and counts["bus_bytes"] > 1000
    assert counts["tap_written"] == 0, "nothing is ever written to the line"
