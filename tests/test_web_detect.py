"""The page's detect action over real HTTP: the poll line lent and taken back, the stanza applied.

A real (not started) Collector from the demo config with one poll port on a
pty, run by the daemon's own supervisor, and one listen port; the app on its
server, asked over real sockets (tests/web_client.py). The detect child is
replaced by a runner that looks at the line while it is lent (the port
closed, nothing written, the control socket's ``devices`` leaving it out)
and returns a result as ``forecourt detect --json`` does; the apply goes
through the real ``config.set`` (validated in its child, ``.prev`` kept,
the change waiting for the platform's confirmation, restart requested).
"""

from __future__ import annotations

import asyncio
import os
import tomllib
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import protocols
from buffer.store import OrderStore
from collector.assembly import make_port
from collector.daemon import Collector
from collector.detect.result import PortResult, line_dict, stanza
from collector.remote.config_change import ConfigChanges
from collector.station.edge import EdgeSettings
from collector.station.nozzles import NozzleTable
from collector.tools import control
from collector.web.app import WebApp
from collector.web.auth import write_hash_file
from config.loader import load_config
from tests.web_client import Client, csrf_of, serving

DEMO_CONFIG = Path(__file__).resolve().parent.parent / "config" / "demo.toml"
PASSWORD = "pump-island-7"


def station(tmp_path: Path, poll: str, tap: str) -> Path:
    text = DEMO_CONFIG.read_text().split("[[ports]]")[0]
    text = text.replace('".demo/store.sqlite"', f'"{tmp_path / "store.sqlite"}"')
    text += (
        f'\n[[ports]]\nnumber = 1\ndevice = "{poll}"\nprotocol = "sinopec"\naddresses = [1]\n'
        "poll_interval_ms = 50\nidle_poll_interval_ms = 50\n"
        f'\n[[ports]]\nnumber = 2\ndevice = "{tap}"\nprotocol = "sinopec"\nmode = "listen"\n'
        "addresses = [1]\n"
    )
    config = tmp_path / "station.toml"
    config.write_text(text)
    return config


def dart_found(device: str) -> dict[str, Any]:
    setting = protocols.descriptor("dart").line_settings[0]
    return PortResult(
        device=device, status="found", how="probe", family="dart", title="DART",
        line=line_dict(setting), addresses=[3], confidence=0.95,
        evidence=[{"hex": "03 20 fa", "decoded": {"pump": 3}}],
        stanza=stanza(device, 1, "dart", setting, [3], "poll"), seconds=12.0, bytes_written=40,
    ).as_dict()  # fmt: skip


async def written_within(master: int, seconds: float) -> bytes:
    """What the port wrote on the pty within ``seconds`` (b"" for none)."""
    loop, got = asyncio.get_running_loop(), asyncio.Event()
    loop.add_reader(master, got.set)
    try:
        await asyncio.wait_for(got.wait(), seconds)
        return os.read(master, 4096)
    except TimeoutError:
        return b""
    finally:
        loop.remove_reader(master)


def drain(fd: int) -> None:
    os.set_blocking(fd, False)
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def test_detect_lends_a_poll_line_shows_the_result_and_applies_it_by_config_set(
    tmp_path: Path,
) -> None:
    master, slave = os.openpty()
    tap_master, tap_slave = os.openpty()
    line, tap = os.ttyname(slave), os.ttyname(tap_slave)
    config = station(tmp_path, line, tap)
    original = config.read_text()
    password_file = tmp_path / "web-password"
    write_hash_file(password_file, PASSWORD)
    cfg = load_config(config)
    collector = Collector(cfg, config)
    store = collector.store = OrderStore(tmp_path / "store.sqlite")
    uplink = cast(Any, SimpleNamespace(wake=lambda: None))
    port = make_port(cfg, cfg.ports[0], store, NozzleTable(), uplink, EdgeSettings.from_config(cfg))
    collector.ports = [port]
    collector.config_changes = ConfigChanges(collector, config, [])
    seen: dict[str, Any] = {}
    looked, release = asyncio.Event(), asyncio.Event()

    async def runner(device: str) -> dict[str, Any]:
        drain(master)  # what the port wrote before the lend
        seen["device"], seen["open"] = device, port.is_open
        seen["held"] = [d["device"] for d in await control.q_devices(collector, {})]
        seen["written"] = await written_within(master, 0.3)
        looked.set()
        await release.wait()  # the page is looked at while this runs
        return dart_found(device)

    app = WebApp(collector, password_file, config)
    app.detect.runner = runner

    async def main() -> None:
        supervisor = asyncio.create_task(collector._supervise(port))
        try:
            async with serving(app) as http:
                await steps(Client(http))
        finally:
            supervisor.cancel()
            await asyncio.gather(supervisor, return_exceptions=True)

    async def steps(client: Client) -> None:
        assert (await client.get("/detect")).status == 302, "behind the login"
        await client.login(PASSWORD)
        page = await client.get("/detect")
        token = csrf_of(page.text)
        assert 'id="detect-1"' in page.text and 'id="detect-2"' not in page.text
        assert await written_within(master, 2.0), "the port polls its line"
        assert (await client.post("/detect", {"port": "1", "csrf": "forged"})).status == 403
        refused = await client.post("/detect", {"port": "2", "csrf": token})
        assert "listen port" in refused.text and "--passive" in refused.text
        assert (await client.post("/detect", {"port": "1", "csrf": token})).status == 302
        running = await client.get("/detect")  # the job runs in the background
        assert 'id="running-1"' in running.text and 'id="result-1"' not in running.text
        assert (
            "a detect is running"
            in (await client.post("/detect", {"port": "1", "csrf": token})).text
        ), "one line at a time"
        await asyncio.wait_for(looked.wait(), 10)  # the lent line looked at, then:
        release.set()
        assert await written_within(master, 2.0), "the port polls again once the detect ends"
        assert not collector.lending.lent(1) and port.stats.online
        page = await client.get("/detect")
        assert "found — dart (DART), 9600 8O1, pumps 3, confidence 0.95" in page.text
        assert "03 20 fa" in page.text and 'id="stanza-1"' in page.text

        applied = await client.post("/detect/apply", {"port": "1", "csrf": token})
        assert 'id="applied-1"' in applied.text, applied.text
        assert "applied (restart)" in applied.text and "within 300 s" in applied.text
        await asyncio.wait_for(collector._stop.wait(), 10)  # the daemon's stop, asked by:
        assert collector.restart_requested, "a port change applies by a restart"

    asyncio.run(main())
    for fd in (master, slave, tap_master, tap_slave):
        os.close(fd)
    store.close()
    # While lent: the port closed, not held, nothing written on its line.
    assert seen["device"] == line and seen["open"] is False, seen
    assert line not in seen["held"] and tap in seen["held"], seen
    assert seen["written"] == b"", seen
    # Applied through config.set: the port's line keys, .prev, the change awaiting its confirmation.
    port1 = tomllib.loads(config.read_text())["ports"][0]
    assert (port1["protocol"], port1["parity"], port1["addresses"]) == ("dart", "O", [3])
    assert port1["device"] == line and port1["poll_interval_ms"] == 50
    assert (tmp_path / "station.toml.prev").read_text() == original
    assert (tmp_path / "station.toml.pending").exists(), "reverted unless the platform confirms"


def test_a_child_is_killed_when_its_waiter_is_cancelled() -> None:
    """The daemon stopping during a detect: the child must not go on probing a
    line the next start polls (collector/remote/config_check.py ``run_child``)."""
    from collector.remote.config_check import run_child

    async def main() -> int:
        waiter = asyncio.create_task(run_child(["sleep", "30"], b"", 60))
        for _ in range(200):  # until the child exists
            await asyncio.wait({waiter}, timeout=0.01)
            if children():
                break
        (pid,) = children()
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        return pid

    pid = asyncio.run(main())
    assert pid not in children(), "killed (and reaped by the loop's child watcher)"


def children() -> list[int]:
    """This process's ``sleep 30`` children, from /proc."""
    me, found = os.getpid(), []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        state = stat.rsplit(")", 1)[1].split()[0]
        if ppid == me and cmd == b"sleep\x0030\x00" and state != "Z":
            found.append(int(entry.name))
    return found
