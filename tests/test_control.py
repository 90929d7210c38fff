"""The control socket's bounds: one bounded JSON request per connection.

A real unix socket served by collector/tools/control.py for a real (not started)
Collector built from the demo config; the queries against a running
collector are in tests/test_techcli.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import stat
from pathlib import Path

import pytest

from collector.daemon import Collector
from collector.tools import control
from config.loader import load_config
from tests.waits import until

DEMO_CONFIG = Path(__file__).resolve().parent.parent / "config" / "demo.toml"


async def exchange(path: Path, payload: bytes) -> dict[str, object]:
    """Send ``payload`` (nothing: a client that never finishes) and read the reply."""
    reader, writer = await asyncio.open_unix_connection(str(path))
    if payload:
        writer.write(payload)
        await writer.drain()
    line = await reader.readline()
    writer.close()
    reply: dict[str, object] = json.loads(line)
    return reply


def test_requests_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(control, "REQUEST_TIMEOUT_S", 0.3)
    sock = tmp_path / "run" / "ctl.sock"
    collector = Collector(load_config(DEMO_CONFIG))

    async def main() -> None:
        server = asyncio.create_task(control.serve(collector, sock))
        assert await until(sock.exists), "the control socket is bound"
        assert stat.S_IMODE(sock.stat().st_mode) == 0o660
        assert await exchange(sock, b'{"query": "nozzles"}\n') == {"ok": True, "data": []}
        bad = await exchange(sock, b"not json\n")
        assert bad["ok"] is False and "bad request" in str(bad["error"])
        big = await exchange(sock, b'{"query": "' + b"x" * (control.MAX_REQUEST + 1) + b'"}\n')
        assert big["ok"] is False and "4 KiB" in str(big["error"])
        unknown = await exchange(sock, b'{"query": "reboot"}\n')
        assert unknown == {"ok": False, "error": "unknown query 'reboot'"}
        slow = await exchange(sock, b"")
        assert slow == {"ok": False, "error": "request timed out"}
        capture = await exchange(sock, b'{"query": "capture", "port": 1, "seconds": 9999}\n')
        assert capture["ok"] is False and "seconds" in str(capture["error"])
        # A second collector with the same socket does not steal it.
        await control.serve(Collector(load_config(DEMO_CONFIG)), sock)
        assert await exchange(sock, b'{"query": "nozzles"}\n') == {"ok": True, "data": []}
        server.cancel()
        with pytest.raises(asyncio.CancelledError):
            await server
        assert not sock.exists(), "the socket file is removed on stop"
        # A stale socket file (a crashed run) is replaced.
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(str(sock))
        stale.close()
        server = asyncio.create_task(control.serve(collector, sock))
        assert await until(lambda: sock.exists() and stat.S_IMODE(sock.stat().st_mode) == 0o660)
        assert await exchange(sock, b'{"query": "nozzles"}\n') == {"ok": True, "data": []}
        server.cancel()
        with pytest.raises(asyncio.CancelledError):
            await server

    asyncio.run(main())


def test_every_malformed_request_gets_an_error_reply(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """since_ms above 2^63 was an OverflowError in the log and no reply at all."""
    from buffer.store import OrderStore

    store = tmp_path / "s.sqlite"
    OrderStore(store).close()
    sock = tmp_path / "ctl.sock"
    collector = Collector(load_config(DEMO_CONFIG, [f"store.path={store}"]))

    async def broken(c: Collector, request: dict[str, object]) -> object:
        raise ZeroDivisionError("a bug in a query")

    monkeypatch.setitem(control.QUERIES, "broken", broken)

    async def main() -> None:
        server = asyncio.create_task(control.serve(collector, sock))
        assert await until(sock.exists), "the control socket is bound"
        bound = "an integer of at most 64 bits"
        for value in (2**64, 2**63, -(2**63) - 1, "1", 1.5, True, 1e400):
            request = json.dumps({"query": "orders", "since_ms": value}).encode() + b"\n"
            assert await exchange(sock, request) == {"ok": False, "error": f"since_ms: {bound}"}
        limit = await exchange(sock, b'{"query": "orders", "limit": 18446744073709551616}\n')
        assert limit == {"ok": False, "error": f"limit: {bound}"}
        edge = await exchange(sock, b'{"query": "orders", "since_ms": 9223372036854775807}\n')
        assert edge == {"ok": True, "data": []}
        deep = await exchange(sock, b"[" * 4000 + b"\n")
        assert deep["ok"] is False and "bad request" in str(deep["error"])
        assert await exchange(sock, b"\xff\xfe\n") == {
            "ok": False,
            "error": "bad request (one JSON line of at most 4 KiB)",
        }
        bug = await exchange(sock, b'{"query": "broken"}\n')
        assert bug == {"ok": False, "error": "internal error (ZeroDivisionError)"}
        assert await exchange(sock, b'{"query": "nozzles"}\n') == {"ok": True, "data": []}
        server.cancel()
        with pytest.raises(asyncio.CancelledError):
            await server

    asyncio.run(main())


def test_refused_requests_are_counted_and_logged_once_a_minute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client repeating malformed requests costs one log line per kind a
    minute, and the counts are in ``status``."""
    from collector.logs import Repeats
    from tests.test_logs import Log

    log = Log()
    monkeypatch.setattr(control, "REFUSED", Repeats(log, "control_refused", source_field=None))
    sock = tmp_path / "ctl.sock"
    collector = Collector(load_config(DEMO_CONFIG))

    async def main() -> dict[str, object]:
        server = asyncio.create_task(control.serve(collector, sock))
        assert await until(sock.exists), "the control socket is bound"
        for _ in range(40):
            assert (await exchange(sock, b"\xff not json\n"))["ok"] is False
            assert (await exchange(sock, b'{"query": "reboot"}\n'))["ok"] is False
        server.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await server
        return control.REFUSED.stats()

    stats = asyncio.run(main())
    assert stats == {"events": 80, "lines": 2, "kinds": {"bad_request": 40, "bad_query": 40}}
    assert [e["kind"] for e in log.events("control_refused")] == ["bad_request", "bad_query"]
    assert log.events("control_refused")[1]["detail"] == "unknown query 'reboot'"
