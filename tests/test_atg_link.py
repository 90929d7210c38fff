"""``python -m hil.atg`` on a pty: our decoder over a serial-like line, and the ground truth."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from protocols.tls import Deliveries, Inventory, TlsDecoder, build_command

REPO = Path(__file__).resolve().parent.parent
#: Real seconds to wait for the simulator's link and for an answer.
TIMEOUT_S = 10.0


def wait_for_link(proc: subprocess.Popen[str]) -> None:
    assert proc.stderr is not None
    while "link" not in json.loads(proc.stderr.readline() or '{"link": null}'):
        pass


def ask(fd: int, command: bytes) -> object:
    os.write(fd, command + b"\r\n")  # a trailing CR LF is tolerated
    decoder = TlsDecoder()
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready and (items := decoder.receive_data(os.read(fd, 4096))):
            [item] = items
            return item
    raise AssertionError("no answer")


def test_pty_link_and_ground_truth(tmp_path: Path) -> None:
    scenario = tmp_path / "scenario.json"
    scenario.write_text(
        json.dumps(
            {
                "start": "2026-03-01T08:00:00",
                "tanks": [{"tank": 2, "declared_capacity_l": 20000}],
                "events": [
                    {"at_s": 0, "type": "delivery", "tank": 1, "litres": 3000, "minutes": 5},
                    {
                        "at_s": 60,
                        "type": "delivery",
                        "tank": 2,
                        "litres": 2000,
                        "minutes": 5,
                        "hidden": True,
                    },
                    {"at_s": 30, "type": "sale", "tank": 1, "litres": 50},
                ],
            }
        )
    )
    link = tmp_path / "atg"
    argv = [sys.executable, "-m", "hil.atg", "--link", str(link), "--tanks", "2"]
    argv += ["--seed", "5", "--speed", "1200", "--scenario", str(scenario)]
    proc = subprocess.Popen(
        argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for_link(proc)
        fd = os.open(link, os.O_RDWR | os.O_NOCTTY)
        try:
            inventory = ask(fd, build_command("i201"))
            assert isinstance(inventory, Inventory) and len(inventory.tanks) == 2
            time.sleep(1.0)  # 20 simulated minutes: both deliveries are over
            deliveries = ask(fd, build_command("i202"))
            assert isinstance(deliveries, Deliveries)
            assert [len(t.deliveries) for t in deliveries.tanks] == [1, 0]  # tank 2's hidden
        finally:
            os.close(fd)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=TIMEOUT_S)
        assert proc.returncode == 0
        assert not link.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = [json.loads(line) for line in out.splitlines()]
    tanks = [line for line in lines if line["event"] == "tank"]
    assert [(t["tank"], t["declared_capacity_l"]) for t in tanks][1] == (2, 20000)
    assert tanks[1]["capacity_l"] > 20000  # A4: the real tank is bigger than declared
    truth = [(d["tank"], d["litres"], d["hidden"]) for d in lines if d["event"] == "delivery"]
    assert truth == [(1, 3000.0, False), (2, 2000.0, True)]


def test_the_console_clock_is_the_station_time_whatever_the_host_tz(tmp_path: Path) -> None:
    """Without --start the console reads now at --tz (the station's +08:00),
    not the host's TZ: a gauge record is stamped with the station's time."""
    from datetime import datetime, timedelta, timezone

    link = tmp_path / "atg"
    argv = [sys.executable, "-m", "hil.atg", "--link", str(link), "--tanks", "1", "--speed", "0"]
    env = {**os.environ, "TZ": "America/New_York"}
    proc = subprocess.Popen(
        argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        wait_for_link(proc)
        fd = os.open(link, os.O_RDWR | os.O_NOCTTY)
        try:
            inventory = ask(fd, build_command("i201"))
        finally:
            os.close(fd)
    finally:
        proc.kill()
        proc.communicate()
    assert isinstance(inventory, Inventory)
    station_now = datetime.now(timezone(timedelta(hours=8))).replace(tzinfo=None)
    assert abs(inventory.at - station_now) < timedelta(minutes=2), inventory.at
