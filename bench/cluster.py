"""The uplink against a 3-node RabbitMQ 3.10 cluster: what a node's death
costs, how fast a backlog drains, what a fleet costs the cluster (docs/scaling.md).

    .venv/bin/python bench/cluster.py [--kills 5] [--freezes 3] [--drain 20000] [--fleet 100]

- kills: the real collector process (a simulated Sinopec dispenser selling
  2/s on 4 nozzles) with the three nodes as endpoints, the reference receiver
  on node 3; ``--kills`` times, the node the collector uses is SIGKILLed,
  then started again once the first order after the kill arrived, and the
  collector's return to it awaited. Once with platform commands off, once on
  (clean session; a device.status command re-sent every second from the
  kill until answered). Per kill: seconds from the SIGKILL to the next order
  at the receiver (``rx_ms``), and with commands on to the command's reply.
  Then ``--freezes`` times the node in use is frozen (SIGSTOP: its sockets
  stay open, nothing answers) until the next order arrives elsewhere, then
  killed and started again (``ack_timeout_s`` is 5 s here). The cluster
  itself waits for a frozen node until Erlang's ``net_ticktime`` declares it
  down (``--net-ticktime``; RabbitMQ's default 60 s).
- drain: ``--drain`` orders stored while the uplink was down (bench/store.py's
  orders), then the real uplink with the three nodes as endpoints drains
  them to node 1, a receiver's persistent session on node 3 (the routing
  crosses nodes, as a platform's would): orders/s until every PUBACK; the
  same to one mosquitto in the same run, for comparison.
- fleet: hil.fleet with ``--cluster`` (``--fleet`` stations at 0.5 sales/s,
  spread over the nodes); its report.

Prints one JSON object (``--json`` is accepted for bench/run.py's sake).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import structlog
from store import order  # bench/store.py

from buffer.store import OrderStore
from hil import stack
from hil.cluster import RabbitCluster
from hil.fleet.run import FleetOptions, run_fleet
from hil.platform.commands import command_body, publish_command, seal_command
from hil.stack import Mosquitto, Proc
from uplink.crypto import sm2_generate
from uplink.failover import Endpoint
from uplink.mqtt import Uplink, UplinkSettings

DEMO_CONFIG = stack.ROOT / "config" / "demo.toml"
DEMO_KEYS = stack.ROOT / "config" / "demo-keys.toml"
KID = "demo-k1"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Kills:
    """One cluster, one receiver on node 3; collectors started one after the other."""

    def __init__(self, work: Path, cluster: RabbitCluster) -> None:
        self.work, self.cluster = work, cluster
        import tomllib

        self.key = bytes.fromhex(tomllib.loads(DEMO_KEYS.read_text())[KID])
        self.rx = stack.receiver(work, cluster.node(3).mqtt_port, DEMO_KEYS, "bench-rx")
        self.platform = sm2_generate()
        self.seq = 0

    def lines(self, dev: str, kind: str) -> list[dict[str, Any]]:
        return [x for x in self.rx.snapshot() if x.get("dev") == dev and x.get("type") == kind]

    def link(self, dev: str) -> dict[str, Any] | None:
        beats = self.lines(dev, "heartbeat")
        return beats[-1]["body"]["link"] if beats else None

    def start(self, dev: str, commands: bool) -> tuple[Proc, Proc]:
        work = self.work / dev
        work.mkdir()
        text = DEMO_CONFIG.read_text().replace('host = "127.0.0.1"\nport = 1883\n', "")
        config = work / "collector.toml"
        config.write_text(text)
        endpoints = ", ".join(
            f'{{name="rabbit{n.index}", host="127.0.0.1", port={n.mqtt_port}}}'
            for n in self.cluster.nodes
        )
        pump = work / "pump1"
        sim = stack.dispenser(work, pump, orders=5000, nozzles=4, rate=2.0, seed=7)
        overrides = [
            f"device.id={dev}", f"store.path={work / 'store.sqlite'}", f"ports.0.device={pump}",
            "ports.0.poll_interval_ms=50", "log.format=json", f"uplink.endpoints=[{endpoints}]",
            "uplink.heartbeat_s=1", "uplink.keepalive_s=10", "uplink.ack_timeout_s=5",
            "uplink.reconnect_min_s=0.5", "uplink.reconnect_max_s=2",
            "uplink.attempts_per_endpoint=1", "uplink.probe_primary_s=5",
        ]  # fmt: skip
        if commands:
            device = sm2_generate()
            keyfile = work / "device-sm2.toml"
            keyfile.write_text(f'private = "{device[0]}"\npublic = "{device[1]}"\n')
            keyfile.chmod(0o600)
            (work / "platform.pub.toml").write_text(f'public = "{self.platform[1]}"\n')
            overrides += [
                f"uplink.device_key_file={keyfile}",
                f"uplink.platform_public_key_file={work / 'platform.pub.toml'}",
            ]
        collector = stack.collector(work, config, overrides)
        want = "subscribed" if commands else "off"

        def up() -> bool:
            link = self.link(dev)
            return link is not None and link["commands"]["state"] == want

        stack.wait_until(up, 120, f"{dev} connected")
        return sim, collector

    def command(self, dev: str) -> float:
        """device.status, re-sent every second until its reply: seconds taken."""
        private, public = self.platform
        body = command_body("device.status", None, private=private, public=public)
        began = time.monotonic()
        while True:
            self.seq += 1
            payload = seal_command(body, dev=dev, kid=KID, key=self.key, seq=self.seq)
            asyncio.run(publish_command("127.0.0.1", self.cluster.node(3).mqtt_port, dev, payload))
            try:
                self.rx.wait_lines(
                    lambda x: x.get("type") == "reply" and x["record"]["id"] == body["id"], 1, 1
                )
                return time.monotonic() - began
            except TimeoutError:
                if time.monotonic() - began > 120:
                    raise

    def _kill(self, dev: str, commands: bool) -> dict[str, Any]:
        """Kill the node in use while orders flow; figures; start it again and
        wait for the collector's return to it."""
        seen = len(self.lines(dev, "order"))
        stack.wait_until(lambda: len(self.lines(dev, "order")) >= seen + 4, 60, "orders flowing")
        link = self.link(dev)
        assert link is not None
        used = int(link["name"].removeprefix("rabbit"))
        kill_ms = _now_ms()
        self.cluster.node(used).kill()
        command_s = self.command(dev) if commands else None

        def after() -> list[int]:
            return [o["rx_ms"] for o in self.lines(dev, "order") if o["rx_ms"] > kill_ms]

        stack.wait_until(lambda: bool(after()), 60, "an order after the kill")
        first = min(after())
        boot_s = self.cluster.restart(used)
        home = f"rabbit{used}"
        stack.wait_until(lambda: (self.link(dev) or {}).get("name") == home, 120, "the return")
        return {
            "node": used,
            "first_order_s": round((first - kill_ms) / 1000, 2),
            "command_s": None if command_s is None else round(command_s, 2),
            "boot_s": round(boot_s, 1),
        }

    def _freeze(self, dev: str) -> dict[str, Any]:
        """Freeze the node in use (SIGSTOP) while orders flow: seconds to the
        next order at the platform; then thaw it and wait for the return."""
        seen = len(self.lines(dev, "order"))
        stack.wait_until(lambda: len(self.lines(dev, "order")) >= seen + 4, 60, "orders flowing")
        link = self.link(dev)
        assert link is not None
        used = int(link["name"].removeprefix("rabbit"))
        node = self.cluster.node(used)
        frozen_ms = _now_ms()
        node.freeze()

        def after() -> list[int]:
            return [o["rx_ms"] for o in self.lines(dev, "order") if o["rx_ms"] > frozen_ms]

        try:
            stack.wait_until(lambda: bool(after()), 180, "an order after the freeze")
        finally:
            # Killed, not thawed: a node the others declared down and that then
            # wakes up is a partitioned cluster (cluster_partition_handling =
            # ignore), a state of its own; a supervisor kills a hung node.
            node.kill()
        first = round((min(after()) - frozen_ms) / 1000, 2)
        self.cluster.restart(used)
        home = f"rabbit{used}"
        stack.wait_until(lambda: (self.link(dev) or {}).get("name") == home, 120, "the return")
        return {"node": used, "first_order_s": first}

    def rounds(self, dev: str, commands: bool, kills: int, freezes: int = 0) -> dict[str, Any]:
        sim, collector = self.start(dev, commands)
        frozen: list[dict[str, Any]] = []
        try:
            out = [self._kill(dev, commands) for _ in range(kills)]
            frozen = [self._freeze(dev) for _ in range(freezes)]
        finally:
            sim.stop()
            sold = {(x["nozzle"], x["order_no"]) for x in sim.snapshot() if "order_no" in x}
            stack.wait_until(
                lambda: len(self.lines(dev, "order")) >= len(sold), 120, "the last orders"
            )
            collector.stop()
        got = [(o["record"]["nozzle"], o["record"]["order_no"]) for o in self.lines(dev, "order")]
        return {
            "kills": out,
            "freezes": frozen,
            "first_order_s": _spread([r["first_order_s"] for r in out]),
            "first_order_after_freeze_s": _spread([r["first_order_s"] for r in frozen]),
            "sales": len(sold),
            "received_once": len(set(got)) == len(got) == len(sold) and set(got) == sold,
            "chains_ok": all(o["chain"] == "ok" for o in self.lines(dev, "order")),
        }


def _spread(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


async def _drain(store: OrderStore, endpoints: tuple[Endpoint, ...]) -> float:
    settings = UplinkSettings(
        device_id="bench-drain", host="127.0.0.1", port=endpoints[0].port, kid="k1",
        key=bytes(16), endpoints=endpoints, heartbeat_s=3600,
    )  # fmt: skip
    uplink = Uplink(settings, store, dict)
    started = time.perf_counter()
    task = asyncio.create_task(uplink.run())
    while store.unsent(0, 1):
        await asyncio.sleep(0.02)
    elapsed = time.perf_counter() - started
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return elapsed


async def _subscribed(port: int) -> None:
    """A platform's persistent session on that node, then gone (its queue stays)."""
    import aiomqtt

    async with aiomqtt.Client(
        "127.0.0.1", port, identifier="bench-platform", clean_session=False
    ) as c:
        await c.subscribe("forecourt/v1/+/up/#", qos=1)


def drain(work: Path, cluster: RabbitCluster, n: int) -> dict[str, Any]:
    items = [order(i) for i in range(n)]
    out: dict[str, Any] = {"orders": n}
    mosquitto = Mosquitto(work / "mosquitto")
    mosquitto.start()
    try:
        for name, ports, rx_port in (
            ("cluster", [node.mqtt_port for node in cluster.nodes], cluster.node(3).mqtt_port),
            ("mosquitto", [mosquitto.port], mosquitto.port),
        ):
            asyncio.run(_subscribed(rx_port))
            store = OrderStore(work / f"drain-{name}.sqlite")
            for start in range(0, n, 1000):
                store.append_orders(items[start : start + 1000])
            endpoints = tuple(Endpoint(f"n{i}", "127.0.0.1", p) for i, p in enumerate(ports))
            elapsed = asyncio.run(_drain(store, endpoints))
            out[f"{name}_orders_per_s"] = round(n / elapsed)
    finally:
        mosquitto.stop()
    return out


def main() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    parser = argparse.ArgumentParser()
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--freezes", type=int, default=3, help="with commands on, after the kills")
    parser.add_argument("--net-ticktime", type=int, default=None, help="the nodes' (default 60)")
    parser.add_argument("--drain", type=int, default=20_000)
    parser.add_argument("--fleet", type=int, default=100)
    parser.add_argument("--json", action="store_true", help="(the output is one JSON object)")
    args = parser.parse_args()
    result: dict[str, Any] = {
        "net_ticktime": args.net_ticktime,
        "bench": "cluster",
        "loadavg_start": Path("/proc/loadavg").read_text()[:14],
    }
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        work = Path(tmp)
        cluster = RabbitCluster(work / "cluster", net_ticktime=args.net_ticktime)
        try:
            cluster.start()
            if args.kills or args.freezes:
                kills = Kills(work, cluster)
                try:
                    if args.kills:
                        result["commands_off"] = kills.rounds("bench-off", False, args.kills)
                    result["commands_on"] = kills.rounds("bench-on", True, args.kills, args.freezes)
                finally:
                    kills.rx.stop()
            if args.drain:
                result["drain"] = drain(work, cluster, args.drain)
        finally:
            cluster.close()
    if args.fleet:
        fleet = run_fleet(FleetOptions(collectors=args.fleet, seconds=30.0, rate=0.5, cluster=True))
        result["fleet"] = fleet
    result["loadavg_end"] = Path("/proc/loadavg").read_text()[:14]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
