"""The totals-keyed families (CK1313, Lanfeng) through the whole collector.

Poll: the simulator on a pty with two fuelling points, the collector polling
it, orders across real mosquitto to the receiver, every field the pump fixes
exact. Relay: POS simulator ⇄ collector ⇄ dispenser simulator, byte for
byte, every order once. Listen (where the family allows it): the collector
on a tap of the **pump's transmit pair** only (4-wire loop: one pair per
direction), every order once, nothing written.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from config.loader import ConfigError, load_config
from hil import stack
from hil.stack import Mosquitto, Proc
from tests.test_config import MINIMAL_FOR_MODES
from tests.test_relay_listen import orders_of

ORDERS = 10
DEMO_CONFIG = stack.ROOT / "config" / "demo.toml"
DEMO_KEYS = stack.ROOT / "config" / "demo-keys.toml"
#: A sale with no time on the wire is stamped when the collector reads it:
#: after the hang-up by at most the poll round, much longer only on a machine
#: too loaded to poll (the bound tells "when seen" from a wrong clock).
MAX_SEEN_LAG_S = 30.0
EXACT_FIELDS = (
    "nozzle", "order_no", "grade", "price", "volume", "amount",
    "totalizer_volume_start", "totalizer_volume_end",
    "totalizer_amount_start", "totalizer_amount_end",
)  # fmt: skip

#: Families here, and whether a tap on the pump's pair can record their sales
#: (Lanfeng: a reply does not say which question it answers; relay only).
FAMILIES = {"ck1313": True, "lanfeng": False}


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for proc in reversed(started):
        proc.stop()


def overrides(tmp_path: Path, broker: Mosquitto, protocol: str, **port: str) -> list[str]:
    return [
        f"store.path={tmp_path}/store.sqlite",
        f"uplink.port={broker.port}",
        f"ports.0.protocol={protocol}",
        "ports.0.addresses=[1, 2]",
        "ports.0.poll_interval_ms=20",
        "uplink.reconnect_min_s=0.2",
        "log.format=json",
        *(f"ports.0.{k}={v}" for k, v in port.items()),
    ]


def dispenser(tmp_path: Path, link: Path, protocol: str, seed: int, *extra: str) -> Proc:
    return stack.dispenser(
        tmp_path, link, orders=ORDERS, nozzles=1, rate=4, seed=seed, protocol=protocol,
        fill_seconds=0.3, extra=["--pumps", "2", *extra],
    )  # fmt: skip


@pytest.mark.parametrize("protocol", sorted(FAMILIES))
def test_poll_orders_reach_the_platform_exactly(
    protocol: str, tmp_path: Path, broker: Mosquitto, procs: list[Proc]
) -> None:
    link = tmp_path / "pump"
    procs.append(stack.receiver(tmp_path, broker.port, DEMO_KEYS, client_id=f"rx-{protocol}"))
    receiver = procs[-1]
    procs.append(dispenser(tmp_path, link, protocol, 11))
    sim = procs[-1]
    procs.append(
        stack.collector(
            tmp_path, DEMO_CONFIG, overrides(tmp_path, broker, protocol, device=str(link))
        )
    )
    truth = sim.wait_lines(lambda line: "order_no" in line, ORDERS, 60)
    lines = receiver.wait_lines(lambda line: line.get("type") == "order", ORDERS, 90)
    records = [line["record"] for line in lines]
    assert len(records) == ORDERS and all(line["chain"] == "ok" for line in lines)
    by_key = {(r["nozzle"], r["order_no"]): r for r in records}
    assert len(by_key) == ORDERS
    for expected in truth:
        got: dict[str, Any] = by_key[(expected["nozzle"], expected["order_no"])]
        assert {f: got[f] for f in EXACT_FIELDS} == {f: expected[f] for f in EXACT_FIELDS}
        assert got["flags"] == []
        lag = (
            datetime.fromisoformat(got["ended_at"]) - datetime.fromisoformat(expected["ended_at"])
        ).total_seconds()
        assert -1.0 <= lag <= MAX_SEEN_LAG_S, (got["ended_at"], expected["ended_at"])
    assert {r["nozzle"] for r in records} == {"p01.a1.n1", "p01.a2.n1"}


@pytest.mark.parametrize("protocol", sorted(FAMILIES))
def test_relay_passes_every_byte_and_records_every_order(
    protocol: str, tmp_path: Path, broker: Mosquitto, procs: list[Proc]
) -> None:
    pump_link, pos_link = tmp_path / "pump", tmp_path / "pos"
    procs.append(stack.receiver(tmp_path, broker.port, DEMO_KEYS, client_id=f"rx-r-{protocol}"))
    receiver = procs[-1]
    procs.append(dispenser(tmp_path, pump_link, protocol, 3, "--record", str(tmp_path / "pump")))
    sim = procs[-1]
    # The POS's reply timeout is relaxed: on a loaded test machine its own
    # late reads are not the relay's subject (bench/relay_latency.py is).
    pos = stack.pos(
        tmp_path, pos_link, addresses="1,2", record=tmp_path / "pos", protocol=protocol,
        extra=("--timeout-ms", "1000"),
    )  # fmt: skip
    procs.append(pos)
    relay = overrides(
        tmp_path, broker, protocol, mode="relay", device=str(pump_link), pos_device=str(pos_link)
    )
    procs.append(stack.collector(tmp_path, DEMO_CONFIG, relay))
    truth = sim.wait_lines(lambda line: "order_no" in line, ORDERS, 90)
    orders = orders_of(receiver, ORDERS)
    pos_sales = pos.wait_lines(lambda line: "order_no" in line, ORDERS, 30)
    pos.stop()  # stops asking, keeps the answer to its last request
    sim.stop()
    assert {s["order_no"] for s in pos_sales} == {t["order_no"] for t in truth}
    assert sorted((o["nozzle"], o["order_no"]) for o in orders) == sorted(
        (t["nozzle"], t["order_no"]) for t in truth
    )
    assert all(o["flags"] == [] for o in orders), [o["flags"] for o in orders if o["flags"]]
    pos_tx, pos_rx = (tmp_path / "pos.tx").read_bytes(), (tmp_path / "pos.rx").read_bytes()
    pump_tx, pump_rx = (tmp_path / "pump.tx").read_bytes(), (tmp_path / "pump.rx").read_bytes()
    assert len(pos_tx) > 200 and len(pump_tx) > 500  # 4-byte questions, longer answers
    assert pump_rx == pos_tx, "the dispenser received exactly what the POS sent"
    assert pos_rx == pump_tx, "the POS received exactly what the dispenser sent"


@pytest.mark.parametrize("protocol", sorted(p for p, tap in FAMILIES.items() if tap))
def test_listen_on_the_pumps_pair_records_every_order_and_writes_nothing(
    protocol: str, tmp_path: Path, broker: Mosquitto, procs: list[Proc]
) -> None:
    pump_link, pos_link, tap_link = tmp_path / "pump", tmp_path / "pos", tmp_path / "tap"
    procs.append(stack.receiver(tmp_path, broker.port, DEMO_KEYS, client_id=f"rx-l-{protocol}"))
    receiver = procs[-1]
    procs.append(dispenser(tmp_path, pump_link, protocol, 5))
    sim = procs[-1]
    # The bus opens both ends, so the POS must exist first.
    procs.append(stack.pos(tmp_path, pos_link, addresses="1,2", protocol=protocol))
    bus = stack.bus(tmp_path, pos=pos_link, pump=pump_link, tap=tap_link, tap_side="pump")
    procs.append(bus)
    listen = overrides(tmp_path, broker, protocol, mode="listen", device=str(tap_link))
    collector = stack.collector(tmp_path, DEMO_CONFIG, listen)
    procs.append(collector)
    truth = sim.wait_lines(lambda line: "order_no" in line, ORDERS, 90)
    orders = orders_of(receiver, ORDERS)
    collector.stop()
    bus.stop()
    counts = bus.snapshot()[-1]
    assert sorted((o["nozzle"], o["order_no"]) for o in orders) == sorted(
        (t["nozzle"], t["order_no"]) for t in truth
    )
    assert counts["bus_bytes"] > 1000
    assert counts["tap_written"] == 0, "nothing is ever written to the line"


@pytest.mark.parametrize("protocol", sorted(FAMILIES))
def test_config_accepts_poll_and_relay_and_listen_where_a_tap_can_read(
    protocol: str, tmp_path: Path
) -> None:
    def port(mode: str, pos: str | None = None) -> Path:
        path = tmp_path / f"{mode}.toml"
        extra = f'pos_device = "{pos}"\n' if pos else ""
        path.write_text(
            MINIMAL_FOR_MODES
            + f'[[ports]]\nnumber = 1\ndevice = "/dev/ttyS0"\nprotocol = "{protocol}"\n'
            + f'addresses = [1, 2]\nmode = "{mode}"\n{extra}'
        )
        return path

    load_config(port("poll"))
    load_config(port("relay", "/dev/ttyS1"))
    if FAMILIES[protocol]:
        load_config(port("listen"))
    else:
        with pytest.raises(ConfigError, match=f"a {protocol} bus cannot be told apart"):
            load_config(port("listen"))
