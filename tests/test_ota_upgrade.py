"""Signed A/B upgrade end to end (SPEC D8; docs/upgrade.md).

Real parts only: bundles built by scripts/build-bundle from this tree (release
A 1.0.0, release B 1.1.0 and two deliberately broken B's), served by
hil/release_server.py over loopback HTTP; the release launcher run by a
systemd stand-in (hil/supervisor.py: restart on a non-zero exit, as
Restart=on-failure + RestartForceExitStatus=75) with the base python;
real venvs made by the collector's own installer; mosquitto; commands signed
by hil/platform; a dispenser simulator on a pty.

Test time: the dependency wheelhouse is cached under .pytest_cache (built once
per machine), the four bundles are built once per session, and release A is
installed once per session and copied into each test's root (a venv works
from a copy: the launcher starts ``venv/bin/python -I -m collector``, which
finds its site-packages from its own path; nothing in it is rewritten).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from collector.ota import launcher
from collector.ota.bundle import signed_statement
from hil import stack
from hil.platform.commands import command_body, publish_command, seal_command
from hil.stack import Mosquitto, Proc
from hil.supervisor import Supervisor
from uplink.crypto import sm2_generate, sm2_sign

DEMO_CONFIG = stack.ROOT / "config" / "demo.toml"
BUILD = stack.ROOT / "scripts" / "build-bundle"
WHEELHOUSE = stack.ROOT / ".pytest_cache" / "ota-wheelhouse"
DEV = "demo-gw-01"
K1 = bytes(range(16))
A, B = "1.0.0", "1.1.0"
#: The health gate in tests: hold 2 s healthy, give up after 25 s (a loaded
#: CI machine starts and connects a collector in a few seconds).
HOLD_S, WINDOW_S = 2, 25
#: ota.max_bundle_bytes in tests: above a real bundle (~14 MB), below "oversized".
MAX_BUNDLE = 32 * 1024 * 1024
#: Between two commands: over 1 / VERIFY_RATE_PER_S (uplink/commands.py).
SEND_GAP_S = 0.6
#: Orders sold during the A → B test, per second: ~15 s of sales span the
#: download, install, switch and health gate.
ORDERS, ORDER_RATE = 15, 1.0
#: Where the resume test's first download is cut off.
CUT_BYTES = 3_000_000


def secret(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


@dataclass(frozen=True)
class Releases:
    dir: Path
    key: tuple[str, str]
    public_file: Path
    args: dict[str, dict[str, Any]]  # bundle file name → {version, size, sm3, sig}
    installed_a: Path  # a root with release A installed and current


def build(key_file: Path, out: Path, *extra: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(BUILD), "--key", str(key_file), "--out", str(out),
         "--wheelhouse", str(WHEELHOUSE), *extra],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.fixture(scope="session")
def releases(tmp_path_factory: pytest.TempPathFactory) -> Releases:
    work = tmp_path_factory.mktemp("releases")
    key = sm2_generate()
    key_file = secret(work / "release-sm2.toml", f'private = "{key[0]}"\npublic = "{key[1]}"\n')
    public_file = work / "release.pub.toml"
    public_file.write_text(f'public = "{key[1]}"\n')
    out = work / "www"
    args: dict[str, dict[str, Any]] = {}
    builds = [[], ["--break=crash"], ["--break=no-platform"]]
    for extra in [[f"--version={A}"], *([f"--version={B}", *b] for b in builds)]:
        result = build(key_file, out, *extra)
        args[Path(result.pop("bundle")).name] = result
    root = work / "installed-a"
    done = subprocess.run(
        [sys.executable, "-m", "collector.ota.install", "--root", str(root),
         str(out / f"forecourt-collector-{A}.bundle")],
        capture_output=True, text=True, timeout=600, cwd=stack.ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return Releases(out, key, public_file, args, root)


def snapshot(root: Path) -> dict[str, Any]:
    """Everything a refused upgrade must leave alone: release A's files, current, the state."""
    files = {}
    for path in sorted((root / "releases").rglob("*")):
        if path.is_file() and not path.is_symlink():
            st = path.stat()
            files[str(path.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return {
        "files": files,
        "current": os.readlink(root / "current"),
        "state": (root / launcher.STATE_FILE).read_text(),
    }


@dataclass
class Station:
    work: Path
    root: Path
    broker: Mosquitto
    releases: Releases
    platform: tuple[str, str]
    receiver: Proc
    server: Proc
    server_port: int
    procs: list[Proc] = field(default_factory=list)
    supervisor: Supervisor | None = None
    seq: int = 0
    last_send: float = 0.0

    def start(self) -> Supervisor:
        w = self.work
        args = ["run", "--config", str(DEMO_CONFIG)]
        for item in (
            f"store.path={w / 'store.sqlite'}", f"ports.0.device={w / 'pump1'}",
            f"uplink.port={self.broker.port}", f"uplink.keys_file={w / 'keys.toml'}",
            "uplink.kid=k1", f"uplink.device_key_file={w / 'device-sm2.toml'}",
            f"uplink.platform_public_key_file={w / 'platform.pub.toml'}",
            "uplink.reconnect_min_s=0.2", "uplink.reconnect_max_s=1.0", "uplink.heartbeat_s=1",
            "clock.step_threshold_ms=86400000", "log.format=json",
            f"control.socket={w / 'control.sock'}", f"ota.root={self.root}",
            f"ota.release_public_key_file={self.releases.public_file}",
            f"ota.health_window_s={WINDOW_S}", f"ota.health_hold_s={HOLD_S}",
            f"ota.max_bundle_bytes={MAX_BUNDLE}",
        ):  # fmt: skip
            args += ["--set", item]
        self.supervisor = Supervisor(w, self.root, args).start()
        self.wait_log("commands_subscribed", 1)
        return self.supervisor

    def wait_log(self, text: str, count: int, timeout: float = 60) -> None:
        sup = self.supervisor
        assert sup is not None
        stack.wait_until(lambda: sup.log_text().count(text) >= count, timeout, f"{count}× {text}")

    def send(self, name: str, args: dict[str, Any] | None = None) -> str:
        # The device answers at most 2 commands/s beyond a burst of 5 (the
        # token bucket drops the rest without a reply): stay under it.
        time.sleep(max(0.0, self.last_send + SEND_GAP_S - time.monotonic()))
        self.last_send = time.monotonic()
        private, public = self.platform
        body = command_body(name, args, private=private, public=public)
        self.seq += 1
        payload = seal_command(body, dev=DEV, kid="k1", key=K1, seq=self.seq)
        asyncio.run(publish_command("127.0.0.1", self.broker.port, DEV, payload))
        return str(body["id"])

    def replies(self, command_id: str, count: int, timeout: float = 60) -> list[dict[str, Any]]:
        lines = self.receiver.wait_lines(
            lambda x: x.get("type") == "reply" and x["record"]["id"] == command_id, count, timeout
        )
        return [x["record"] for x in lines]

    def final(self, command_id: str, timeout: float = 120) -> dict[str, Any]:
        """The last reply of an ota command: an error, ``committed`` or ``rolled_back``."""

        def done(x: dict[str, Any]) -> bool:
            if x.get("type") != "reply" or x["record"]["id"] != command_id:
                return False
            r = x["record"]
            return not r["ok"] or r["result"].get("stage") in ("committed", "rolled_back")

        (line,) = self.receiver.wait_lines(done, 1, timeout)[-1:]
        record: dict[str, Any] = line["record"]
        return record

    def upgrade(self, bundle: str, **override: Any) -> str:
        """``ota.upgrade`` with ``bundle``'s build-bundle arguments; ``file``
        serves another file under them, other keywords replace arguments."""
        served = override.pop("file", bundle)
        args = {**self.releases.args[bundle], **override}
        args["url"] = f"http://127.0.0.1:{self.server_port}/{served}"
        return self.send("ota.upgrade", args)

    def heartbeat_version(self, version: str, timeout: float = 60) -> dict[str, Any]:
        lines = self.receiver.wait_lines(
            lambda x: x.get("type") == "heartbeat" and x["body"]["version"] == version, 1, timeout
        )
        body: dict[str, Any] = lines[-1]["body"]
        return body


@pytest.fixture
def station(
    tmp_path: Path, broker: Mosquitto, releases: Releases, request: pytest.FixtureRequest
) -> Iterator[Station]:
    platform, device = sm2_generate(), sm2_generate()
    secret(tmp_path / "keys.toml", f'k1 = "{K1.hex()}"\n')
    secret(tmp_path / "device-sm2.toml", f'private = "{device[0]}"\npublic = "{device[1]}"\n')
    (tmp_path / "platform.pub.toml").write_text(f'public = "{platform[1]}"\n')
    root = tmp_path / "ota"
    shutil.copytree(releases.installed_a, root, symlinks=True)
    www = tmp_path / "www"
    www.mkdir()
    for bundle in releases.args:
        os.link(releases.dir / bundle, www / bundle)
    # The A → B test cuts its first download at CUT_BYTES and sells fuel
    # throughout (orders must cross the upgrade); the others neither.
    cut = request.node.name.startswith("test_upgrade_a_to_b")
    port = stack.free_port()
    argv = [sys.executable, "-m", "hil.release_server", "--dir", str(www), "--port", str(port)]
    argv += ["--cut-once", str(CUT_BYTES)] if cut else []
    server = Proc("release-server", argv, tmp_path)
    server.wait_lines(lambda x: "listening" in x, 1, 20)
    receiver = stack.receiver(tmp_path, broker.port, tmp_path / "keys.toml", f"rx-{tmp_path.name}")
    dispenser = stack.dispenser(
        tmp_path, tmp_path / "pump1", orders=ORDERS if cut else 0, nozzles=2, rate=ORDER_RATE
    )
    st = Station(tmp_path, root, broker, releases, platform, receiver, server, port,
                 [server, receiver, dispenser])  # fmt: skip
    try:
        yield st
    finally:
        if st.supervisor is not None:
            st.supervisor.stop()
        for proc in reversed(st.procs):
            proc.stop()


def stages(replies: list[dict[str, Any]]) -> list[str]:
    return [r["result"]["stage"] if r["ok"] else r["error"]["code"] for r in replies]


def test_upgrade_a_to_b_resumed_marked_good_then_rolled_back(station: Station) -> None:
    """A → B: the download is cut at CUT_BYTES and resumed with Range; B is installed
    beside A, switched to, passes its health gate and is marked good; the
    heartbeat and the retained state say 1.1.0; every order sold meanwhile
    arrives once with its chain intact (store first, across the upgrade).
    ``ota.rollback`` returns to A."""
    sup = station.start()
    station.heartbeat_version(A)
    cid = station.upgrade(f"forecourt-collector-{B}.bundle")
    final = station.final(cid)
    assert final["ok"] is True and final["result"] == {"stage": "committed", "version": B}
    assert stages(station.replies(cid, 5)) == [
        "accepted", "downloaded", "installed", "switching", "committed",
    ]  # fmt: skip
    requests = station.server.snapshot()
    assert [r["status"] for r in requests if "path" in r] == [200, 206], requests
    assert requests[1]["sent"] == CUT_BYTES, "the first response was cut"
    resumed_at = int(requests[2]["range"].removeprefix("bytes=").removesuffix("-"))
    assert 0 < resumed_at <= CUT_BYTES, "resumed after what had arrived, not from 0"
    assert sup.exits[0] == 75, "A stopped with 75 for the launcher to start B"
    beat = station.heartbeat_version(B)
    assert beat["slot"] == B
    station.receiver.wait_lines(
        lambda x: x.get("type") == "state" and (x["body"] or {}).get("version") == B, 1, 30
    )  # the retained state on connect says the new version too
    state = json.loads((station.root / launcher.STATE_FILE).read_text())
    assert state["good"] == B and state["previous"] == A and state["trial"] is None
    assert os.readlink(station.root / "current") == f"releases/{B}"
    assert sorted(p.name for p in (station.root / "releases").iterdir()) == [A, B]
    assert list((station.root / "staging").glob("*")) == []
    orders = station.receiver.wait_lines(lambda x: x.get("type") == "order", ORDERS, 120)
    assert len({x["record"]["rid"] for x in orders}) == ORDERS
    assert {x["chain"] for x in orders} == {"ok"}

    back = station.send("ota.rollback")
    final = station.final(back)
    assert final["ok"] is True and final["result"] == {"stage": "rolled_back", "version": A}
    station.heartbeat_version(A)
    state = json.loads((station.root / launcher.STATE_FILE).read_text())
    assert state["good"] == A and state["previous"] == B
    assert os.readlink(station.root / "current") == f"releases/{A}"


def test_b_that_crashes_at_start_is_rolled_back(station: Station) -> None:
    """A B that exits 1 at once never judges itself: the launcher counts its
    starts and after MAX_TRIAL_STARTS goes back to A, which reports it."""
    sup = station.start()
    cid = station.upgrade(f"forecourt-collector-{B}-crash.bundle")
    final = station.final(cid)
    assert final["ok"] is False and final["error"]["code"] == "ROLLED_BACK", final
    assert "without being marked good" in final["error"]["message"]
    assert sup.exits[: 1 + launcher.MAX_TRIAL_STARTS] == [75] + [1] * launcher.MAX_TRIAL_STARTS
    station.receiver.wait_lines(
        lambda x: x.get("type") == "alarm" and x["record"]["code"] == "OTA_ROLLED_BACK", 1, 30
    )
    station.heartbeat_version(A)
    state = json.loads((station.root / launcher.STATE_FILE).read_text())
    assert state["good"] == A and state["trial"] is None
    assert os.readlink(station.root / "current") == f"releases/{A}"


def test_b_that_never_reaches_the_platform_is_rolled_back(station: Station) -> None:
    """B runs (store, ports) but its uplink never connects: its own health
    gate fails at the window's end, and the launcher starts A again."""
    sup = station.start()
    cid = station.upgrade(f"forecourt-collector-{B}-no-platform.bundle")
    final = station.final(cid, timeout=180)
    assert final["ok"] is False and final["error"]["code"] == "ROLLED_BACK", final
    assert "platform not reached" in final["error"]["message"]
    assert sup.exits[:2] == [75, 75], "B judged itself and stopped for the launcher"
    station.heartbeat_version(A)
    assert os.readlink(station.root / "current") == f"releases/{A}"


def test_sigkill_during_the_install_leaves_a_release_that_starts(station: Station) -> None:
    """SIGKILL of A while it installs B (after ``downloaded``): systemd starts
    the launcher again, A (still current, no trial) runs, the half-made B is
    removed at its start; the next ota.upgrade installs B and commits it."""
    sup = station.start()
    bundle = f"forecourt-collector-{B}.bundle"
    cid = station.upgrade(bundle)
    station.receiver.wait_lines(
        lambda x: x.get("type") == "reply" and x["record"].get("result", {}).get("stage")
        == "downloaded", 1, 60,
    )  # fmt: skip
    sup.current.kill()
    stack.wait_until(lambda: len(sup.runs) == 2, 30, "the restart after SIGKILL")
    station.wait_log("commands_subscribed", 2)
    state = json.loads((station.root / launcher.STATE_FILE).read_text())
    assert state["good"] == A and state["trial"] is None
    assert os.readlink(station.root / "current") == f"releases/{A}"
    for path in (station.root / "releases").iterdir():
        assert (path / launcher.INSTALLED).exists(), f"{path.name} half made and not removed"
    again = station.upgrade(bundle)
    final = station.final(again)
    assert final["ok"] is True and final["result"]["stage"] == "committed", final
    assert cid != again
    station.heartbeat_version(B)


def test_bad_bundles_are_refused_and_the_running_release_untouched(station: Station) -> None:
    """Unsigned, tampered (wrong SM3), truncated, oversized: precise codes, no
    restart, release A's files, ``current`` and the state as they were."""
    sup = station.start()
    before = snapshot(station.root)
    good = f"forecourt-collector-{B}.bundle"
    www = station.work / "www"
    data = (www / good).read_bytes()
    (www / "tampered.bundle").write_bytes(data[:1000] + bytes([data[1000] ^ 1]) + data[1001:])
    (www / "truncated.bundle").write_bytes(data[: len(data) // 2])
    meta = station.releases.args[good]
    other = sm2_generate()
    private, public = station.releases.key
    short = meta["size"] - 4096  # signed, but the server holds more than that
    unsigned = sm2_sign(other[0], other[1], signed_statement(B, meta["size"], meta["sm3"]))
    short_sig = sm2_sign(private, public, signed_statement(B, short, meta["sm3"]))
    cases: list[tuple[str, dict[str, Any]]] = [
        ("BAD_BUNDLE_SIGNATURE", {"sig": unsigned}),
        ("DIGEST_MISMATCH", {"file": "tampered.bundle"}),
        ("BUNDLE_TRUNCATED", {"file": "truncated.bundle"}),
        ("BUNDLE_TOO_LARGE", {"size": MAX_BUNDLE + 1}),  # over ota.max_bundle_bytes
        # signed for fewer bytes than the server holds: refused at the first extra byte
        ("BUNDLE_TOO_LARGE", {"size": short, "sig": short_sig}),
    ]  # fmt: skip
    for code, override in cases:  # one at a time: a second upgrade meanwhile is BUSY
        final = station.final(station.upgrade(good, **override))
        assert final["ok"] is False and final["error"]["code"] == code, (code, final)
    final = station.final(station.upgrade(f"forecourt-collector-{A}.bundle"))
    assert final["error"]["code"] == "SAME_VERSION", final
    final = station.final(station.send("ota.rollback"))
    assert final["error"]["code"] == "NO_PREVIOUS", final
    assert snapshot(station.root) == before
    assert sorted(p.name for p in (station.root / "releases").iterdir()) == [A]
    assert list((station.root / "staging").glob("*.part")) == []
    assert len(sup.runs) == 1 and sup.current.popen.poll() is None, "A never stopped"
