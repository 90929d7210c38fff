"""Hostile clients against the real daemon's web page: it stays within its bounds.

Real parts: ``forecourt run`` as a subprocess with the unit's memory and
file settings (``MALLOC_ARENA_MAX=1``, soft ``RLIMIT_NOFILE`` 1024), a
mosquitto broker, the Sinopec simulator selling on a pty, clients on real
loopback sockets from many source addresses (127.0.0.0/8 is all this host).

Each scenario resets the kernel's peak-RSS mark (``/proc/<pid>/clear_refs``)
and then checks the peak (``VmHWM``) against the idle figure taken once
after start: ≤ :data:`RSS_BUDGET_KIB` above it. The figures are written to
``test-artifacts/web/hostile.json`` (docs/security.md quotes them).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import resource
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from hil import stack
from hil.stack import Mosquitto, Proc
from tests.web_client import Client

DEMO_CONFIG = stack.ROOT / "config" / "demo.toml"
ARTIFACT = stack.ROOT / "test-artifacts" / "web" / "hostile.json"
PASSWORD = "pump-island-7"
#: What a hostile client may add to the daemon's peak RSS over its idle RSS.
RSS_BUDGET_KIB = 8 * 1024
#: The unit's soft limit on open files (systemd's default for services).
UNIT_NOFILE = 1024
#: The page's bound on its connections (collector/web/server.py), plus the
#: accepted-then-closed one in flight.
WEB_CONNECTIONS = 64 + 1


def status_of(pid: int, name: str) -> int:
    match = re.search(rf"^{name}:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    assert match, name
    return int(match.group(1))


def control(sock: Path, query: str) -> dict[str, Any]:
    """One query on the control socket (collector/tools/control.py), as the CLI asks."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(sock))
        s.sendall(json.dumps({"query": query}).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            assert chunk, "the control socket closed without an answer"
            data += chunk
    reply: dict[str, Any] = json.loads(data)
    assert reply["ok"], reply
    return reply


@dataclass
class Station:
    work: Path
    broker: Mosquitto
    collector: Proc
    dispenser: Proc
    web_port: int
    sock: Path
    idle_kib: int = 0
    idle_fds: int = 0
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.collector.popen.pid

    def reset_peak(self) -> None:
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")

    def peak_kib(self) -> int:
        return status_of(self.pid, "VmHWM")

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def record(self, scenario: str, **more: Any) -> int:
        peak, now = self.peak_kib(), status_of(self.pid, "VmRSS")
        self.figures[scenario] = {
            "idle_kib": self.idle_kib, "peak_kib": peak, "after_kib": now, **more
        }  # fmt: skip
        ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
        ARTIFACT.write_text(json.dumps(self.figures, indent=1))
        return peak - self.idle_kib

    def log_text(self) -> str:
        return self.collector.log_path.read_text()

    def events(self, event: str) -> list[dict[str, Any]]:
        """The daemon's JSON log lines (its stderr) of one event."""
        found = []
        for line in self.log_text().splitlines():
            if f'"{event}"' in line:
                parsed = json.loads(line)
                if parsed.get("event") == event:
                    found.append(parsed)
        return found


@pytest.fixture(scope="module")
def station(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Station]:
    work = tmp_path_factory.mktemp("hostile")
    broker = Mosquitto(work / "broker")
    broker.start()
    hash_file = work / "web-password"
    from collector.web.auth import write_hash_file

    write_hash_file(hash_file, PASSWORD)
    web_port = stack.free_port()
    text = DEMO_CONFIG.read_text()
    text = text.replace('path = ".demo/store.sqlite"', f'path = "{work / "store.sqlite"}"')
    text = text.replace('device = ".demo/pump1"', f'device = "{work / "pump1"}"')
    text = text.replace("port = 1883", f"port = {broker.port}")
    text += f'\n[control]\nsocket = "{work / "ctl.sock"}"\n'
    text += f'\n[web]\nlisten = "127.0.0.1:{web_port}"\npassword_file = "{hash_file}"\n'
    config = work / "station.toml"
    config.write_text(text)
    dispenser = stack.dispenser(work, work / "pump1", orders=10_000, nozzles=2, rate=1.0)
    os.environ["MALLOC_ARENA_MAX"] = "1"  # as the unit sets it; Proc passes os.environ
    try:
        collector = stack.collector(work, config, ["log.format=json"])
    finally:
        del os.environ["MALLOC_ARENA_MAX"]
    hard = resource.prlimit(collector.popen.pid, resource.RLIMIT_NOFILE)[1]
    resource.prlimit(collector.popen.pid, resource.RLIMIT_NOFILE, (UNIT_NOFILE, hard))
    st = Station(work, broker, collector, dispenser, web_port, work / "ctl.sock")
    try:
        stack.wait_until(lambda: bool(st.events("web_listening")), 30, "the web page")
        stack.wait_until(st.sock.exists, 30, "the control socket")
        stack.wait_until(lambda: control(st.sock, "uplink")["data"]["connected"], 30, "uplink")

        async def warm_up() -> None:  # the page's code paths, as a visitor would
            client = Client(web_port)
            for path in ("/", "/api/status", "/static/page.js", "/static/page.css"):
                assert (await client.get(path)).status == 200

        asyncio.run(warm_up())
        st.idle_kib, st.idle_fds = status_of(st.pid, "VmRSS"), st.fds()
        yield st
    finally:
        collector.stop()
        dispenser.stop()
        broker.stop()
    assert "Traceback" not in st.log_text(), "no traceback, whatever the clients did"


def test_concurrent_wrong_logins_check_one_password_at_a_time(station: Station) -> None:
    station.reset_peak()

    async def wave(addresses: range) -> list[int]:
        clients = [Client(station.web_port, f"127.0.2.{n}") for n in addresses]
        forms = await asyncio.gather(*(c.get("/") for c in clients))
        assert all(f.status == 200 for f in forms), [f.status for f in forms]
        replies = await asyncio.gather(*(c.login("wrong-password") for c in clients))
        return [r.status for r in replies]

    async def main() -> list[int]:
        statuses = []
        for n in range(6):  # 6 × 60 attempts at once (60: the count that took 148 MiB)
            statuses += await wave(range(1 + 60 * (n % 3), 61 + 60 * (n % 3)))
        return statuses

    statuses = asyncio.run(main())
    checked, refused = statuses.count(200), statuses.count(429)
    assert checked + refused == len(statuses) == 360, statuses
    assert refused > 300, "most are refused at once, without a hash each"
    grown = station.record("concurrent_wrong_logins", attempts=360, hashed=checked)
    assert grown <= RSS_BUDGET_KIB, f"peak RSS {grown} KiB above idle"


def test_a_header_flood_is_cut_at_the_head_limit(station: Station) -> None:
    station.reset_peak()
    line = b"X-Flood: " + b"a" * 1000 + b"\r\n"

    async def flood(source: str) -> int:
        """One connection sending header lines until the server cuts it."""
        _, writer = await asyncio.open_connection(
            "127.0.0.1", station.web_port, local_addr=(source, 0)
        )
        sent = 0
        writer.write(f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{station.web_port}\r\n".encode())
        try:
            while sent < 48 * 1024 * 1024:
                writer.write(line * 64)
                await writer.drain()
                sent += len(line) * 64
        except ConnectionError:
            pass
        writer.close()
        return sent

    async def main() -> list[int]:
        sent: list[int] = []
        for _ in range(20):  # 20 rounds of 16 floods at once from 8 addresses
            sent += await asyncio.gather(*(flood(f"127.0.3.{n % 8}") for n in range(16)))
        return sent

    sent = asyncio.run(main())
    assert max(sent) < 4 * 1024 * 1024, "cut long before 48 MiB (socket buffers aside)"
    grown = station.record("header_flood", connections=len(sent), sent_bytes=sum(sent))
    assert grown <= RSS_BUDGET_KIB, f"peak RSS {grown} KiB above idle"
    cut = [e for e in station.events("web_refused") if e["kind"] == "head_too_large"]
    assert len(cut) <= 2, "the first in full; the rest counted"


def test_thousands_of_idle_connections_during_a_broker_restart(station: Station) -> None:
    """The page holds ≤ 64 of them; the uplink reconnects, the control socket
    answers, and the technician still logs in."""
    station.reset_peak()
    connects_before = control(station.sock, "uplink")["data"]["connects"]
    peak_fds = 0
    stop = asyncio.Event()

    async def squat(source: str) -> None:
        """Hold a silent connection; when the server closes it, dial again."""
        while not stop.is_set():
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", station.web_port, local_addr=(source, 0)),
                    5,
                )
            except (OSError, TimeoutError):
                await asyncio.sleep(1)  # paces the redial; nothing waits on it
                continue
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(reader.read(1), 30)
            writer.close()
            await asyncio.sleep(1)

    async def main() -> dict[str, Any]:
        nonlocal peak_fds
        squatters = [
            asyncio.create_task(squat(f"127.0.{4 + n // 250}.{1 + n % 250}")) for n in range(2000)
        ]
        loop = asyncio.get_running_loop()

        async def until(predicate: Any, timeout: float, what: str) -> None:
            deadline = loop.time() + timeout
            while not predicate():
                nonlocal peak_fds
                peak_fds = max(peak_fds, station.fds())
                assert loop.time() < deadline, f"timed out waiting for {what}"
                await asyncio.sleep(0.1)

        try:
            await until(lambda: station.fds() >= station.idle_fds + 60, 60, "the page full")
            await asyncio.to_thread(station.broker.stop)
            await until(
                lambda: not control(station.sock, "uplink")["data"]["connected"], 30, "down"
            )
            await asyncio.to_thread(station.broker.start)
            await until(
                lambda: control(station.sock, "uplink")["data"]["connects"] > connects_before,
                60,
                "the uplink reconnected",
            )
            technician = Client(station.web_port)
            status = (await technician.get("/api/status")).status
            login = (await technician.login(PASSWORD)).status
            answered = control(station.sock, "status")["data"]
            peak_fds = max(peak_fds, station.fds())
        finally:  # a squatter's loop also ends on the event (wait_for may eat a cancel)
            stop.set()
            for task in squatters:
                task.cancel()
            await asyncio.gather(*squatters, return_exceptions=True)
        return {"status": status, "login": login, "answered": answered}

    result = asyncio.run(main())
    assert result["status"] == 200 and result["login"] == 302, result
    assert result["answered"]["uplink_connected"] is True
    assert peak_fds <= station.idle_fds + WEB_CONNECTIONS + 8, (peak_fds, station.idle_fds)
    assert peak_fds < UNIT_NOFILE // 2
    grown = station.record(
        "idle_connections_broker_restart",
        squatters=2000,
        idle_fds=station.idle_fds,
        peak_fds=peak_fds,
    )
    assert grown <= RSS_BUDGET_KIB, f"peak RSS {grown} KiB above idle"
    assert "Too many open files" not in station.log_text()
    kinds = [e["kind"] for e in station.events("web_refused")]
    assert len(kinds) == len(set(kinds)) or len(kinds) < 20, "one line per kind a minute"


def test_a_locked_out_address_never_locks_out_the_technician(station: Station) -> None:
    station.reset_peak()

    async def main() -> tuple[list[int], int]:
        stranger = Client(station.web_port, "127.0.0.66")
        technician = Client(station.web_port, "127.0.0.1")
        statuses = [(await stranger.login("guess-number-1")).status for _ in range(5)]

        async def keep_guessing() -> None:
            for n in range(20):
                statuses.append((await stranger.login(f"guess-{n}")).status)

        guessing = asyncio.create_task(keep_guessing())
        login = (await technician.login(PASSWORD)).status
        await guessing
        return statuses, login

    statuses, login = asyncio.run(main())
    assert login == 302, "the technician logs in while the stranger is locked"
    assert statuses[:3] == [200, 200, 200] and set(statuses[3:]) == {429}, statuses
    grown = station.record("lockout_while_technician_logs_in", attempts=len(statuses))
    assert grown <= RSS_BUDGET_KIB


def test_sales_kept_being_collected(station: Station) -> None:
    """Last in the module: the dispenser sold throughout, and the orders are stored."""
    assert control(station.sock, "status")["data"]["ports_online"] == 1
    stack.wait_until(lambda: control(station.sock, "orders")["data"], 30, "orders stored")
