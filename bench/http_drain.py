"""Backlog drain over HTTP(S) beside MQTT, and bytes per order on the wire.

    .venv/bin/python bench/http_drain.py [--orders 20000] [--batch 100] [--inflight 4]
        [--checked 2000] [--json]

Fills a store with ``--orders`` realistic orders (bench/store.py's) and lets
the real Uplink drain it three ways, each from a fresh copy of the store:

- **mqtt**: to a real mosquitto (QoS 1, marked on PUBACK), as bench/drain.py;
  wire bytes = the envelopes plus MQTT's framing per message, computed from
  the packet layout (fixed header, topic, packet id; the 4-byte PUBACK);
- **http** and **https**: to the platform's HTTP intake in its own process
  (``python -m hil.platform --http … --ack-only``: it acks every well-formed
  envelope, sealed, without opening it — what a broker's PUBACK says), on one
  kept-alive connection; wire bytes = what the intake counted read and
  written per request (HTTP heads and bodies; TLS records not counted);
- **https, checked**: ``--checked`` orders to the same intake doing the
  reference receiver's full checks (pure-Python SM4-GCM, SM3 per order): the
  test platform's own pace, not the device's.

Defaults are the daemon's (``batch_max_records`` 100, ``max_inflight`` 4).
One JSON object: orders/s and bytes per order of each.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import structlog
from store import order  # bench/store.py

from buffer.store import OrderStore
from hil import stack, tls_certs
from hil.stack import Mosquitto
from uplink.failover import Endpoint
from uplink.mqtt import Uplink, UplinkSettings

KEY = bytes(range(16))
DEV = "bench-gw"


def settings(batch: int, inflight: int, endpoint: Endpoint, ca: Path | None) -> UplinkSettings:
    return UplinkSettings(
        device_id=DEV, host="unused", port=1, kid="k1", key=KEY, batch_max_records=batch,
        max_inflight=inflight, heartbeat_s=3600, endpoints=(endpoint,),
        ca_file=None if ca is None else str(ca),
    )  # fmt: skip


async def drain(store: OrderStore, s: UplinkSettings) -> tuple[float, Uplink]:
    uplink = Uplink(s, store, lambda: {})
    started = time.perf_counter()
    task = asyncio.create_task(uplink.run())
    while store.unsent(0, 1):
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - started
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return elapsed, uplink


def _varint_len(n: int) -> int:
    return 1 if n < 128 else 2 if n < 16_384 else 3 if n < 2_097_152 else 4


def mqtt_wire(uplink: Uplink, kind: str = "order") -> float:
    """Envelope bytes plus MQTT 3.1.1 framing per QoS 1 PUBLISH and its PUBACK."""
    s = uplink.stats
    topic = len(f"forecourt/v1/{DEV}/up/{kind}")
    payload = s.bytes / max(1, s.messages)
    remaining = 2 + topic + 2 + payload
    per_message = 1 + _varint_len(int(remaining)) + (2 + topic + 2) + 4
    return (s.bytes + s.messages * per_message) / max(1, s.records)


def intake(
    work: Path, keys: Path, tls: tuple[Path, Path] | None, ack_only: bool
) -> tuple[Any, int]:
    port = stack.free_port()
    argv = [sys.executable, "-m", "hil.platform", "--broker", "", "--keys", str(keys),
            "--http", f"127.0.0.1:{port}"]  # fmt: skip
    if tls is not None:
        argv += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
    if ack_only:
        argv.append("--ack-only")
    proc = stack.Proc(f"intake-{port}", argv, work)
    proc.wait_lines(lambda line: line.get("receiver") == "listening", 1, 20)
    return proc, port


def wire_counted(proc: Any) -> int:
    total = 0
    for text in proc.log_path.read_text().splitlines():
        if text.startswith('{"http"'):
            wire = json.loads(text)["http"]
            total += wire["bytes_in"] + wire["bytes_out"]
    return total


def run_http(
    work: Path, source: Path, orders: int, batch: int, inflight: int, tls: bool, ack_only: bool
) -> dict[str, Any]:
    keys = work / "keys.toml"
    keys.write_text(f'k1 = "{KEY.hex()}"\n')
    ca = tls_certs.authority(work / "pki")
    cert = tls_certs.server_cert(ca, work / "pki") if tls else None
    proc, port = intake(work, keys, cert, ack_only)
    copy = work / f"copy-{port}.sqlite"
    shutil.copy(source, copy)
    store = OrderStore(copy)
    scheme = "https" if tls else "http"
    endpoint = Endpoint(scheme, "127.0.0.1", port, None, tls, scheme, "/forecourt/v1")
    try:
        elapsed, uplink = asyncio.run(
            drain(store, settings(batch, inflight, endpoint, ca.cert_file if tls else None))
        )
    finally:
        store.close()
        time.sleep(0.3)  # the intake's last lines
        proc.stop()
    return {
        "orders_per_s": round(orders / elapsed),
        "wire_bytes_per_order": round(wire_counted(proc) / orders, 1),
        "envelope_bytes_per_order": round(uplink.stats.bytes / uplink.stats.records, 1),
        "messages": uplink.stats.messages,
        "requests": sum(1 for t in proc.log_path.read_text().splitlines() if '"POST"' in t),
    }


def main() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--inflight", type=int, default=4)
    parser.add_argument("--checked", type=int, default=2000)
    parser.add_argument("--json", action="store_true", help="(the output is one JSON object)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        work = Path(tmp)
        sources = {}
        for n in {args.orders, args.checked}:
            store = OrderStore(work / f"source-{n}.sqlite")
            items = [order(i) for i in range(n)]
            for start in range(0, n, 1000):
                store.append_orders(items[start : start + 1000])
            store.close()
            sources[n] = work / f"source-{n}.sqlite"
        out: dict[str, Any] = {"bench": "http_drain", "orders": args.orders, "batch": args.batch,
                               "inflight": args.inflight}  # fmt: skip
        broker = Mosquitto(work / "broker")
        broker.start()
        try:
            shutil.copy(sources[args.orders], work / "mqtt.sqlite")
            store = OrderStore(work / "mqtt.sqlite")
            endpoint = Endpoint("mqtt", "127.0.0.1", broker.port)
            elapsed, uplink = asyncio.run(
                drain(store, settings(args.batch, args.inflight, endpoint, None))
            )
            store.close()
        finally:
            broker.stop()
        out["mqtt"] = {
            "orders_per_s": round(args.orders / elapsed),
            "wire_bytes_per_order": round(mqtt_wire(uplink), 1),
            "envelope_bytes_per_order": round(uplink.stats.bytes / uplink.stats.records, 1),
            "messages": uplink.stats.messages,
        }
        for name, tls in (("http", False), ("https", True)):
            out[name] = run_http(
                work, sources[args.orders], args.orders, args.batch, args.inflight, tls, True
            )
        checked = run_http(
            work, sources[args.checked], args.checked, args.batch, args.inflight, True, False
        )
        out["https_checked"] = {"orders": args.checked, **checked}
        out["loadavg"] = Path("/proc/loadavg").read_text().split()[0]
        print(json.dumps(out))


if __name__ == "__main__":
    main()
