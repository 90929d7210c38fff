"""Port modes relay and listen end to end (SPEC D19, D20; docs/relay.md).

Relay: POS simulator ⇄ pty ⇄ collector ⇄ pty ⇄ dispenser simulator. Every
byte each end sent arrives at the other end unchanged, while every order
is recorded and reaches the platform. Listen: the collector taps a bus the
POS and the dispenser share, records every order, and writes nothing.
"""

from __future__ import annotations

import asyncio
import os
import signal
import tty
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

from buffer.store import OrderStore
from collector.device.serialfd import LineSettings
from collector.station.nozzles import NozzleTable
from collector.station.relay import RelayPort
from collector.station.sink import PortSink
from hil import stack
from hil.stack import Mosquitto
from tests.waits import read_exactly

DEMO_CONFIG = stack.ROOT / "config" / "demo.toml"
DEMO_KEYS = stack.ROOT / "config" / "demo-keys.toml"
ORDERS = 20


def overrides(tmp_path: Path, broker: Mosquitto, **port: str) -> list[str]:
    return [
        f"store.path={tmp_path}/store.sqlite",
        f"uplink.port={broker.port}",
        "ports.0.addresses=[1, 2]",
        "uplink.reconnect_min_s=0.2",
        "log.format=json",
        *(f"ports.0.{k}={v}" for k, v in port.items()),
    ]


def orders_of(receiver: stack.Proc, count: int) -> list[dict[str, Any]]:
    lines = receiver.wait_lines(lambda line: line.get("type") == "order", count, 90)
    return [line["record"] for line in lines]


def test_relay_passes_every_byte_and_records_every_order(tmp_path: Path, broker: Mosquitto) -> None:
    pump_link, pos_link = tmp_path / "pump", tmp_path / "pos"
    receiver = stack.receiver(tmp_path, broker.port, DEMO_KEYS, client_id=f"rx-{tmp_path.name}")
    sim = stack.dispenser(
        tmp_path, pump_link, orders=ORDERS, nozzles=2, rate=6, seed=3,
        extra=["--pumps", "2", "--record", str(tmp_path / "pump")],
    )  # fmt: skip
    pos = stack.pos(tmp_path, pos_link, addresses="1,2", record=tmp_path / "pos")
    collector = stack.collector(
        tmp_path, DEMO_CONFIG,
        overrides(tmp_path, broker, mode="relay", device=str(pump_link), pos_device=str(pos_link)),
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
    # The POS ran the station as if the collector were a cable: it read and
    # confirmed every sale itself.
    assert {s["order_no"] for s in pos_sales} == {t["order_no"] for t in truth}
    # ... and the collector recorded each one, exactly once, with its nozzle key.
    assert len(orders) == ORDERS
    assert sorted((o["nozzle"], o["order_no"]) for o in orders) == sorted(
        (t["nozzle"], t["order_no"]) for t in truth
    )
    assert all(o["flags"] == [] for o in orders)
    # Byte for byte, both ways.
    pos_tx, pos_rx = (tmp_path / "pos.tx").read_bytes(), (tmp_path / "pos.rx").read_bytes()
    pump_tx, pump_rx = (tmp_path / "pump.tx").read_bytes(), (tmp_path / "pump.rx").read_bytes()
    assert len(pos_tx) > 500 and len(pump_tx) > 1000
    assert pump_rx == pos_tx, "the dispenser received exactly what the POS sent"
    assert pos_rx == pump_tx, "the POS received exactly what the dispenser sent"


class Exploding:
    """A monitor that breaks on its third chunk: a parser bug in the field."""

    def __init__(self) -> None:
        self.calls = 0

    def _parse(self, data: bytes) -> list[Any]:
        self.calls += 1
        if self.calls == 3:
            raise ValueError("parser bug")
        return []

    receive_request = receive_response = _parse


def raw_pty() -> tuple[int, int, str]:
    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    return master, slave, os.ttyname(slave)


def test_a_parser_that_dies_does_not_stop_the_bytes(tmp_path: Path) -> None:
    store = OrderStore(tmp_path / "s.sqlite")
    cst = timezone(timedelta(hours=8))
    sink = PortSink(
        number=4, store=store, nozzles=NozzleTable(), station="S", tz=cst, on_commit=lambda: None
    )
    pump_master, pump_slave, pump_dev = raw_pty()  # the dispenser's end is pump_master
    pos_master, pos_slave, pos_dev = raw_pty()  # the POS's end is pos_master
    relay = RelayPort(
        number=4,
        dispenser=LineSettings(pump_dev, 9600, 8, "N", 1),
        pos=LineSettings(pos_dev, 9600, 8, "N", 1),
        monitor=Exploding(),
        sink=sink,
    )

    async def scenario() -> tuple[bytes, bytes]:
        task = asyncio.create_task(relay.run())
        got_pump, got_pos = bytearray(), bytearray()
        for i in range(10):
            ask, answer = b"ask%d;" % i, b"answer%d;" % i
            os.write(pos_master, ask)
            os.write(pump_master, answer)
            got_pump.extend(await read_exactly(pump_master, len(ask)))
            got_pos.extend(await read_exactly(pos_master, len(answer)))
        task.cancel()
        return bytes(got_pump), bytes(got_pos)

    try:
        got_pump, got_pos = asyncio.run(scenario())
    finally:
        relay.close()
        for fd in (pump_master, pump_slave, pos_master, pos_slave):
            os.close(fd)
    assert got_pump == b"".join(b"ask%d;" % i for i in range(10))
    assert got_pos == b"".join(b"answer%d;" % i for i in range(10))
    assert relay.parsing is False and relay.stats.errors == {"parser": 1}
    assert store.writer.flush()  # the daemon's writer task would have, meanwhile
    (alarm,) = store.records("alarm")
    assert (alarm["code"], alarm["source"], alarm["state"]) == (
        "RELAY_PARSER_FAILED",
        "p04",
        "raised",
    )
    assert alarm["detail"] == {"error": "ValueError: parser bug"}


def test_listen_records_every_order_and_writes_nothing(tmp_path: Path, broker: Mosquitto) -> None:
    pump_link, pos_link, tap_link = tmp_path / "pump", tmp_path / "pos", tmp_path / "tap"
    receiver = stack.receiver(tmp_path, broker.port, DEMO_KEYS, client_id=f"rx-{tmp_path.name}")
    sim = stack.dispenser(
        tmp_path, pump_link, orders=ORDERS, nozzles=2, rate=6, seed=5, extra=["--pumps", "2"]
    )
    pos_link_proc = None
    bus = None
    collector = None
    try:
        # The bus opens both ends, so the POS must exist first; it starts polling
        # at once, and the tap (collector) joins the bus before the first sale.
        pos_link_proc = stack.pos(tmp_path, pos_link, addresses="1,2")
        bus = stack.bus(tmp_path, pos=pos_link, pump=pump_link, tap=tap_link)
        collector = stack.collector(
            tmp_path, DEMO_CONFIG, overrides(tmp_path, broker, mode="listen", device=str(tap_link))
        )
        truth = sim.wait_lines(lambda line: "order_no" in line, ORDERS, 90)
        orders = orders_of(receiver, ORDERS)
    finally:
        for proc in (collector, pos_link_proc):
            if proc is not None:
                proc.stop()
        counts = None
        if bus is not None:
            bus.stop()
            counts = bus.snapshot()[-1]
        sim.stop()
        receiver.stop()
    assert sorted((o["nozzle"], o["order_no"]) for o in orders) == sorted(
        (t["nozzle"], t["order_no"]) for t in truth
    )
    assert counts is not None and counts["bus_bytes"] > 1000
    assert counts["tap_written"] == 0, "nothing is ever written to the line"


# ---------------------------------------------------------------- Gilbarco two-wire

GILBARCO_ORDERS = 12


def gilbarco_overrides(tmp_path: Path, broker: Mosquitto, **port: str) -> list[str]:
    # Replies come 80-130 ms after a command on a real loop (protocols.md §4);
    # the simulator answers at once, so the demo's timing stands.
    return [*overrides(tmp_path, broker, **port), "ports.0.protocol=gilbarco"]


def same_orders(orders: list[dict[str, Any]], truth: list[dict[str, Any]]) -> None:
    fields = ("nozzle", "order_no", "price", "volume", "amount", "totalizer_volume_end")
    assert sorted(tuple(o[f] for f in fields) for o in orders) == sorted(
        tuple(t[f] for f in fields) for t in truth
    )


def test_gilbarco_relay_passes_every_byte_and_records_every_order(
    tmp_path: Path, broker: Mosquitto
) -> None:
    """Our poller as the POS; the simulator plays the loop's echo, which the
    relay passes to the POS like every other byte (docs/relay.md, Gilbarco)."""
    pump_link, pos_link = tmp_path / "pump", tmp_path / "pos"
    receiver = stack.receiver(tmp_path, broker.port, DEMO_KEYS, client_id=f"rx-{tmp_path.name}")
    sim = stack.dispenser(
        tmp_path, pump_link, orders=GILBARCO_ORDERS, nozzles=2, rate=4, seed=7, protocol="gilbarco",
        extra=["--pumps", "2", "--record", str(tmp_path / "pump")],
    )  # fmt: skip
    pos = stack.pos(
        tmp_path, pos_link, addresses="1,2", record=tmp_path / "pos", protocol="gilbarco"
    )
    collector = stack.collector(
        tmp_path, DEMO_CONFIG,
        gilbarco_overrides(
            tmp_path, broker, mode="relay", device=str(pump_link), pos_device=str(pos_link)
        ),
    )  # fmt: skip
    try:
        truth = sim.wait_lines(lambda line: "order_no" in line, GILBARCO_ORDERS, 90)
        orders = orders_of(receiver, GILBARCO_ORDERS)
        pos_sales = pos.wait_lines(lambda line: "order_no" in line, GILBARCO_ORDERS, 30)
    finally:
        pos.stop()
        sim.stop()
        collector.stop()
        receiver.stop()
    assert {s["order_no"] for s in pos_sales} == {t["order_no"] for t in truth}
    assert len(orders) == GILBARCO_ORDERS
    same_orders(orders, truth)
    pos_tx, pos_rx = (tmp_path / "pos.tx").read_bytes(), (tmp_path / "pos.rx").read_bytes()
    pump_tx, pump_rx = (tmp_path / "pump.tx").read_bytes(), (tmp_path / "pump.rx").read_bytes()
    assert len(pos_tx) > 4 * GILBARCO_ORDERS and len(pump_tx) > 60 * GILBARCO_ORDERS
    assert pump_rx == pos_tx, "the pumps received exactly what the POS sent"
    assert pos_rx == pump_tx, "the POS received exactly what the loop returned: echo and replies"
    assert pump_tx.startswith(pos_tx[:1]), "the loop's echo comes first"


def test_gilbarco_listen_taps_an_fcc_polled_loop_and_writes_nothing(
    tmp_path: Path, broker: Mosquitto
) -> None:
    """A master polling as the open FCC does (one reading each, totals first,
    authorise on a call) on a current loop (hil.bus --loop: the master hears
    its own bytes, the tap sees command then reply once each)."""
    pump_link, pos_link, tap_link = tmp_path / "pump", tmp_path / "pos", tmp_path / "tap"
    receiver = stack.receiver(tmp_path, broker.port, DEMO_KEYS, client_id=f"rx-{tmp_path.name}")
    # The FCC reads each transaction once; the monitor confirms it by the
    # totals before and after, so it must hear the loop before the first fill
    # (--start-on-usr2, below), and fills must not pile up on a pump faster
    # than the master reads them (rate 1 over two pumps): a simulated pump
    # queues sales, which no real one can, and shows totals past the queued
    # ones.
    sim = stack.dispenser(
        tmp_path, pump_link, orders=GILBARCO_ORDERS, nozzles=2, rate=1, seed=8, protocol="gilbarco",
        extra=["--pumps", "2", "--no-echo", "--start-on-usr2"],
    )  # fmt: skip
    pos_proc = bus = collector = None
    try:
        pos_proc = stack.pos(tmp_path, pos_link, addresses="1,2", protocol="gilbarco", master="fcc")
        bus = stack.bus(tmp_path, pos=pos_link, pump=pump_link, tap=tap_link, loop=True)
        collector = stack.collector(
            tmp_path, DEMO_CONFIG,
            gilbarco_overrides(tmp_path, broker, mode="listen", device=str(tap_link)),
        )  # fmt: skip
        stack.wait_until(
            lambda: "tap_open" in collector.log_path.read_text(), 30, "the collector's tap"
        )
        sim.signal(signal.SIGUSR2)
        truth = sim.wait_lines(lambda line: "order_no" in line, GILBARCO_ORDERS, 90)
        orders = orders_of(receiver, GILBARCO_ORDERS)
        fcc_sales = pos_proc.wait_lines(lambda line: "order_no" in line, GILBARCO_ORDERS, 30)
    finally:
        for proc in (collector, pos_proc):
            if proc is not None:
                proc.stop()
        counts = None
        if bus is not None:
            bus.stop()
            counts = bus.snapshot()[-1]
        sim.stop()
        receiver.stop()
    assert {s["order_no"] for s in fcc_sales} == {t["order_no"] for t in truth}
    same_orders(orders, truth)
    assert counts is not None and counts["bus_bytes"] > 1000
    assert counts["tap_written"] == 0, "nothing is ever written to the line"
