"""The second road end to end (SPEC D3, D18): MQTT down, HTTPS carries on, MQTT back.

Real parts, each its own process: mosquitto (stopped and started), the
reference platform with both front doors — the MQTT subscriber and the HTTPS
intake (hil/platform/http_door.py, a certificate from a test CA the collector
is given as ``uplink.ca_file``) sharing one receiver —, a Sinopec dispenser
simulator selling on a pty, and the collector with two endpoints in
priority order, ``mqtt://`` then ``https://``.

While the broker is stopped the sales arrive over HTTPS and a command
spooled at the platform's command URL is polled, run and answered over it;
once the broker is back the probes take the collector back to MQTT. At the
end every order the dispenser sold reached the platform exactly once after
dedupe by rid (a copy sent twice is the same record), every chain link is
``ok`` and each nozzle's orders arrived in nseq order.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any

from hil import stack, tls_certs
from hil.platform.commands import command_body, seal_command
from hil.stack import Mosquitto, Proc
from uplink.crypto import sm2_generate

DEV = "demo-gw-01"
KEY = bytes(range(16))
#: Sales start once the collector is on MQTT (SIGUSR2) and last ORDERS / RATE
#: seconds: the three phases below need about half of that here.
ORDERS = 32
RATE = 1.6


def secret(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


def config(work: Path, broker: int, intake: int, ca: Path) -> Path:
    path = work / "station.toml"
    path.write_text(f"""
[device]
id = "{DEV}"
station = "DEMO-0001"
[store]
path = "{work / "store.sqlite"}"
[uplink]
keys_file = "{work / "keys.toml"}"
kid = "k1"
batch_max_records = 3
heartbeat_s = 2
reconnect_min_s = 0.2
reconnect_max_s = 1.0
attempts_per_endpoint = 1
probe_primary_s = 1
ca_file = "{ca}"
http_command_poll_s = 5
device_key_file = "{work / "device-sm2.toml"}"
platform_public_key_file = "{work / "platform.pub.toml"}"
[[uplink.endpoints]]
name = "mqtt"
url = "mqtt://127.0.0.1:{broker}"
[[uplink.endpoints]]
name = "https"
url = "https://127.0.0.1:{intake}/forecourt/v1"
[log]
format = "json"
[clock]
step_threshold_ms = 86400000
[[ports]]
number = 1
device = "{work / "pump1"}"
protocol = "sinopec"
addresses = [1]
poll_interval_ms = 50
""")
    return path


def orders_via(rx: Proc, via: str) -> int:
    return sum(1 for line in rx.snapshot() if line.get("type") == "order" and line["via"] == via)


def logged(proc: Proc, event: str, **fields: Any) -> int:
    count = 0
    for text in proc.log_path.read_text().splitlines():
        try:
            line = json.loads(text)
        except ValueError:
            continue
        if line.get("event") == event and all(line.get(k) == v for k, v in fields.items()):
            count += 1
    return count


def test_sales_go_over_https_while_the_broker_is_down_and_back_over_mqtt(
    tmp_path: Path, broker: Mosquitto
) -> None:
    platform, device = sm2_generate(), sm2_generate()
    keys = secret(tmp_path / "keys.toml", f'k1 = "{KEY.hex()}"\n')
    secret(tmp_path / "device-sm2.toml", f'private = "{device[0]}"\npublic = "{device[1]}"\n')
    (tmp_path / "platform.pub.toml").write_text(f'public = "{platform[1]}"\n')
    ca = tls_certs.authority(tmp_path / "pki", "platform CA")
    cert, key = tls_certs.server_cert(ca, tmp_path / "pki")
    spool = tmp_path / "commands"
    (spool / DEV).mkdir(parents=True)
    intake = stack.free_port()
    rx = Proc("platform", [
        sys.executable, "-m", "hil.platform", "--broker", f"127.0.0.1:{broker.port}",
        "--keys", str(keys), "--client-id", f"rx-{tmp_path.name}",
        "--http", f"127.0.0.1:{intake}", "--tls-cert", str(cert), "--tls-key", str(key),
        "--commands-dir", str(spool),
    ], tmp_path)  # fmt: skip
    procs = [rx]
    try:
        rx.wait_lines(lambda line: line.get("receiver") == "connected", 1, 20)
        pump = stack.dispenser(
            tmp_path, tmp_path / "pump1", orders=ORDERS, nozzles=2, rate=RATE, seed=7,
            extra=["--start-on-usr2"],
        )  # fmt: skip
        procs.append(pump)
        collector = stack.collector(
            tmp_path, config(tmp_path, broker.port, intake, ca.cert_file), []
        )
        procs.append(collector)
        up = lambda: logged(collector, "uplink_connected", endpoint="mqtt") >= 1  # noqa: E731
        stack.wait_until(up, 30, "the collector on MQTT")
        pump.signal(signal.SIGUSR2)

        # 1. MQTT, the primary.
        stack.wait_until(lambda: orders_via(rx, "mqtt") >= 3, 60, "orders over MQTT")
        # 2. The broker stops: the sales go over HTTPS; a command waiting at
        # the command URL is taken by the first poll of the HTTPS session.
        command = command_body("device.status", private=platform[0], public=platform[1])
        sealed = seal_command(command, dev=DEV, kid="k1", key=KEY, seq=1)
        (spool / DEV / "001.json").write_bytes(sealed)
        broker.stop()
        stack.wait_until(lambda: orders_via(rx, "http") >= 4, 60, "orders over HTTPS")
        assert logged(collector, "uplink_connected", endpoint="https") >= 1
        reply = rx.wait_lines(
            lambda line: line.get("type") == "reply" and line["record"]["id"] == command["id"],
            1,
            60,
        )[0]
        assert reply["via"] == "http" and reply["record"]["ok"] is True, reply
        assert reply["record"]["result"]["link"]["transport"] == "https"
        # 3. The broker is back: the probes take the collector back to MQTT.
        before = orders_via(rx, "mqtt")
        broker.start()
        stack.wait_until(lambda: orders_via(rx, "mqtt") > before, 90, "orders over MQTT again")
        assert logged(collector, "uplink_return", to="mqtt") >= 1

        sold = pump.wait_lines(lambda line: "order_no" in line, ORDERS, 120)
        stack.wait_until(
            lambda: sum(1 for x in rx.snapshot() if x.get("type") == "order") >= ORDERS,
            60,
            "every order at the platform",
        )
    finally:
        for proc in reversed(procs):
            proc.stop()

    lines = rx.snapshot()
    firsts = [line for line in lines if line.get("type") == "order"]
    rids = [line["record"]["rid"] for line in firsts]
    assert len(rids) == len(set(rids)) == ORDERS, "every order once after dedupe by rid"
    assert {line["record"]["order_no"] for line in firsts} == {s["order_no"] for s in sold}
    copies = [line["duplicate"] for line in lines if "duplicate" in line]
    assert all(copy["same"] for copy in copies), "a copy is the same record"
    assert {line["chain"] for line in firsts} == {"ok"}, "chains intact across both doors"
    per_nozzle: dict[str, list[int]] = {}
    for line in firsts:
        per_nozzle.setdefault(line["record"]["nozzle"], []).append(line["record"]["nseq"])
    for nozzle, seqs in per_nozzle.items():
        assert seqs == list(range(1, len(seqs) + 1)), f"{nozzle} arrived as {seqs}"
    assert orders_via(rx, "http") >= 4 and orders_via(rx, "mqtt") > before
