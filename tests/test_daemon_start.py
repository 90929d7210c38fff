"""``forecourt run``: what cannot start stops the start with one clear line
naming the config key; a port that cannot open its line starts offline."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hil.stack import ROOT
from tests.store_edit import stored_texts

DEMO = ROOT / "config" / "demo.toml"


def start(*overrides: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "collector", "run", "--config", str(DEMO)]
    for item in overrides:
        argv += ["--set", item]
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60)


@pytest.fixture
def pty_path() -> Iterator[str]:
    master, slave = os.openpty()
    yield os.ttyname(slave)
    os.close(master)
    os.close(slave)


def test_missing_port_starts_offline_with_port_offline(tmp_path: Path) -> None:
    """One adapter missing at start must not stop the other ports (SPEC D15):
    the collector starts, raises PORT_OFFLINE for that port and keeps trying."""
    import json
    import signal
    import sqlite3
    import time

    from hil import stack

    argv = [sys.executable, "-m", "collector", "run", "--config", str(DEMO)]
    for item in (
        f"store.path={tmp_path}/s.sqlite",
        "ports.0.device=/dev/ttyNOPE",
        f"uplink.port={stack.free_port()}",
    ):
        argv += ["--set", item]
    proc = subprocess.Popen(argv, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:

        def alarms() -> list[dict[str, object]]:
            if not (tmp_path / "s.sqlite").exists():
                return []
            try:
                with sqlite3.connect(tmp_path / "s.sqlite") as db:
                    texts = stored_texts(db, "alarm")
            except sqlite3.OperationalError:  # the store is being created
                return []
            return [json.loads(t) for t in texts]

        stack.wait_until(lambda: bool(alarms()), 30, "PORT_OFFLINE stored")
        time.sleep(1.5)  # retries of the missing device raise nothing more
        assert proc.poll() is None, "still running"
        (alarm,) = alarms()
        assert (alarm["code"], alarm["state"], alarm["source"]) == ("PORT_OFFLINE", "raised", "p01")
        assert "no such device" in alarm["detail"]["reason"]  # type: ignore[index]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        proc.kill()


def test_missing_key_file(tmp_path: Path) -> None:
    done = start(f"store.path={tmp_path}/s.sqlite", f"uplink.keys_file={tmp_path}/none.toml")
    assert (done.returncode, done.stderr) == (
        2,
        f"uplink.keys_file: {tmp_path}/none.toml: key file not found\n",
    )


def test_a_key_file_gone_after_the_check_is_named_by_its_key(tmp_path: Path) -> None:
    """The daemon's own start line names the key too: the file went between
    the validating step and the exec (the daemon is handed the checked config)."""
    keys = tmp_path / "keys.toml"
    keys.write_bytes((ROOT / "config" / "demo-keys.toml").read_bytes())
    keys.chmod(0o600)
    script = (
        "import sys; from pathlib import Path; from config.loader import load_config;"
        " from config.handoff import exec_daemon;"
        f" c = load_config(Path({str(DEMO)!r}), ['store.path={tmp_path}/s.sqlite',"
        f" 'uplink.keys_file={keys}']); Path({str(keys)!r}).unlink();"
        f" exec_daemon(c, ['-m', 'collector', 'run', '--config', {str(DEMO)!r}], 'test')"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stderr) == (
        1,
        f"forecourt: cannot start: uplink.keys_file: {keys}: key file not found\n",
    )


def test_unknown_kid(tmp_path: Path) -> None:
    done = start(f"store.path={tmp_path}/s.sqlite", "uplink.kid=k9")
    assert (done.returncode, done.stderr) == (
        2,
        "uplink.kid: no key 'k9' in config/demo-keys.toml\n",
    )


def test_unwritable_store(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    done = start(f"store.path={blocker}/s.sqlite")
    assert (done.returncode, done.stderr) == (
        2,
        f"store.path: {blocker}/s.sqlite: {blocker} is not a directory\n",
    )


@pytest.mark.parametrize(
    ("setting", "reason"),
    [
        # A pty has no RS-485 mode. (It drops parity too, but the collector
        # knows a pty and keeps the parity where the simulator reads it:
        # tests/test_line_settings.py.)
        ("ports.0.rs485=true", "the device refuses line settings 9600 8E1: no RS-485 mode ("),
    ],
)
def test_line_settings_the_device_refuses_start_the_port_offline(
    tmp_path: Path, pty_path: str, setting: str, reason: str
) -> None:
    """A line the device cannot be set to is the technician's to fix, and never
    stops the start (a restart loop would stop every other port too): the
    port starts offline, PORT_OFFLINE names the reason, the daemon runs on."""
    import json
    import signal
    import sqlite3

    from hil import stack

    argv = [sys.executable, "-m", "collector", "run", "--config", str(DEMO)]
    for item in (
        f"store.path={tmp_path}/s.sqlite",
        f"ports.0.device={pty_path}",
        setting,
        f"uplink.port={stack.free_port()}",
        f"control.socket={tmp_path}/ctl.sock",
    ):
        argv += ["--set", item]
    proc = subprocess.Popen(argv, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:

        def alarms() -> list[dict[str, object]]:
            try:
                with sqlite3.connect(tmp_path / "s.sqlite") as db:
                    return [json.loads(t) for t in stored_texts(db, "alarm")]
            except sqlite3.OperationalError:  # not created yet
                return []

        stack.wait_until(lambda: bool(alarms()), 30, "PORT_OFFLINE stored")
        (alarm,) = alarms()
        assert (alarm["code"], alarm["state"], alarm["source"]) == ("PORT_OFFLINE", "raised", "p01")
        assert f"{pty_path}: {reason}" in alarm["detail"]["reason"]  # type: ignore[index]
        assert proc.poll() is None, "still running"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        proc.kill()


def test_bad_config_is_exit_2_with_key_paths(tmp_path: Path) -> None:
    done = start("uplink.port=0", "ports.0.bogus=1")
    assert done.returncode == 2
    assert "uplink.port: must be >= 1, got 0" in done.stderr
    assert "ports.0.bogus: unknown key" in done.stderr


def test_ready_after_store_and_ports_then_clean_stop(tmp_path: Path) -> None:
    """Under systemd: READY=1 once the store is open and the port bound; SIGTERM → 0."""
    import signal
    import socket

    from hil import stack

    link = tmp_path / "pump1"
    sim = stack.dispenser(tmp_path, link, orders=0, nozzles=1)
    notify_path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify_path))
    sock.settimeout(30)
    argv = [sys.executable, "-m", "collector", "run", "--config", str(DEMO)]
    for item in (
        f"store.path={tmp_path}/s.sqlite",
        f"ports.0.device={link}",
        f"uplink.port={stack.free_port()}",
    ):
        argv += ["--set", item]
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        env={**os.environ, "NOTIFY_SOCKET": str(notify_path)},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert sock.recv(64) == b"READY=1"
        assert (tmp_path / "s.sqlite").exists()
        proc.send_signal(signal.SIGTERM)
        assert sock.recv(64) == b"STOPPING=1"
        assert proc.wait(20) == 0
    finally:
        proc.kill()
        sim.stop()
        sock.close()


def test_key_file_readable_by_others_stops_the_start(tmp_path: Path) -> None:
    """D9: the SM4 key file must be the collector's alone."""
    keys = tmp_path / "keys.toml"
    keys.write_text((ROOT / "config" / "demo-keys.toml").read_text())
    keys.chmod(0o644)
    done = start(f"store.path={tmp_path}/s.sqlite", f"uplink.keys_file={keys}")
    assert (done.returncode, done.stderr) == (
        2,
        f"uplink.keys_file: {keys}: key file mode is 0644, readable or writable by"
        f" group or others; run: chmod 600 {keys}\n",
    )


def test_an_unclean_previous_stop_is_alarmed_at_start(tmp_path: Path) -> None:
    """F1 / D17: a run that ended without stopping (power lost, SIGKILL) is
    reported by the next start; a clean stop is not."""
    import json
    import signal
    import sqlite3

    from hil import stack

    link = tmp_path / "pump1"
    sim = stack.dispenser(tmp_path, link, orders=0, nozzles=1)
    overrides = [
        f"store.path={tmp_path}/s.sqlite",
        f"ports.0.device={link}",
        f"uplink.port={stack.free_port()}",
        "log.format=json",
    ]
    demo = ROOT / "config" / "demo.toml"

    def unclean_alarms() -> list[dict[str, object]]:
        with sqlite3.connect(tmp_path / "s.sqlite") as db:
            texts = stored_texts(db, "alarm")
        return [a for a in map(json.loads, texts) if a["code"] == "UNCLEAN_STOP"]

    def started(proc: stack.Proc) -> None:
        stack.wait_until(lambda: '"started"' in proc.log_path.read_text(), 30, "started")

    procs: list[stack.Proc] = []
    try:
        first = stack.collector(tmp_path, demo, overrides, "first")
        procs.append(first)
        started(first)
        assert (tmp_path / "s.sqlite.running").exists()
        first.kill()  # as a power cut: no chance to stop
        second = stack.collector(tmp_path, demo, overrides, "second")
        procs.append(second)
        started(second)
        (alarm,) = unclean_alarms()
        assert (alarm["source"], alarm["state"]) == ("device", "raised")
        second.signal(signal.SIGTERM)
        assert second.popen.wait(20) == 0
        assert not (tmp_path / "s.sqlite.running").exists()
        third = stack.collector(tmp_path, demo, overrides, "third")
        procs.append(third)
        started(third)
        assert len(unclean_alarms()) == 1, "a clean stop is not an unclean one"
    finally:
        for proc in procs:  # also when an assertion failed: no collector outlives the test
            if proc.popen.poll() is None:
                proc.stop()
        sim.stop()
