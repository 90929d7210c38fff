"""Changkong Uninfo through the whole collector, in every port mode (SPEC D15,
D19, D20).

Poll: two simulated fuelling points on a pty, the collector their master
with the default options: every order reaches the platform with every field
the pumps fix, and the pumps heard only reads (their received bytes
decoded). Relay, on a loop that echoes: a station controller (our driver,
authorising and setting prices) ⇄ collector ⇄ pumps: every byte passes both
ways unchanged and every order is recorded once. Listen: a tap on the loop
(the controller hears its own echo, the tap each byte once) records every
order once and writes nothing.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from hil import stack
from hil.stack import Mosquitto
from protocols.uninfo.framer import Request, RequestReader
from tests.test_relay_listen import DEMO_CONFIG, DEMO_KEYS, orders_of

ORDERS = 10
#: The simulator's grades by nozzle (hil/dispenser/model.py GRADES): Uninfo
#: carries no grade code, the port's config names them.
GRADES = '{1 = "1092", 2 = "1095"}'
#: Seconds between a hang-up and the collector reading the sale: a few turns.
MAX_SEEN_LAG_S = 10.0
#: A station controller on an echoing loop, authorising and setting prices
#: between its reads.
CONTROLLER = [
    "--option", "echo=true", "--commands", "authorise,price", "--command-every-ms", "300",
]  # fmt: skip
EXACT_FIELDS = (
    "nozzle", "order_no", "grade", "price", "volume", "amount",
    "totalizer_volume_start", "totalizer_volume_end",
    "totalizer_amount_start", "totalizer_amount_end",
)  # fmt: skip


def uninfo(tmp_path: Path, broker: Mosquitto, **port: str) -> list[str]:
    return [
        f"store.path={tmp_path}/store.sqlite",
        f"uplink.port={broker.port}",
        "uplink.reconnect_min_s=0.2",
        "log.format=json",
        "ports.0.protocol=uninfo",
        "ports.0.addresses=[1, 2]",
        f"ports.0.uninfo.grades={GRADES}",
        *(f"ports.0.{k}={v}" for k, v in port.items()),
    ]


def sim(tmp_path: Path, link: Path, seed: int, *extra: str) -> stack.Proc:
    return stack.dispenser(
        tmp_path, link, orders=ORDERS, nozzles=2, rate=3, seed=seed, protocol="uninfo",
        fill_seconds=0.5, extra=["--pumps", "2", *extra],
    )  # fmt: skip


def exact(orders: list[dict[str, Any]], truth: list[dict[str, Any]]) -> None:
    """Each sale once, every field the pumps fix as they fixed it."""
    assert len(orders) == len(truth) == ORDERS
    by_key = {(o["nozzle"], o["order_no"]): o for o in orders}
    assert len(by_key) == ORDERS
    for expected in truth:
        got = by_key[(expected["nozzle"], expected["order_no"])]
        assert {f: got[f] for f in EXACT_FIELDS} == {f: expected[f] for f in EXACT_FIELDS}
        lag = datetime.fromisoformat(got["ended_at"]) - datetime.fromisoformat(expected["ended_at"])
        assert -1.0 <= lag.total_seconds() <= MAX_SEEN_LAG_S
    assert all(o["flags"] == [] for o in orders)
    assert {o["nozzle"][:6] for o in orders} == {"p01.a1", "p01.a2"}


def requests(data: bytes) -> list[Request]:
    found = RequestReader().receive_data(data)
    assert all(isinstance(r, Request) for r in found), "a clean pty carries whole requests"
    return [r for r in found if isinstance(r, Request)]


def test_uninfo_poll_reads_every_order_with_reads_alone(tmp_path: Path, broker: Mosquitto) -> None:
    link = tmp_path / "pump"
    receiver = stack.receiver(tmp_path, broker.port, DEMO_KEYS, client_id=f"rx-{tmp_path.name}")
    pumps = sim(tmp_path, link, 13, "--record", str(tmp_path / "pump"))
    overrides = uninfo(
        tmp_path, broker, device=str(link), poll_interval_ms="20", idle_poll_interval_ms="20"
    )
    collector = stack.collector(tmp_path, DEMO_CONFIG, overrides)
    try:
        truth = pumps.wait_lines(lambda line: "order_no" in line, ORDERS, 60)
        orders = orders_of(receiver, ORDERS)
    finally:
        collector.stop()
        pumps.stop()
        receiver.stop()
    exact(orders, truth)
    # SPEC D20 at the pumps: everything they heard is a read.
    heard = requests((tmp_path / "pump.rx").read_bytes())
    assert len(heard) > 50
    assert {r.command for r in heard} == {0xA, 0x8, 0xB, 0xC}


def test_uninfo_relay_on_an_echoing_loop_passes_every_byte_and_records_every_order(
    tmp_path: Path, broker: Mosquitto
) -> None:
    pump_link, pos_link = tmp_path / "pump", tmp_path / "pos"
    receiver = stack.receiver(tmp_path, broker.port, DEMO_KEYS, client_id=f"rx-{tmp_path.name}")
    pumps = sim(tmp_path, pump_link, 3, "--option", "echo=true", "--record", str(tmp_path / "pump"))
    pos = stack.pos(
        tmp_path, pos_link, addresses="1,2", record=tmp_path / "pos", protocol="uninfo",
        extra=CONTROLLER,
    )  # fmt: skip
    collector = stack.collector(
        tmp_path, DEMO_CONFIG,
        uninfo(tmp_path, broker, mode="relay", device=str(pump_link), pos_device=str(pos_link),
               **{"uninfo.echo": "true"}),
    )  # fmt: skip
    try:
        truth = pumps.wait_lines(lambda line: "order_no" in line, ORDERS, 90)
        orders = orders_of(receiver, ORDERS)
        pos_sales = pos.wait_lines(lambda line: "order_no" in line, ORDERS, 30)
    finally:
        pos.stop()  # stops asking, keeps the answer to its last request
        pumps.stop()
        collector.stop()
        receiver.stop()
    # The controller ran the station as if the collector were a cable: it read
    # every sale, authorised and set prices.
    assert {s["order_no"] for s in pos_sales} == {t["order_no"] for t in truth}
    (done,) = [line for line in pos.snapshot() if "commands_sent" in line]
    assert done["commands_sent"]["authorise"] > 3 and done["commands_sent"]["price"] > 3
    exact(orders, truth)
    pos_tx, pos_rx = (tmp_path / "pos.tx").read_bytes(), (tmp_path / "pos.rx").read_bytes()
    pump_tx, pump_rx = (tmp_path / "pump.tx").read_bytes(), (tmp_path / "pump.rx").read_bytes()
    assert len(pos_tx) > 150 and len(pump_tx) > 1000  # requests are one byte each
    assert pump_rx == pos_tx, "the pumps received exactly what the controller sent"
    assert pos_rx == pump_tx, "the controller received exactly what the pumps sent"
    assert {0x9, 0xD} <= {r.command for r in requests(pump_rx)}  # the controller's, not ours


def test_uninfo_listen_on_the_loop_records_every_order_and_writes_nothing(
    tmp_path: Path, broker: Mosquitto
) -> None:
    pump_link, pos_link, tap_link = tmp_path / "pump", tmp_path / "pos", tmp_path / "tap"
    receiver = stack.receiver(tmp_path, broker.port, DEMO_KEYS, client_id=f"rx-{tmp_path.name}")
    pumps = sim(tmp_path, pump_link, 5)
    pos = bus = collector = None
    try:
        pos = stack.pos(tmp_path, pos_link, addresses="1,2", protocol="uninfo", extra=CONTROLLER)
        bus = stack.bus(tmp_path, pos=pos_link, pump=pump_link, tap=tap_link, loop=True)
        collector = stack.collector(
            tmp_path, DEMO_CONFIG, uninfo(tmp_path, broker, mode="listen", device=str(tap_link))
        )
        truth = pumps.wait_lines(lambda line: "order_no" in line, ORDERS, 90)
        orders = orders_of(receiver, ORDERS)
    finally:
        for proc in (collector, pos):
            if proc is not None:
                proc.stop()
        counts = None
        if bus is not None:
            bus.stop()
            counts = bus.snapshot()[-1]
        pumps.stop()
        receiver.stop()
    exact(orders, truth)
    assert counts is not None and counts["bus_bytes"] > 1000
    assert counts["tap_written"] == 0, "nothing is ever written to the line"
