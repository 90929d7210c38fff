"""Failures keep their story: every caught failure is logged with its traceback,
counted, answered (a command gets an error reply) and survived.

Real parts: the command processor on real files with real SM2 / SM4, the
uplink against a real mosquitto, the control socket on a real unix socket,
the log pipeline of collector/logs.py in its own process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
import structlog
from structlog.testing import capture_logs

from buffer.store import OrderStore
from hil.platform.commands import command_body, seal_command
from hil.stack import Mosquitto
from uplink import command_channel, mqtt
from uplink import commands as c
from uplink.crypto import sm2_generate
from uplink.mqtt import Uplink, UplinkSettings

ROOT = Path(__file__).resolve().parent.parent
DEV, KID, KEY = "dev-fail", "k1", bytes(range(16))
PLATFORM_PRIV, PLATFORM_PUB = sm2_generate()


@pytest.fixture
def logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """What the modules under test log, as event dicts (fresh loggers: another
    test may have bound the module-level ones to its own configuration)."""
    with capture_logs() as captured:
        monkeypatch.setattr(c, "log", structlog.get_logger("uplink.commands"))
        monkeypatch.setattr(mqtt, "log", structlog.get_logger("uplink"))
        monkeypatch.setattr(command_channel, "log", structlog.get_logger("uplink"))
        yield captured


def with_traceback(entries: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    """The ``event`` entries that carry their exception (rendered as a
    traceback by collector/logs.py's ``format_exc_info``)."""
    return [e for e in entries if e["event"] == event and e.get("exc_info")]


def test_the_log_pipeline_renders_the_traceback() -> None:
    code = (
        "import structlog\nfrom collector import logs\nlogs.configure('info', 'json')\n"
        "try:\n    raise ValueError('the story')\n"
        "except ValueError:\n    structlog.get_logger('t').exception('it_failed')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    [line] = [json.loads(x) for x in done.stderr.splitlines() if x.startswith("{")]
    assert line["event"] == "it_failed" and line["level"] == "error"
    assert "Traceback (most recent call last)" in line["exception"]
    assert "ValueError: the story" in line["exception"]


def processor(tmp_path: Path) -> c.CommandProcessor:
    proc = c.CommandProcessor(
        device_id=DEV,
        platform_public=PLATFORM_PUB,
        keys={KID: KEY},
        replay=c.ReplayLog(tmp_path / "replay.sqlite"),
        bucket=c.TokenBucket(1000.0, 1000),
    )

    async def broken(args: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("the handler's own bug")

    proc.register("test.broken", broken)
    return proc


def command(name: str, seq: int) -> tuple[str, bytes]:
    body = command_body(name, {}, private=PLATFORM_PRIV, public=PLATFORM_PUB)
    return body["id"], seal_command(body, dev=DEV, kid=KID, key=KEY, seq=seq)


def test_a_failing_command_is_an_internal_reply_logged_with_its_traceback(
    tmp_path: Path, logs: list[dict[str, Any]]
) -> None:
    proc = processor(tmp_path)
    cid, payload = command("test.broken", 1)
    reply = asyncio.run(proc.handle(payload))
    assert reply == {
        "id": cid,
        "ok": False,
        "error": {"code": "INTERNAL", "message": "test.broken failed: RuntimeError"},
    }
    [entry] = with_traceback(logs, "command_handler_failed")
    assert entry["id"] == cid and entry["name"] == "test.broken"

    # A failure outside any handler (the replay log's file gone bad): still a
    # reply under the command's id, never an exception into the uplink.
    proc.replay.close()
    cid, payload = command("test.broken", 2)
    reply = asyncio.run(proc.handle(payload))
    assert reply is not None and reply["id"] == cid and reply["error"]["code"] == "INTERNAL"
    [entry] = with_traceback(logs, "command_check_failed")
    assert entry["id"] == cid
    assert proc.counters["INTERNAL"] == 2


async def run_uplink(broker: Mosquitto, store: OrderStore) -> tuple[Uplink, int]:
    """Heartbeats that always fail, a command handler that always fails, and
    one read of the store that fails with a bug: the records still arrive."""

    def heartbeat() -> dict[str, Any]:
        raise RuntimeError("no heartbeat today")

    settings = UplinkSettings(
        device_id=DEV, host="127.0.0.1", port=broker.port, kid=KID, key=KEY,
        heartbeat_s=0.2, reconnect_min_s=0.1, reconnect_max_s=0.2,
    )  # fmt: skip
    uplink = Uplink(settings, store, heartbeat)

    async def on_command(payload: bytes) -> None:
        raise KeyError("the command plumbing's bug")

    uplink.on_command = on_command
    real_page, calls = store.unsent_page, []

    def unsent_page(after: int, limit: int) -> Any:
        calls.append(after)
        if len(calls) == 1:
            raise TypeError("the sender's bug")
        return real_page(after, limit)

    store.unsent_page = unsent_page  # type: ignore[method-assign]
    got = 0
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier="rx-fail") as rx:
        await rx.subscribe(settings.topic("up/order"), qos=1)
        task = asyncio.create_task(uplink.run())
        try:
            async with asyncio.timeout(30):
                async for _ in rx.messages:  # the one order, after the sender's bug
                    got += 1
                    break
                await rx.publish(settings.topic("down/cmd"), b"anything", qos=1)
                errors = uplink.stats.errors
                while errors.get("heartbeat", 0) < 2 or "command" not in errors:
                    await asyncio.sleep(0.05)
            assert not task.done(), "the uplink is still running"
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return uplink, got


def test_uplink_failures_are_logged_counted_and_survived(
    tmp_path: Path, broker: Mosquitto, logs: list[dict[str, Any]]
) -> None:
    store = OrderStore(tmp_path / "s.sqlite")
    store.append_order("p01.a1.n1", {"order_no": "1"}, source_key="1")
    uplink, got = asyncio.run(run_uplink(broker, store))
    assert got == 1, "the order went out after the sender's bug"
    assert store.unsent(0, 100) == []
    errors = uplink.stats.errors
    assert errors["session"] == 1 and errors["heartbeat"] >= 2 and errors["command"] >= 1
    assert with_traceback(logs, "uplink_failed"), "the sender's bug, with its traceback"
    assert len(with_traceback(logs, "heartbeat_skipped")) >= 2
    assert with_traceback(logs, "command_failed")


def test_a_failing_control_query_is_answered_counted_and_survived(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from collector.daemon import Collector
    from collector.tools import control
    from collector.tools.techcli import ask
    from config.loader import load_config

    collector = Collector(load_config(ROOT / "config" / "demo.toml"))

    async def broken(collector: Any, request: dict[str, Any]) -> Any:
        raise ZeroDivisionError("a query's bug")

    monkeypatch.setitem(control.QUERIES, "broken", broken)
    sock = tmp_path / "ctl.sock"

    async def main() -> tuple[dict[str, Any], dict[str, Any]]:
        server = asyncio.create_task(control.serve(collector, sock))
        while not sock.exists():
            await asyncio.sleep(0.02)
        try:
            bad = await asyncio.to_thread(ask, str(sock), {"query": "broken"})
            good = await asyncio.to_thread(ask, str(sock), {"query": "nozzles"})
        finally:
            server.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await server
        return bad, good

    bad, good = asyncio.run(main())
    assert bad == {"ok": False, "error": "internal error (ZeroDivisionError)"}
    assert good["ok"] is True, "the socket still answers"
    assert collector.errors == {"control_query_failed": 1}


def test_selftest_checks_every_endpoint_the_config_names() -> None:
    from collector.tools.selftest import checks

    with socket.socket() as up:
        up.bind(("127.0.0.1", 0))
        up.listen()
        open_port = up.getsockname()[1]
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            closed_port = probe.getsockname()[1]  # bound, not listening: refused
            raw = {
                "uplink": {
                    "keys_file": "nowhere",
                    "kid": "k1",
                    "endpoints": [
                        {"name": "wired", "host": "127.0.0.1", "port": open_port},
                        {"name": "4g", "host": "127.0.0.1", "port": closed_port},
                    ],
                }
            }
            found = {r["check"]: r for r in checks(raw, "/nonexistent.sock", None)}
    assert "broker" not in found, "not the default 127.0.0.1:1883"
    assert found["broker wired"]["ok"] is True
    assert found["broker wired"]["detail"] == f"127.0.0.1:{open_port} reachable"
    assert found["broker 4g"]["ok"] is False
    assert found["broker 4g"]["detail"].startswith(f"127.0.0.1:{closed_port}: ")
