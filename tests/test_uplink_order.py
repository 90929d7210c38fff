"""Per-nozzle order at the platform, across broker flaps and a collector restart (SPEC D5, F2).

Real parts: mosquitto (stopped and started under the sender), the reference
receiver, the collector as its own process (SIGKILLed once and started
again), a dispenser simulator selling on a pty. The store starts with a
backlog, and the uplink sends batches of two records with twenty batches
awaiting their PUBACK at once (``max_inflight`` at its limit), so many
messages of one nozzle are in flight whenever the broker goes away.

What the platform sees, each record at its first arrival (the receiver drops
a repeated rid): every nozzle's orders in strictly increasing ``nseq``, 1 to
n without a gap, every chain link ``ok`` — the platform never sees an order
before the one it links to.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from buffer.store import OrderStore
from hil import stack
from hil.stack import Mosquitto

DEMO_KEYS = stack.ROOT / "config" / "demo-keys.toml"
#: Orders in the store before the collector starts, over BACKLOG_NOZZLES.
BACKLOG = 4000
BACKLOG_NOZZLES = [f"p09.a1.n{n}" for n in range(1, 5)]
#: Live sales meanwhile (one simulated pump, four nozzles).
LIVE = 12
#: Received-order counts at which the broker is stopped and started again.
FLAPS_AT = (300, 1200, 2600)
#: Received-order count at which the collector is SIGKILLed and started again.
KILL_AT = 1800
WAIT_S = 120


def write_config(work: Path, broker: int) -> Path:
    path = work / "order.toml"
    path.write_text(f"""
[device]
id = "demo-gw-01"
station = "DEMO-0001"
[store]
path = "{work / "store.sqlite"}"
[uplink]
port = {broker}
keys_file = "{DEMO_KEYS}"
kid = "demo-k1"
batch_max_records = 2
max_inflight = 20
reconnect_min_s = 0.1
reconnect_max_s = 0.5
[log]
format = "json"
[[ports]]
number = 1
device = "{work / "pump1"}"
protocol = "sinopec"
addresses = [1]
poll_interval_ms = 50
""")
    return path


def backlog(path: Path) -> None:
    store = OrderStore(path)
    orders = []
    for i in range(BACKLOG):
        nozzle = BACKLOG_NOZZLES[i % len(BACKLOG_NOZZLES)]
        fields = {"order_no": str(i), "volume": "10.00", "price": "7.85", "flags": []}
        orders.append((nozzle, fields, f"backlog:{i}"))
    store.append_orders(orders)
    store.close()


def first_arrivals(lines: list[dict[str, Any]]) -> dict[str, list[int]]:
    per_nozzle: dict[str, list[int]] = defaultdict(list)
    for line in lines:
        if line.get("type") == "order":
            per_nozzle[line["record"]["nozzle"]].append(line["record"]["nseq"])
    return per_nozzle


def test_each_nozzle_arrives_in_nseq_order_through_flaps_and_a_kill(
    tmp_path: Path, broker: Mosquitto
) -> None:
    backlog(tmp_path / "store.sqlite")
    receiver = stack.receiver(tmp_path, broker.port, DEMO_KEYS, client_id=f"rx-{tmp_path.name}")
    pump = stack.dispenser(tmp_path, tmp_path / "pump1", orders=LIVE, nozzles=4, rate=1.0)
    config = write_config(tmp_path, broker.port)
    collectors = [stack.collector(tmp_path, config, [], "collector1")]
    total = BACKLOG + LIVE

    def orders_received(n: int) -> None:
        receiver.wait_lines(lambda x: x.get("type") == "order", n, WAIT_S)

    def downs() -> int:
        return sum(c.log_path.read_text().count('"uplink_down"') for c in collectors)

    try:
        for at in sorted((*FLAPS_AT, KILL_AT)):
            orders_received(at)
            if at == KILL_AT:
                collectors[-1].kill()
                collectors.append(stack.collector(tmp_path, config, [], "collector2"))
                continue
            before = downs()
            broker.stop()
            stack.wait_until(lambda b=before: downs() > b, WAIT_S, "the sender saw the broker go")
            broker.start()
        sold = pump.wait_lines(lambda x: "order_no" in x, LIVE, WAIT_S)
        orders_received(total)
        lines = receiver.snapshot()
    finally:
        for proc in (*collectors, pump, receiver):
            proc.stop()

    down = sum(raw.count('"uplink_down"') for raw in (c.log_path.read_text() for c in collectors))
    assert down >= len(FLAPS_AT), "the broker really went away under the sender"
    arrivals = first_arrivals(lines)
    assert set(arrivals) == {*BACKLOG_NOZZLES, *(s["nozzle"] for s in sold)}
    for nozzle, seqs in arrivals.items():
        assert seqs == list(range(1, len(seqs) + 1)), f"{nozzle} arrived as {seqs[:30]}"
    assert sum(len(s) for s in arrivals.values()) == total
    broken = [x["record"]["rid"] for x in lines if x.get("type") == "order" and x["chain"] != "ok"]
    assert broken == []
