"""``config.set`` / ``config.rollback`` end to end (SPEC D8, D10).

Real parts: mosquitto, the collector process run from its own config file
and kept running like the systemd unit does (restarted on exit 75:
``hil.stack.Supervised``), a dispenser simulator on a pty, the reference
receiver, and commands signed with a platform SM2 key. What is checked is
what the platform and the disk see: replies, ``CONFIG_CHANGED`` /
``CONFIG_REVERTED`` alarms, ``config.get``, and the config file's bytes.
"""

from __future__ import annotations

import asyncio
import json
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from collector.remote import config_files as files
from config.toml_write import dumps
from hil import stack
from hil.platform.commands import command_body, publish_command, seal_command
from hil.stack import Mosquitto, Proc, Supervised
from uplink.crypto import sm2_generate

DEV = "demo-gw-01"
K1 = bytes(range(16))
#: Generous: CI is two loaded cores; a start plus a connect takes seconds.
WAIT_S = 60


def secret(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


@dataclass
class Station:
    work: Path
    broker: Mosquitto
    config: Path
    platform: tuple[str, str]
    receiver: Proc
    procs: list[Proc] = field(default_factory=list)
    collector: Supervised | None = None
    seq: int = 0

    def start(self) -> Supervised:
        self.collector = Supervised(lambda: stack.collector(self.work, self.config, []))
        self.wait_log("commands_subscribed", 1)
        return self.collector

    def log(self) -> str:
        return (self.work / "collector.log").read_text()

    def wait_log(self, event: str, count: int) -> None:
        def seen() -> int:
            return sum(1 for line in self.log().splitlines() if f'"event": "{event}"' in line)

        stack.wait_until(lambda: seen() >= count, WAIT_S, f"{count} × {event} in the log")

    def command(self, name: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        """Sign, seal and send; return the reply the platform receives."""
        private, public = self.platform
        body = command_body(name, args, private=private, public=public)
        self.seq += 1
        payload = seal_command(body, dev=DEV, kid="k1", key=K1, seq=self.seq)
        asyncio.run(publish_command("127.0.0.1", self.broker.port, DEV, payload))
        (line,) = self.receiver.wait_lines(
            lambda x: x.get("type") == "reply" and x["record"]["id"] == body["id"], 1, WAIT_S
        )
        record: dict[str, Any] = line["record"]
        return record

    def alarm(self, code: str, command_id: str) -> dict[str, Any]:
        (line,) = self.receiver.wait_lines(
            lambda x: (
                x.get("type") == "alarm"
                and x["record"]["code"] == code
                and x["record"]["detail"].get("command_id") == command_id
            ),
            1,
            WAIT_S * 2,
        )
        record: dict[str, Any] = line["record"]
        return record

    def running_config(self) -> dict[str, Any]:
        reply = self.command("config.get")
        assert reply["ok"] is True, reply
        config: dict[str, Any] = reply["result"]["config"]
        return config


@pytest.fixture
def station(tmp_path: Path, broker: Mosquitto) -> Iterator[Station]:
    platform, device = sm2_generate(), sm2_generate()
    secret(tmp_path / "keys.toml", f'k1 = "{K1.hex()}"\n')
    secret(tmp_path / "device-sm2.toml", f'private = "{device[0]}"\npublic = "{device[1]}"\n')
    (tmp_path / "platform.pub.toml").write_text(f'public = "{platform[1]}"\n')
    rx = stack.receiver(tmp_path, broker.port, tmp_path / "keys.toml", f"rx-{tmp_path.name}")
    link = tmp_path / "pump1"
    dispenser = stack.dispenser(tmp_path, link, orders=4, nozzles=2, rate=2, seed=5)
    data = tomllib.loads((stack.ROOT / "config" / "demo.toml").read_text())
    data["store"]["path"] = str(tmp_path / "store.sqlite")
    data["ports"][0]["device"] = str(link)
    data["uplink"].update(
        port=broker.port,
        keys_file=str(tmp_path / "keys.toml"),
        kid="k1",
        device_key_file=str(tmp_path / "device-sm2.toml"),
        platform_public_key_file=str(tmp_path / "platform.pub.toml"),
        reconnect_min_s=0.2,
        reconnect_max_s=1.0,
    )
    # The whole config in the file (no --set): config.set refuses keys --set overrides.
    data["control"] = {"socket": str(tmp_path / "control.sock")}
    data["log"] = {"format": "json"}
    data["clock"] = {"step_threshold_ms": 86_400_000}  # never step this machine's clock
    config = tmp_path / "station.toml"
    config.write_text("# the station's own file, with a comment\n" + dumps(data))
    s = Station(tmp_path, broker, config, platform, rx, [rx, dispenser])
    try:
        yield s
    finally:
        if s.collector is not None:
            s.collector.stop()
        for proc in reversed(s.procs):
            proc.stop()


def test_a_valid_change_sticks_live_or_by_restart_and_rollback_restores(station: Station) -> None:
    """D8: a live key (heartbeat) applies at once; a restart key (batch size)
    after a clean restart (exit 75); both are confirmed by the platform's
    broker (CONFIG_CHANGED delivered, marker gone) and shown by config.get;
    config.rollback brings back the previous file byte for byte."""
    collector = station.start()
    original = station.config.read_bytes()
    # Canonical JSON (what is signed) has no floats: "0.05", as config.get shows it.
    live_patch = {"uplink": {"heartbeat_s": 2}, "edge": {"amount_tolerance": "0.05"}}
    live = station.command("config.set", {"patch": live_patch})
    assert live["ok"] is True, live
    assert live["result"]["changed"] == ["edge.amount_tolerance", "uplink.heartbeat_s"]
    assert live["result"]["apply"] == "live" and live["result"]["confirm_within_s"] == 300
    station.alarm("CONFIG_CHANGED", live["id"])
    stack.wait_until(lambda: not files.pending_path(station.config).exists(), WAIT_S, "confirmed")
    running = station.running_config()
    assert (
        running["uplink"]["heartbeat_s"] == "2.0" and running["edge"]["amount_tolerance"] == "0.05"
    )
    assert tomllib.loads(station.config.read_text())["uplink"]["heartbeat_s"] == 2
    assert files.prev_path(station.config).read_bytes() == original
    assert collector.exits == [], "a live change does not restart"
    # Validated in a child (collector/remote/config_plan.py): the daemon itself still
    # has no pydantic mapped (the footprint survives a remote change).
    pid = collector.current.popen.pid
    assert "pydantic_core" not in Path(f"/proc/{pid}/maps").read_text()
    # ... and the child is gone: no helper process stays beside the daemon.
    assert Path(f"/proc/{pid}/task/{pid}/children").read_text().split() == []
    # Live indeed: the heartbeats now come every 2 s of the device's uptime, not
    # 10 (the first may still have been waiting out the old period).
    seen = len(station.receiver.snapshot())

    def beats_since() -> list[int]:
        later = station.receiver.snapshot()[seen:]
        return [x["body"]["uptime_s"] for x in later if x.get("type") == "heartbeat"]

    stack.wait_until(lambda: len(beats_since()) >= 3, WAIT_S, "3 heartbeats after the change")
    last, before_last = beats_since()[2], beats_since()[1]
    assert last - before_last < 10, beats_since()

    before_restart_change = station.config.read_bytes()
    password = "s3cret-Pa55-w0rd"  # mosquitto here takes anonymous clients, and these too
    patch = {
        "uplink": {"batch_max_records": 20, "username": "gw", "password": password},
        "ports": {"0": {"response_timeout_ms": 400}},
    }
    change = station.command("config.set", {"patch": patch, "confirm_within_s": 120})
    assert change["ok"] is True, change
    assert change["result"]["apply"] == "restart"
    assert sorted(change["result"]["changed"]) == [
        "ports.0.response_timeout_ms",
        "uplink.batch_max_records",
        "uplink.password",
        "uplink.username",
    ]
    assert collector.wait_exits(1, WAIT_S) == [75]
    confirmed = station.alarm("CONFIG_CHANGED", change["id"])
    assert confirmed["detail"]["apply"] == "restart"
    stack.wait_until(lambda: not files.pending_path(station.config).exists(), WAIT_S, "confirmed")
    running = station.running_config()
    assert running["uplink"]["batch_max_records"] == 20
    assert running["ports"][0]["response_timeout_ms"] == 400
    assert running["uplink"]["heartbeat_s"] == "2.0", "the earlier change is still there"
    assert running["uplink"]["password"] == "***"
    assert password not in station.log() and password not in json.dumps(change)
    assert tomllib.loads(station.config.read_text())["uplink"]["password"] == password
    fixed = station.command("config.set", {"patch": {"store": {"path": "/tmp/elsewhere.sqlite"}}})
    assert fixed["error"]["code"] == "BAD_PATCH", fixed

    back = station.command("config.rollback")
    assert back["ok"] is True and back["result"]["apply"] == "restart", back
    assert collector.wait_exits(2, WAIT_S) == [75, 75]
    station.alarm("CONFIG_CHANGED", back["id"])
    stack.wait_until(lambda: not files.pending_path(station.config).exists(), WAIT_S, "confirmed")
    assert station.config.read_bytes() == before_restart_change
    assert station.running_config()["uplink"]["batch_max_records"] == 50


def test_an_unreachable_broker_is_reverted_by_the_device_itself(station: Station) -> None:
    """D8, D10: the platform address set to a broker that is not there; the
    collector restarts onto it, is SIGKILLed in the window and started again
    (the deadline holds), cannot reach the broker within the window, puts the
    old file back, restarts, reconnects to the old broker and delivers
    CONFIG_REVERTED (stored first: it waited for the old link)."""
    collector = station.start()
    original = station.config.read_bytes()
    nowhere = stack.free_port()
    window = 30
    change = station.command(
        "config.set", {"patch": {"uplink": {"port": nowhere}}, "confirm_within_s": window}
    )
    assert change["ok"] is True and change["result"]["apply"] == "restart", change
    assert change["result"]["changed"] == ["uplink.port"]
    assert collector.wait_exits(1, WAIT_S) == [75]
    stack.wait_until(
        lambda: tomllib.loads(station.config.read_text())["uplink"]["port"] == nowhere,
        WAIT_S,
        "the new file",
    )
    # Two thirds into the window the box loses power (SIGKILL); the next start
    # keeps the first deadline (boot time in the marker), it does not start over.
    stack.wait_until(
        lambda: time.time_ns() // 1_000_000 > change["result"]["confirm_by_ms"] - 10_000,
        window + WAIT_S,
        "two thirds of the window",
    )
    collector.current.kill()
    assert collector.wait_exits(3, window + WAIT_S) == [75, -9, 75], "reverted, then restarted"
    reverted = station.alarm("CONFIG_REVERTED", change["id"])
    detail = reverted["detail"]
    assert detail["changed"] == ["uplink.port"] and detail["window_s"] == window
    assert "not reached within 30 s" in detail["reason"]
    assert detail["reverted_at_ms"] >= change["result"]["confirm_by_ms"], "not before the window"
    # A window started over at the kill would end 20 s later than the first one.
    assert detail["reverted_at_ms"] < change["result"]["confirm_by_ms"] + 15_000
    assert station.config.read_bytes() == original
    assert not files.pending_path(station.config).exists()
    assert not files.note_path(station.config).exists(), "the note became the alarm"
    assert station.running_config()["uplink"]["port"] == station.broker.port
    after = station.log().split('"config_reverted"')[-1]
    connects = [json.loads(x) for x in after.splitlines() if '"uplink_connected"' in x]
    assert connects and {c["port"] for c in connects} == {station.broker.port}
    # The running file is now the previous one again: a rollback has nothing
    # to switch, says so, and neither writes nor restarts.
    again = station.command("config.rollback")
    assert again["ok"] is True and again["result"] == {"changed": [], "apply": "none"}, again
    assert station.config.read_bytes() == original
    assert not files.pending_path(station.config).exists()
    time.sleep(1)  # a restart would follow its reply within milliseconds
    assert collector.exits == [75, -9, 75], "no restart for a rollback to the running config"
    assert collector.current.popen.poll() is None


def test_an_invalid_patch_is_refused_with_its_reasons_and_nothing_changes(
    station: Station,
) -> None:
    """D8: the same validation as the file; every reason as ``key.path: reason``;
    no file written, no marker, no restart; a secret in the patch is not echoed."""
    collector = station.start()
    original = station.config.read_bytes()

    def beside_config() -> list[str]:
        return sorted(p.name for p in station.work.iterdir() if "station.toml" in p.name)

    assert beside_config() == ["station.toml"]
    bad = station.command(
        "config.set",
        {
            "patch": {
                "uplink": {"port": 70000, "hearbeat_s": 5, "password": 12345678},
                "uplink.host": "10.0.0.1",
            }
        },
    )
    assert bad["ok"] is False, bad
    assert bad["error"]["code"] == "INVALID_CONFIG"
    message = bad["error"]["message"]
    assert "uplink.port: must be <= 65535, got 70000" in message
    assert "uplink.hearbeat_s: unknown key" in message
    assert "uplink.password: expected a string (a secret: its value is not shown)" in message
    assert '"uplink.host": unknown key (dotted keys are not paths here' in message
    assert "12345678" not in message and "12345678" not in station.log()
    shape = station.command("config.set", {"patch": {"ports": {"3": {"baudrate": 4800}}}})
    assert shape["error"]["code"] == "BAD_PATCH", shape
    assert "ports.3: index out of range (1 items)" in shape["error"]["message"]
    window = station.command("config.set", {"patch": {"log": {}}, "confirm_within_s": 5})
    assert window["error"]["code"] == "BAD_REQUEST", window
    assert station.config.read_bytes() == original
    assert beside_config() == ["station.toml"], "no .prev, marker or temp file"
    assert collector.exits == []


def test_a_config_that_cannot_start_is_reverted_at_once(station: Station) -> None:
    """D8: valid to the schema but the start refuses it (its key file is not
    there): the failed start puts ``.prev`` back and exits 75 at once instead of
    crash-looping until the window ends; the old config reports CONFIG_REVERTED."""
    collector = station.start()
    original = station.config.read_bytes()
    missing = station.work / "no-such-keys.toml"
    change = station.command(
        "config.set", {"patch": {"uplink": {"keys_file": str(missing)}}, "confirm_within_s": 600}
    )
    assert change["ok"] is True and change["result"]["apply"] == "restart", change
    assert collector.wait_exits(2, WAIT_S) == [75, 75]
    reverted = station.alarm("CONFIG_REVERTED", change["id"])
    assert "the new config did not start" in reverted["detail"]["reason"]
    assert str(missing) in reverted["detail"]["reason"]
    assert station.config.read_bytes() == original
    assert not files.pending_path(station.config).exists()
