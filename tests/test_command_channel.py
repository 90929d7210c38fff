"""Orders never wait for the command channel, and a broker that closes or
freezes is left from what the transport says (docs/uplink-protocol.md
"Command channel", "Session").

The coupling a clustered broker showed (RabbitMQ refusing the SUBSCRIBE of
a session whose queue was on a dead node) reproduced on one machine with real
mosquittos: one whose dynamic security plugin refuses every SUBSCRIBE to the
command topic (hil/broker_acl.py: SUBACK 0x80), one frozen with SIGSTOP, one
killed with SIGKILL. The first test is the whole collector process with
commands on; the others run the real uplink in-process against real brokers
and a real store. The three-node RabbitMQ cluster is tests_cluster/
(``make cluster-test``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
import structlog
from structlog.testing import capture_logs

from buffer.store import OrderStore
from hil import stack
from hil.broker_acl import refusing
from hil.stack import Mosquitto
from uplink import mqtt
from uplink.crypto import sm2_generate
from uplink.failover import Endpoint
from uplink.mqtt import Uplink, UplinkSettings

DEMO_CONFIG = stack.ROOT / "config" / "demo.toml"
DEMO_KEYS = stack.ROOT / "config" / "demo-keys.toml"
COMMANDS = "forecourt/v1/+/down/cmd"
ORDERS = 8


def secret(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


@pytest.fixture
def refusing_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path / "refusing", extra=refusing(tmp_path / "dynsec", COMMANDS))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def test_orders_flow_while_the_broker_refuses_the_command_subscription(
    tmp_path: Path, refusing_broker: Mosquitto
) -> None:
    """Commands on (both SM2 key files), every SUBSCRIBE to down/cmd refused:
    every order still arrives, intact and once; the platform receives
    COMMAND_CHANNEL_DOWN; ``forecourt uplink`` tells publishing (connected)
    from the command channel (refused, and why)."""
    platform, device = sm2_generate(), sm2_generate()
    secret(tmp_path / "device-sm2.toml", f'private = "{device[0]}"\npublic = "{device[1]}"\n')
    (tmp_path / "platform.pub.toml").write_text(f'public = "{platform[1]}"\n')
    port = refusing_broker.port
    procs = [stack.receiver(tmp_path, port, DEMO_KEYS, client_id=f"rx-{tmp_path.name}")]
    try:
        link = tmp_path / "pump1"
        procs.append(stack.dispenser(tmp_path, link, orders=ORDERS, nozzles=2, rate=4, seed=5))
        overrides = [
            f"store.path={tmp_path / 'store.sqlite'}",
            f"ports.0.device={link}",
            f"uplink.port={port}",
            f"uplink.device_key_file={tmp_path / 'device-sm2.toml'}",
            f"uplink.platform_public_key_file={tmp_path / 'platform.pub.toml'}",
            "uplink.reconnect_min_s=0.2",
            "uplink.command_retry_max_s=1",
            "uplink.command_down_alarm_s=2",
            "uplink.heartbeat_s=1",
            "log.format=json",
        ]
        collector = stack.collector(tmp_path, DEMO_CONFIG, overrides)
        procs.append(collector)
        rx, truth = procs[0], procs[1]
        sold = truth.wait_lines(lambda line: "order_no" in line, ORDERS, 60)
        orders = rx.wait_lines(lambda line: line.get("type") == "order", ORDERS, 60)
        assert sorted((o["record"]["nozzle"], o["record"]["order_no"]) for o in orders) == sorted(
            (s["nozzle"], s["order_no"]) for s in sold
        )
        assert all(o["chain"] == "ok" for o in orders)
        [alarm] = rx.wait_lines(
            lambda line: (
                line.get("type") == "alarm" and line["record"]["code"] == "COMMAND_CHANNEL_DOWN"
            ),
            1,
            60,
        )
        assert alarm["record"]["state"] == "raised" and alarm["record"]["source"] == "uplink"
        assert "0x80" in alarm["record"]["detail"]["reason"]
        status = json.loads(
            subprocess.run(
                [sys.executable, "-m", "collector", "uplink", "--json", "--config",
                 str(DEMO_CONFIG), "--socket", str(tmp_path / "control.sock")],
                cwd=stack.ROOT, capture_output=True, text=True, timeout=30, check=True,
            ).stdout
        )  # fmt: skip
        assert status["publishing"]["connected"] is True and status["connected"] is True
        assert isinstance(status["publishing"]["last_puback_ms"], int)
        commands = status["commands"]
        assert commands["state"] in ("refused", "subscribing") and "0x80" in commands["reason"]
        assert status["last_error"]["part"] == "commands" and not status["last_error"]["old"]
        # The heartbeat says the same to the platform, with the reason.
        rx.wait_lines(
            lambda line: (
                line.get("type") == "heartbeat"
                and line["body"]["link"]["commands"].get("reason", "").endswith("0x80")
            ),
            1,
            30,
        )
        assert "Future exception was never retrieved" not in collector.log_path.read_text()
    finally:
        for proc in reversed(procs):
            proc.stop()


# --- the uplink in-process, against real brokers ------------------------------


def settings(*brokers: Mosquitto, **kw: Any) -> UplinkSettings:
    endpoints = tuple(Endpoint(f"b{i}", "127.0.0.1", b.port) for i, b in enumerate(brokers))
    base: dict[str, Any] = {
        "device_id": "dev-cc", "host": "127.0.0.1", "port": brokers[0].port, "kid": "k1",
        "key": bytes(16), "endpoints": endpoints, "heartbeat_s": 0.5, "reconnect_min_s": 0.2,
        "reconnect_max_s": 0.5, "attempts_per_endpoint": 1, "probe_primary_s": 3600.0,
    }  # fmt: skip
    return UplinkSettings(**{**base, **kw})


class Watched:
    """Asyncio's reports of exceptions nobody retrieved, during a run."""

    def __init__(self) -> None:
        self.reports: list[str] = []

    def handler(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        self.reports.append(str(context.get("message")))


@contextlib.asynccontextmanager
async def running(uplink: Uplink) -> AsyncIterator[None]:
    task = asyncio.create_task(uplink.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(predicate: Any, what: str, timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.05)


def sell(store: OrderStore, uplink: Uplink, first: int, count: int) -> None:
    for n in range(first, first + count):
        store.append_order("p01.a1.n1", {"order_no": str(n)}, source_key=str(n))
    uplink.wake()


def run_watched(coro: Any) -> list[str]:
    """Run ``coro``; the 'never retrieved' reports, after a collection."""
    watched = Watched()

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(watched.handler)
        await coro
        gc.collect()
        await asyncio.sleep(0)

    asyncio.run(main())
    return [r for r in watched.reports if "never retrieved" in r]


def test_refusals_move_to_the_next_endpoint_for_commands_and_orders_go_on(
    tmp_path: Path, refusing_broker: Mosquitto, broker: Mosquitto
) -> None:
    store = OrderStore(tmp_path / "s.sqlite")
    uplink = Uplink(
        settings(refusing_broker, broker, command_refusals_per_endpoint=2, command_retry_max_s=0.5),
        store,
        dict,
    )
    alarms: list[tuple[str, bool, dict[str, Any]]] = []
    uplink.on_alarm = lambda code, raised, detail: alarms.append((code, raised, detail))
    commands: list[bytes] = []

    async def on_command(payload: bytes) -> None:
        commands.append(payload)

    uplink.on_command = on_command

    async def scenario() -> None:
        async with running(uplink):
            sell(store, uplink, 1, 3)
            await until(lambda: uplink.link()["name"] == "b1", "the move to b1")
            await until(lambda: uplink.commands.policy.subscribed, "subscribed on b1")
            sell(store, uplink, 4, 3)
            async with aiomqtt.Client("127.0.0.1", broker.port, identifier="platform") as p:
                await p.publish(uplink.settings.topic("down/cmd"), b"a command", qos=1)
            await until(lambda: commands == [b"a command"], "the command")
            await until(lambda: not store.unsent(0, 100), "every order acknowledged")

    assert run_watched(scenario()) == []
    [(code, raised, detail)] = alarms
    assert code == "UPLINK_FAILOVER" and raised and detail["to"] == "b1"
    assert "commands refused 2 times" in detail["reason"] and "0x80" in detail["reason"]
    status = uplink.status()
    assert status["commands"]["state"] == "subscribed" and status["commands"]["endpoint"] == "b1"
    assert status["last_error"]["old"] is True, "the refusal is history once subscribed"


def test_a_frozen_broker_is_left_for_its_silence_and_its_orders_resent(
    tmp_path: Path, broker: Mosquitto
) -> None:
    frozen = Mosquitto(tmp_path / "frozen")
    frozen.start()
    store = OrderStore(tmp_path / "s.sqlite")
    uplink = Uplink(settings(frozen, broker, ack_timeout_s=1.0), store, dict)

    async def scenario() -> None:
        async with running(uplink):
            sell(store, uplink, 1, 2)
            await until(lambda: not store.unsent(0, 100), "the first orders on b0")
            frozen.freeze()
            sell(store, uplink, 3, 4)
            # ack_timeout_s (1 s) and a reconnect, with room for a loaded machine;
            # an operation timeout (60 s) would not do.
            await until(lambda: uplink.link()["name"] == "b1", "left the frozen b0", 15)
            await until(lambda: not store.unsent(0, 100), "the rest acknowledged on b1")

    try:
        assert run_watched(scenario()) == []
    finally:
        frozen.stop()
    assert store.unsent(0, 100) == []
    error = uplink.stats.error_status()
    assert error is not None and "no answer from the broker" in error["text"]


def test_a_killed_broker_is_seen_closed_from_the_transport(
    tmp_path: Path, broker: Mosquitto, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = OrderStore(tmp_path / "s.sqlite")
    uplink = Uplink(settings(broker), store, dict)

    async def scenario() -> None:
        async with running(uplink):
            sell(store, uplink, 1, 2)
            await until(lambda: not store.unsent(0, 100), "the first orders")
            assert broker.proc is not None
            broker.proc.kill()
            broker.proc.wait()
            await until(lambda: not uplink.stats.connected, "the loss seen")
            broker.start()
            sell(store, uplink, 3, 2)
            await until(lambda: not store.unsent(0, 100), "the orders after the restart")

    with capture_logs() as logs:
        monkeypatch.setattr(mqtt, "log", structlog.get_logger("uplink"))
        assert run_watched(scenario()) == []
    first = next(e for e in logs if e["event"] == "uplink_down")
    assert "connection closed" in first["error"], "the transport's news, not an operation timeout"
    assert uplink.stats.error_status()["old"] is True  # type: ignore[index]
