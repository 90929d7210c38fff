"""The daemon's RSS on an HTTPS endpoint beside the same daemon on MQTT.

    .venv/bin/python bench/http_rss.py [--orders 40] [--settle 10] [--json]

The same one-port station twice — a Sinopec simulator selling ``--orders``
on a pty, the collector (``forecourt run``) with one endpoint — first
``mqtt://`` to a real mosquitto, then ``https://`` to the platform's HTTP
intake (``python -m hil.platform --http``, a test CA as ``uplink.ca_file``),
so the second run has h11, the HTTP client and TLS loaded and in use. Once
the platform holds every order and ``--settle`` seconds more have passed,
the daemon's VmRSS and VmHWM are read from /proc/PID/status. One JSON
object: both, and the difference.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hil import stack, tls_certs
from hil.stack import Mosquitto, Proc

DEV = "bench-gw"
KEY = bytes(range(16))


def status_kb(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def config(work: Path, url: str, ca: Path) -> Path:
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
heartbeat_s = 5
ca_file = "{ca}"
[[uplink.endpoints]]
url = "{url}"
[log]
format = "json"
[clock]
step_threshold_ms = 86400000
[[ports]]
number = 1
device = "{work / "pump1"}"
protocol = "sinopec"
addresses = [1]
""")
    return path


def station(work: Path, transport: str, orders: int, settle: float) -> dict[str, Any]:
    keys = work / "keys.toml"
    keys.write_text(f'k1 = "{KEY.hex()}"\n')
    keys.chmod(0o600)
    ca = tls_certs.authority(work / "pki", "platform CA")
    cert, key = tls_certs.server_cert(ca, work / "pki")
    broker = Mosquitto(work / "broker")
    broker.start()
    intake = stack.free_port()
    rx = Proc("platform", [
        sys.executable, "-m", "hil.platform", "--broker", f"127.0.0.1:{broker.port}",
        "--keys", str(keys), "--client-id", f"rx-{transport}",
        "--http", f"127.0.0.1:{intake}", "--tls-cert", str(cert), "--tls-key", str(key),
    ], work)  # fmt: skip
    procs = [rx]
    try:
        rx.wait_lines(lambda line: line.get("receiver") == "connected", 1, 20)
        procs.append(stack.dispenser(work, work / "pump1", orders=orders, nozzles=2, rate=4.0))
        url = (
            f"mqtt://127.0.0.1:{broker.port}"
            if transport == "mqtt"
            else f"https://127.0.0.1:{intake}/forecourt/v1"
        )
        collector = stack.collector(work, config(work, url, ca.cert_file), [])
        procs.append(collector)
        rx.wait_lines(lambda line: line.get("type") == "order", orders, 120)
        time.sleep(settle)  # a bench's settling time, not a test's synchronisation
        return status_kb(collector.popen.pid)
    finally:
        for proc in reversed(procs):
            proc.stop()
        broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=40)
    parser.add_argument("--settle", type=float, default=10.0)
    parser.add_argument("--json", action="store_true", help="(the output is one JSON object)")
    args = parser.parse_args()
    out: dict[str, Any] = {"bench": "http_rss", "orders": args.orders}
    for transport in ("mqtt", "https"):
        with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
            out[transport] = station(Path(tmp), transport, args.orders, args.settle)
    out["https_minus_mqtt_rss_kb"] = out["https"]["VmRSS"] - out["mqtt"]["VmRSS"]
    out["loadavg"] = Path("/proc/loadavg").read_text().split()[0]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
