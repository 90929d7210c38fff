"""Store first for every record, end to end, through a full disk (SPEC D6, D14, D17).

Real parts only: the collector as its own process with its store on a small
tmpfs this test mounts (CI runs as root), two dispenser simulators on ptys
(port 1 selling, port 2 to be unplugged), the gauge simulator on TCP, a real
mosquitto and the reference receiver. Once the station runs, the disk is
filled to the last byte; then port 2 is unplugged and plugged back, the
gauge raises and clears a tank alarm, and port 1's pump completes sales —
all while the store refuses every commit. Then space is freed.

Afterwards the receiver holds exactly what the store holds, each record once
and, per source, in the store's order: the STORE_FAULT raised and cleared,
both PORT_OFFLINE transitions, both gauge alarm transitions, every nozzle
state and every sale. The sales made while the disk was full were handed
back to the pump (not confirmed) and read from it again, none lost.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hil import stack
from hil.stack import Mosquitto
from tests.store_edit import stored_texts

DEMO_KEYS = stack.ROOT / "config" / "demo-keys.toml"
#: Sales of port 1's pump: some before the disk fills, some while it is
#: full, the rest after; one every ~3 s.
ORDERS = 7
#: Bound on each wait (a deadline to give up, not a goal).
WAIT_S = 60
#: Seconds port 2's line stays unplugged (hil.dispenser --unplug-on-usr1).
UNPLUG_S = 2
#: The gauge's tank alarm toggled by SIGUSR1: tank 1, i205 code 9 (probe out).
TANK_ALARM = ("tank:1", "PROBE_OUT_ALARM")
#: Kinds the uplink publishes (a local record, kind "detected", never is).
PUBLISHED = ("order", "nozzle", "alarm", "tank", "delivery", "leak")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "--lazy", str(mount)], check=True)


def fill(disk: Path) -> Path:
    """Write a file until the disk has no byte left; it is the space freed later."""
    filler = disk / "filler"
    chunk = b"\0" * 65536
    with open(filler, "wb", buffering=0) as f:
        while True:
            try:
                f.write(chunk)
            except OSError:
                if len(chunk) == 1:
                    break
                chunk = chunk[: len(chunk) // 2]
    return filler


def config(work: Path, disk: Path, broker: int, gauge: int) -> Path:
    path = work / "station.toml"
    ports = ""
    for number in (1, 2):
        ports += f"""
[[ports]]
number = {number}
device = "{work / f"port{number}"}"
protocol = "sinopec"
addresses = [1]
poll_interval_ms = 100
response_timeout_ms = 300
"""
    path.write_text(f"""
[device]
id = "demo-gw-01"
station = "DEMO-0001"
[store]
path = "{disk / "store.sqlite"}"
[uplink]
port = {broker}
keys_file = "{DEMO_KEYS}"
kid = "demo-k1"
batch_max_records = 20
reconnect_min_s = 0.2
reconnect_max_s = 1.0
[log]
format = "json"
[gauge]
enabled = true
link = "tcp"
port = {gauge}
inventory_s = 1.0
deliveries_s = 2.0
alarms_s = 0.5
leak_s = 5.0
[[tanks]]
number = 1
grade = "92"
declared_capacity_l = 39269.91
nozzles = ["p01.a1.n1", "p01.a1.n2"]
{ports}""")
    return path


def log_events(proc: stack.Proc, event: str) -> list[dict[str, Any]]:
    out = []
    for raw in proc.log_path.read_text().splitlines():
        if f'"{event}"' in raw:
            line = json.loads(raw)
            if line.get("event") == event:
                out.append(line)
    return out


def wait_log(proc: stack.Proc, event: str, what: str, **fields: Any) -> None:
    def seen() -> bool:
        return any(
            all(line.get(k) == v for k, v in fields.items()) for line in log_events(proc, event)
        )

    stack.wait_until(seen, WAIT_S, f"{what} (log: {proc.log_path})")


def stored_rids(disk: Path) -> set[tuple[str, str]]:
    """(kind, rid) of every published kind the store holds now (read-only, beside
    the running collector: WAL lets a reader in)."""
    uri = f"file:{disk / 'store.sqlite'}?mode=ro"
    with sqlite3.connect(uri, uri=True) as db:
        return {
            (kind, json.loads(text)["rid"]) for kind in PUBLISHED for text in stored_texts(db, kind)
        }


def source_of(kind: str, record: dict[str, Any]) -> Any:
    """What a record's order is kept per: a nozzle, an alarm's (source, code), a tank."""
    if kind in ("order", "nozzle"):
        return record["nozzle"]
    if kind == "alarm":
        return (record["source"], record["code"])
    return record.get("tank")


def test_nothing_is_lost_or_doubled_through_a_full_disk(
    tmp_path: Path, small_disk: Path, broker: Mosquitto
) -> None:
    receiver = stack.receiver(tmp_path, broker.port, DEMO_KEYS, client_id=f"rx-{tmp_path.name}")
    selling = stack.dispenser(
        tmp_path, tmp_path / "port1", orders=ORDERS, nozzles=2, rate=0.35, fill_seconds=0.5,
        name="selling",
    )  # fmt: skip
    unplugged = stack.dispenser(
        tmp_path, tmp_path / "port2", orders=0, nozzles=1, port_number=2,
        extra=["--unplug-on-usr1", str(UNPLUG_S)], name="unplugged",
    )  # fmt: skip
    gauge_port = stack.free_port()
    gauge = stack.atg(tmp_path, tanks=1, tcp=gauge_port, extra=["--alarm-on-usr1", "1:9"])
    collector = stack.collector(tmp_path, config(tmp_path, small_disk, broker.port, gauge_port), [])
    procs = [collector, selling, unplugged, gauge, receiver]
    try:
        receiver.wait_lines(lambda x: x.get("type") == "order", 1, WAIT_S)
        receiver.wait_lines(lambda x: x.get("type") == "tank", 1, WAIT_S)
        filler = fill(small_disk)
        wait_log(collector, "store_refused_records", "the store refusing a commit")
        before_full = len(selling.snapshot())

        unplugged.signal(signal.SIGUSR1)
        wait_log(collector, "alarm", "PORT_OFFLINE raised", code="PORT_OFFLINE", raised=True)
        gauge.signal(signal.SIGUSR1)
        wait_log(collector, "gauge_alarm", "the tank alarm raised", code=TANK_ALARM[1],
                 state="raised")  # fmt: skip
        wait_log(collector, "alarm", "PORT_OFFLINE cleared", code="PORT_OFFLINE", raised=False)
        # A sale completed while full: the pump offered it, the store refused it.
        selling.wait_lines(lambda x: "order_no" in x, before_full + 1, WAIT_S)
        stack.wait_until(
            lambda: (
                {x["order_no"] for x in selling.snapshot()[before_full:]}
                & {x["order_no"] for x in log_events(collector, "order_not_stored")}
            ),
            WAIT_S,
            "a sale made while full handed back to its pump",
        )
        gauge.signal(signal.SIGUSR1)
        wait_log(collector, "gauge_alarm", "the tank alarm cleared", code=TANK_ALARM[1],
                 state="cleared")  # fmt: skip
        handed_back = {x["order_no"] for x in log_events(collector, "order_not_stored")}

        filler.unlink()  # space again
        sold = selling.wait_lines(lambda x: "order_no" in x, ORDERS, WAIT_S)
        receiver.wait_lines(lambda x: x.get("type") == "order", ORDERS, WAIT_S)

        def alarms_in() -> set[tuple[str, str, str]]:
            return {
                (x["record"]["source"], x["record"]["code"], x["record"]["state"])
                for x in receiver.snapshot()
                if x.get("type") == "alarm"
            }

        expected = {
            ("store", "STORE_FAULT", "raised"), ("store", "STORE_FAULT", "cleared"),
            ("p02", "PORT_OFFLINE", "raised"), ("p02", "PORT_OFFLINE", "cleared"),
            (*TANK_ALARM, "raised"), (*TANK_ALARM, "cleared"),
        }  # fmt: skip
        stack.wait_until(lambda: expected <= alarms_in(), WAIT_S, "every alarm at the platform")
        # Quiet now: without pumps and gauge the collector makes nothing new once
        # it said they are gone; then the platform must hold all the store holds.
        for proc in (selling, unplugged, gauge):
            proc.stop()
        gone = {("p01", "PORT_OFFLINE", "raised"), ("gauge", "ATG_OFFLINE", "raised")}
        stack.wait_until(lambda: gone <= alarms_in(), WAIT_S, "the parts said gone")

        def all_received() -> bool:
            got = {(x["type"], x["record"]["rid"]) for x in receiver.snapshot() if "record" in x}
            return stored_rids(small_disk) <= got

        stack.wait_until(all_received, WAIT_S, "every stored record at the platform")
        assert collector.stop() == 0
        stored = {}
        with sqlite3.connect(small_disk / "store.sqlite") as db:
            for kind in PUBLISHED:
                stored[kind] = [json.loads(t) for t in stored_texts(db, kind)]
    finally:
        for proc in procs:
            proc.stop()

    # Nothing the collector decided was left behind by its writer.
    assert log_events(collector, "record_not_taken") == []
    lines = receiver.snapshot()
    for kind in PUBLISHED:
        got = [x["record"] for x in lines if x.get("type") == kind]
        rids = [r["rid"] for r in got]
        assert len(rids) == len(set(rids)), f"{kind}: a record reached the platform twice"
        want = {r["rid"] for r in stored[kind]}
        assert set(rids) >= want, f"{kind}: stored but never received: {want - set(rids)}"
        for source in {source_of(kind, r) for r in stored[kind]}:
            mine = [r["rid"] for r in stored[kind] if source_of(kind, r) == source]
            theirs = [r["rid"] for r in got if source_of(kind, r) == source and r["rid"] in want]
            assert theirs == mine, f"{kind} {source}: not in the store's order"

    # Every sale exactly once, and those made while full came from the pump again.
    orders = {(r["nozzle"], r["order_no"]) for r in stored["order"]}
    assert orders == {(s["nozzle"], s["order_no"]) for s in sold}
    assert len(stored["order"]) == ORDERS
    assert handed_back and handed_back <= {s["order_no"] for s in sold}
    # The alarms of the fault, each raised before it was cleared.
    sequence = [(a["source"], a["code"], a["state"]) for a in stored["alarm"]]
    for source, code in (("store", "STORE_FAULT"), ("p02", "PORT_OFFLINE"), TANK_ALARM):
        mine = [s for src, c, s in sequence if (src, c) == (source, code)]
        assert mine[:2] == ["raised", "cleared"], (source, code, mine)
    fault = next(a for a in stored["alarm"] if a["code"] == "STORE_FAULT")
    assert fault["detail"]["refused_commits"] >= 1 and fault["detail"]["not_taken"] == 0
    # Every state change of a nozzle that sold while full is there, in order.
    states = [r["state"] for r in stored["nozzle"] if r["nozzle"] == "p01.a1.n1" and r["state"]]
    assert states.count("idle") >= 2 and "fuelling" in states
