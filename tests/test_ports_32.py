"""32 dispenser ports in one event loop, mixed protocols (SPEC D15).

32 simulated dispensers (Sinopec, DART, Gilbarco in turn), 4 nozzles each,
one collector, mosquitto, the receiver. Every generated order reaches the
platform exactly once with the right nozzle key. Port 5 is unplugged for
3 s in the middle (its pty closed and its link gone): PORT_OFFLINE is
raised within 3 s, the other 31 ports keep delivering meanwhile, and once
it is plugged back it resumes with nothing lost.
"""

from __future__ import annotations

import json
import signal
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from hil import stack, station
from hil.stack import Mosquitto, Proc

DEMO_KEYS = stack.ROOT / "config" / "demo-keys.toml"
PORTS = 32
ORDERS_PER_PORT = 6
UNPLUGGED = 5
UNPLUG_S = 3


def test_32_ports_mixed_protocols_one_unplugged(tmp_path: Path, broker: Mosquitto) -> None:
    receiver = stack.receiver(tmp_path, broker.port, DEMO_KEYS, client_id=f"rx-{tmp_path.name}")
    sims: dict[int, Proc] = {}
    collector = None
    try:
        sims = station.start_dispensers(
            tmp_path, PORTS, orders=ORDERS_PER_PORT, rate=0.3,
            extra={UNPLUGGED: ["--unplug-on-usr1", str(UNPLUG_S)]},
        )  # fmt: skip
        config = station.write_config(tmp_path / "station.toml", tmp_path, broker.port, PORTS)
        collector = stack.collector(tmp_path, config, [])
        # Pull port 5's adapter once every port is collecting.
        receiver.wait_lines(lambda line: line.get("type") == "order", PORTS, 60)
        sims[UNPLUGGED].signal(signal.SIGUSR1)
        total = PORTS * ORDERS_PER_PORT
        truth = [
            line
            for sim in sims.values()
            for line in sim.wait_lines(lambda line: "order_no" in line, ORDERS_PER_PORT, 120)
        ]
        lines = receiver.wait_lines(lambda line: line.get("type") == "order", total, 120)

        def port_alarms() -> list[dict[str, Any]]:
            return [
                x for x in receiver.snapshot()
                if x.get("type") == "alarm" and x["record"]["code"] == "PORT_OFFLINE"
            ]  # fmt: skip

        stack.wait_until(lambda: len(port_alarms()) >= 2, 30, "PORT_OFFLINE raised and cleared")
    finally:
        if collector is not None:
            collector.stop()
        for sim in sims.values():
            sim.stop()
        receiver.stop()

    orders = [line["record"] for line in lines]
    assert len(orders) == total, "the receiver deduplicates on rid: one line per order"
    assert Counter((o["nozzle"], o["order_no"]) for o in orders) == Counter(
        (t["nozzle"], t["order_no"]) for t in truth
    )
    assert {o["nozzle"].split(".")[0] for o in orders} == {f"p{n:02d}" for n in sims}
    assert all(line["chain"] == "ok" for line in lines)
    assert all(o["flags"] == [] for o in orders)

    raised, cleared = (x["record"] for x in port_alarms())
    assert (raised["state"], cleared["state"]) == ("raised", "cleared")
    assert raised["source"] == cleared["source"] == f"p{UNPLUGGED:02d}"
    note = next(
        json.loads(raw)
        for raw in sims[UNPLUGGED].log_path.read_text().splitlines()
        if raw.startswith("{") and json.loads(raw).get("fault") == "unplug"
    )
    raised_ms = datetime.fromisoformat(raised["at"]).timestamp() * 1000
    cleared_ms = datetime.fromisoformat(cleared["at"]).timestamp() * 1000
    assert 0 <= raised_ms - note["wall_ms"] <= 3000, "PORT_OFFLINE within 3 s"
    # The other ports kept delivering while port 5 was out.
    meanwhile = [
        line for line in lines
        if raised_ms <= line["rx_ms"] <= cleared_ms
        and not line["record"]["nozzle"].startswith(f"p{UNPLUGGED:02d}")
    ]  # fmt: skip
    assert meanwhile, "orders of other ports arrived while port 5 was unplugged"
