"""Footprint: a started collector has imported nothing from the deny-list.

The real daemon (``forecourt run``, a subprocess) on a real station: a
mosquitto broker, one dispenser simulator per protocol on its pty, platform
commands on (SM2 keys provisioned). Once every port is online and the uplink
connected, two independent looks: what the daemon reports about itself
(``forecourt status --json``: ``heavy_modules``, read from its sys.modules),
and what the kernel maps into its address space (/proc/<pid>/maps: no
extension module of a deny-listed package, e.g. pydantic_core's .so).
No timing or RSS threshold here: those are goals measured by bench/startup.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from collector.tools.footprint import DENY
from hil import stack, station
from hil.stack import Mosquitto
from uplink.crypto import sm2_generate

PORTS = 3  # one each of sinopec, dart, gilbarco (hil/station.py)


def status(config: Path, socket: Path) -> dict[str, object]:
    argv = ["status", "--json", "--config", str(config), "--socket", str(socket)]
    out = subprocess.run(
        [sys.executable, "-m", "collector", *argv],
        cwd=stack.ROOT, capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    result: dict[str, object] = json.loads(out.stdout)
    return result


def mapped_files(pid: int) -> set[str]:
    """Every file mapped into ``pid``'s address space."""
    lines = Path(f"/proc/{pid}/maps").read_text().splitlines()
    return {line.split(maxsplit=5)[-1] for line in lines if "/" in line}


def mapped_packages(files: set[str]) -> set[str]:
    """Top-level site-packages directories with a file mapped."""
    inside = [path.split("site-packages/", 1)[1] for path in files if "site-packages/" in path]
    return {path.split("/")[0].split(".")[0] for path in inside}


def test_started_collector_imports_nothing_from_the_deny_list(
    tmp_path: Path, broker: Mosquitto
) -> None:
    platform, device = sm2_generate(), sm2_generate()
    (tmp_path / "device-sm2.toml").write_text(f'private = "{device[0]}"\npublic = "{device[1]}"\n')
    (tmp_path / "device-sm2.toml").chmod(0o600)
    (tmp_path / "platform.pub.toml").write_text(f'public = "{platform[1]}"\n')
    sims = station.start_dispensers(tmp_path, PORTS, orders=0, rate=0.1)
    config = station.write_config(tmp_path / "station.toml", tmp_path, broker.port, PORTS)
    collector = stack.collector(
        tmp_path,
        config,
        [
            f"uplink.device_key_file={tmp_path / 'device-sm2.toml'}",
            f"uplink.platform_public_key_file={tmp_path / 'platform.pub.toml'}",
        ],
    )
    try:
        stack.wait_until(
            lambda: "commands_subscribed" in collector.log_path.read_text(), 60, "down/cmd"
        )
        sock = tmp_path / "control.sock"  # stack.collector's --set control.socket
        stack.wait_until(sock.exists, 30, "control socket")
        stack.wait_until(
            lambda: status(config, sock)["ports_online"] == PORTS, 60, "every port online"
        )
        now = status(config, sock)
        assert now["uplink_connected"] is True, now
        assert now["heavy_modules"] == [], now
        # SM4 on the system libcrypto (uplink/sm4_openssl.py), not cryptography's
        # own OpenSSL: the daemon says which back-end it loaded, and the maps
        # hold no file of cryptography's (libcrypto itself is hashlib's too).
        started = [line for line in collector.log_path.read_text().splitlines()
                   if '"event": "started"' in line]  # fmt: skip
        assert started and json.loads(started[-1])["sm4"] == "openssl", started
        files = mapped_files(collector.popen.pid)
        assert any("libcrypto.so.3" in path for path in files), "the maps were read"
        mapped = mapped_packages(files)
        assert mapped.isdisjoint(DENY), sorted(mapped & DENY)
        assert "cryptography" not in mapped
    finally:
        collector.stop()
        for sim in sims.values():
            sim.stop()
