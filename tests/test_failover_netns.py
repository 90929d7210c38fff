"""Failover between two real links (SPEC D18, F1 network loss).

hil/netns.py builds a network namespace holding mosquitto and the reference
receiver, reached over two veth pairs, "wired" and "4g", to one broker
address; the collector runs in the root namespace with both as endpoints,
each bound to its interface (SO_BINDTODEVICE). The wired link is really cut
(``ip link set … down``) and brought back; the receiver's heartbeats, alarms
and orders are what the platform would see. Skipped only where namespaces
cannot be created (not root, no iproute2), with that reason.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hil import netns, stack
from hil.stack import Proc
from uplink import links

ORDERS = 40
DEMO_CONFIG = stack.ROOT / "config" / "demo.toml"
DEMO_KEYS = stack.ROOT / "config" / "demo-keys.toml"
#: Fields the dispenser's record fixes; every one must arrive exactly.
TRUTH_FIELDS = ("nozzle", "order_no", "grade", "price", "volume", "amount", "ended_at")

_WHY_NOT = netns.unavailable()
pytestmark = pytest.mark.skipif(_WHY_NOT is not None, reason=f"no network namespaces: {_WHY_NOT}")


@dataclass
class Platform:
    work: Path
    links: netns.TwoLinks
    receiver: Proc
    procs: list[Proc]

    def lines(self, kind: str) -> list[dict[str, Any]]:
        return [line for line in self.receiver.snapshot() if line.get("type") == kind]

    def wait_link(self, name: str, timeout: float = 60) -> dict[str, Any]:
        """The next heartbeat (after now) whose ``link`` is endpoint ``name``."""
        already = len(self.lines("heartbeat"))

        def arrived() -> bool:
            return any(
                hb["body"]["link"]["name"] == name for hb in self.lines("heartbeat")[already:]
            )

        stack.wait_until(arrived, timeout, f"a heartbeat on link {name}")
        return next(
            hb["body"]["link"]
            for hb in self.lines("heartbeat")[already:]
            if hb["body"]["link"]["name"] == name
        )

    def alarms(self, code: str) -> list[dict[str, Any]]:
        return [a["record"] for a in self.lines("alarm") if a["record"]["code"] == code]

    def wait_alarm(self, code: str, state: str, count: int = 1, timeout: float = 60) -> None:
        self.receiver.wait_lines(
            lambda line: (
                line.get("type") == "alarm"
                and line["record"]["code"] == code
                and line["record"]["state"] == state
            ),
            count,
            timeout,
        )

    def start_collector(self, store: Path, pump: Path, **uplink: Any) -> Proc:
        # Each start its own log: collector.log, collector1.log, …
        """``forecourt run`` in the root namespace, with the two endpoints."""
        text = DEMO_CONFIG.read_text().replace('host = "127.0.0.1"\nport = 1883\n', "")
        assert "port = 1883" not in text
        config = self.work / "collector.toml"
        config.write_text(text)
        host, ifs = self.links.broker_host, self.links.interfaces
        endpoints = (
            f'[{{name="wired", host="{host}", interface="{ifs["wired"]}"}},'
            f' {{name="4g", host="{host}", interface="{ifs["4g"]}"}}]'
        )
        settings = {
            "keepalive_s": 10,
            "heartbeat_s": 1,
            "reconnect_min_s": 0.2,
            "reconnect_max_s": 1.0,
            "probe_primary_s": 1,
            "network_loss_after_s": 60,
            **uplink,
        }
        overrides = [
            f"store.path={store}",
            f"ports.0.device={pump}",
            "ports.0.poll_interval_ms=30",
            "log.format=json",
            f"uplink.endpoints={endpoints}",
            *(f"uplink.{k}={v}" for k, v in settings.items()),
        ]
        started = sum(1 for p in self.procs if p.name.startswith("collector"))
        proc = stack.collector(self.work, config, overrides, f"collector{started or ''}")
        self.procs.append(proc)
        return proc


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    two = netns.TwoLinks()
    procs: list[Proc] = []
    try:
        two.build()
        two.start_broker(tmp_path / "broker")
        argv = two.exec_argv(
            [sys.executable, "-m", "hil.platform", "--broker", f"127.0.0.1:{netns.BROKER_PORT}",
             "--keys", str(DEMO_KEYS), "--client-id", f"rx-{tmp_path.name}"]
        )  # fmt: skip
        receiver = Proc("receiver", argv, tmp_path)
        procs.append(receiver)
        receiver.wait_lines(lambda line: line.get("receiver") == "connected", 1, 20)
        yield Platform(tmp_path, two, receiver, procs)
    finally:
        for proc in reversed(procs):
            proc.stop()
        two.close()


def dispenser(platform: Platform, *, rate: float) -> tuple[Proc, Path]:
    pump = platform.work / "pump1"
    proc = stack.dispenser(platform.work, pump, orders=ORDERS, nozzles=4, rate=rate, seed=11)
    platform.procs.append(proc)
    return proc, pump


def assert_every_order_once(truth_proc: Proc, platform: Platform) -> None:
    """Each of the dispenser's orders reaches the platform, none twice after
    the receiver's (dev, type, rid) dedup, none altered, chains intact."""
    truth = truth_proc.wait_lines(lambda line: "order_no" in line, ORDERS, 120)
    lines = platform.receiver.wait_lines(lambda line: line.get("type") == "order", ORDERS, 120)
    got = {(r["nozzle"], r["order_no"]): r for r in (line["record"] for line in lines)}
    assert len(lines) == len(got) == ORDERS
    for expected in truth:
        record = got[(expected["nozzle"], expected["order_no"])]
        assert {k: record[k] for k in TRUTH_FIELDS} == {k: expected[k] for k in TRUTH_FIELDS}
    assert all(line["chain"] == "ok" for line in lines)


def test_wired_cut_fails_over_to_4g_and_comes_back(platform: Platform) -> None:
    """D18: cut wired → the collector moves to 4G (heartbeat link, the
    UPLINK_FAILOVER alarm); wired back → it returns (alarm cleared); every
    order arrives exactly once through both moves."""
    pump_proc, pump = dispenser(platform, rate=2.0)
    collector = platform.start_collector(platform.work / "store.sqlite", pump)
    link = platform.wait_link("wired")
    assert {k: link[k] for k in ("name", "endpoint", "interface", "primary", "connected")} == {
        "name": "wired",
        "endpoint": f"{platform.links.broker_host}:1883",
        "interface": platform.links.interfaces["wired"],
        "primary": True,
        "connected": True,
    }
    assert link["commands"]["state"] == "off", "commands are not configured here"
    platform.receiver.wait_lines(lambda line: line.get("type") == "order", 5, 60)

    platform.links.cut("wired")
    link = platform.wait_link("4g")
    assert link["interface"] == platform.links.interfaces["4g"] and link["primary"] is False
    platform.wait_alarm("UPLINK_FAILOVER", "raised")
    [raised] = platform.alarms("UPLINK_FAILOVER")
    assert raised["source"] == "uplink"
    assert raised["detail"]["from"] == "wired" and raised["detail"]["to"] == "4g"
    assert "interface down" in raised["detail"]["reason"]

    platform.links.restore("wired")
    platform.wait_link("wired")
    platform.wait_alarm("UPLINK_FAILOVER", "cleared")
    cleared = platform.alarms("UPLINK_FAILOVER")[-1]
    assert cleared["detail"] == {"from": "4g", "to": "wired"}

    assert_every_order_once(pump_proc, platform)
    assert platform.alarms("NETWORK_LOSS") == [], "4G carried on: no network loss"
    assert [a["state"] for a in platform.alarms("UPLINK_FAILOVER")] == ["raised", "cleared"]
    assert collector.stop() == 0


def test_both_links_cut_raise_network_loss_and_lose_no_order(platform: Platform) -> None:
    """F1: no endpoint reachable beyond network_loss_after_s → NETWORK_LOSS,
    stored while offline, delivered with its clear (the outage length) once
    a link is back; the orders collected meanwhile all arrive."""
    pump_proc, pump = dispenser(platform, rate=2.0)
    platform.start_collector(platform.work / "store.sqlite", pump, network_loss_after_s=2)
    platform.wait_link("wired")
    platform.receiver.wait_lines(lambda line: line.get("type") == "order", 5, 60)

    platform.links.cut("wired")
    platform.links.cut("4g")
    time.sleep(6)  # beyond the 2 s threshold; the dispenser keeps selling
    assert platform.alarms("NETWORK_LOSS") == [], "nothing can arrive while both are cut"
    platform.links.restore("4g")
    platform.wait_link("4g")
    platform.wait_alarm("NETWORK_LOSS", "cleared")
    raised, cleared = platform.alarms("NETWORK_LOSS")
    assert raised["state"] == "raised" and raised["detail"]["endpoints"] == ["wired", "4g"]
    assert raised["detail"]["after_s"] >= 2
    assert cleared["state"] == "cleared" and cleared["detail"]["endpoint"] == "4g"
    assert cleared["detail"]["outage_s"] >= 5
    platform.links.restore("wired")
    platform.wait_link("wired")
    assert_every_order_once(pump_proc, platform)


def test_an_outage_across_a_restart_is_one_network_loss(platform: Platform) -> None:
    """F1 with store first: NETWORK_LOSS raised by one run while both links
    are cut is cleared by the next run (the state read back from the store),
    with the outage counted from its stored start — one raise, one clear."""
    pump_proc, pump = dispenser(platform, rate=2.0)
    store = platform.work / "store.sqlite"
    first = platform.start_collector(store, pump, network_loss_after_s=2)
    platform.wait_link("wired")
    platform.links.cut("wired")
    platform.links.cut("4g")
    log = platform.work / "collector.log"
    stack.wait_until(lambda: '"NETWORK_LOSS"' in log.read_text(), 30, "NETWORK_LOSS stored")
    assert first.stop() == 0
    outage_started = time.monotonic()
    platform.start_collector(store, pump, network_loss_after_s=2)
    time.sleep(4)  # the second run is offline too, beyond the threshold
    platform.links.restore("wired")
    platform.wait_alarm("NETWORK_LOSS", "cleared")
    raised, cleared = platform.alarms("NETWORK_LOSS")
    assert (raised["state"], cleared["state"]) == ("raised", "cleared")
    assert cleared["detail"]["outage_s"] >= round(time.monotonic() - outage_started) - 1
    assert_every_order_once(pump_proc, platform)
    assert len(platform.alarms("NETWORK_LOSS")) == 2, "the second run raised none of its own"


def test_a_dead_path_behind_a_live_interface_is_left_by_keepalive(platform: Platform) -> None:
    """D18, the harder case: wired stays up but nothing comes back (a black
    hole upstream). MQTT keepalive (or the PUBACK timeout) ends the session,
    the bound connect to wired times out, 4G takes over; the primary's probes
    time out until the path is back, then the collector returns."""
    pump_proc, pump = dispenser(platform, rate=1.0)
    platform.start_collector(
        platform.work / "store.sqlite", pump, attempts_per_endpoint=1, probe_primary_s=1
    )
    platform.wait_link("wired")
    platform.receiver.wait_lines(lambda line: line.get("type") == "order", 3, 60)

    platform.links.black_hole("wired")
    assert platform.links.operstate("wired") == "up"
    platform.wait_link("4g", timeout=90)
    platform.wait_alarm("UPLINK_FAILOVER", "raised")
    log = platform.work / "collector.log"
    stack.wait_until(
        lambda: '"answered": false' in log.read_text(), 30, "a probe of wired timing out"
    )
    assert platform.lines("heartbeat")[-1]["body"]["link"]["name"] == "4g"
    platform.links.black_hole("wired", on=False)
    platform.wait_link("wired", timeout=60)
    platform.wait_alarm("UPLINK_FAILOVER", "cleared")
    assert_every_order_once(pump_proc, platform)


def test_the_binding_decides_the_path_not_the_routes(platform: Platform) -> None:
    """SO_BINDTODEVICE (uplink/links.py): with both routes up an unbound
    connection takes the wired one; bound to 4G it leaves from the 4G
    address; bound to a cut interface it fails although the other route
    exists, and so does the probe of the primary."""
    two = platform.links
    with socket.create_connection((two.broker_host, netns.BROKER_PORT), timeout=5) as s:
        assert s.getsockname()[0] == two.local["wired"]
    sock = links.open_connection(two.broker_host, netns.BROKER_PORT, two.interfaces["4g"], 5)
    with sock:
        assert sock.getsockname()[0] == two.local["4g"]
    assert asyncio.run(links.probe(two.broker_host, netns.BROKER_PORT, two.interfaces["wired"]))
    two.cut("wired")
    assert links.interface_down(two.interfaces["wired"])
    assert not links.interface_down(two.interfaces["4g"])
    with pytest.raises(OSError):
        links.open_connection(two.broker_host, netns.BROKER_PORT, two.interfaces["wired"], 5)
    assert not asyncio.run(links.probe(two.broker_host, netns.BROKER_PORT, two.interfaces["wired"]))
    with socket.create_connection((two.broker_host, netns.BROKER_PORT), timeout=5) as s:
        assert s.getsockname()[0] == two.local["4g"], "unbound: whatever route is left"
