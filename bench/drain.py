"""Backlog drain to a local mosquitto, and bytes on the wire per order.

    .venv/bin/python bench/drain.py [--orders 50000] [--batch 500] [--naive 2000] [--json]

Fills a store with ``--orders`` realistic orders (bench/store.py's), starts a
real mosquitto, and lets the real Uplink drain the backlog: SM4-GCM envelopes,
deflate, QoS 1, mark_published after every PUBACK. Then, in the same run, a naive
publisher: each order sealed alone with pure-Python gmssl SM4-CBC and published
alone at QoS 1, waiting for its PUBACK. Prints orders/s of both, the ratio,
and payload bytes per order of the drain, as one JSON object (``--json``
is accepted for bench/run.py: the output is JSON either way). ``--profile
FILE``: the drain (not the naive publisher) under pyinstrument, text to FILE.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiomqtt
import structlog
from gmssl.sm4 import SM4_ENCRYPT, CryptSM4  # type: ignore[import-untyped]
from store import order, profiled  # bench/store.py

from buffer.store import OrderStore
from hil.stack import Mosquitto
from uplink.envelope import canonical_json
from uplink.mqtt import Uplink, UplinkSettings

KEY = bytes(range(16))


async def drain(store: OrderStore, port: int, batch: int, inflight: int) -> tuple[float, Uplink]:
    settings = UplinkSettings(
        device_id="bench-gw", host="127.0.0.1", port=port, kid="k1", key=KEY,
        batch_max_records=batch, max_inflight=inflight, heartbeat_s=3600,
    )  # fmt: skip
    uplink = Uplink(settings, store, lambda: {})
    started = time.perf_counter()
    task = asyncio.create_task(uplink.run())
    while store.unsent(0, 1):
        await asyncio.sleep(0.02)
    elapsed = time.perf_counter() - started
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return elapsed, uplink


async def naive(port: int, n: int) -> float:
    sm4 = CryptSM4()
    sm4.set_key(KEY, SM4_ENCRYPT)
    async with aiomqtt.Client("127.0.0.1", port, identifier="bench-naive") as client:
        started = time.perf_counter()
        for i in range(n):
            nozzle, fields, _ = order(i)
            body = canonical_json({**fields, "nozzle": nozzle})
            iv = os.urandom(16)
            payload = iv + bytes(sm4.crypt_cbc(iv, body))
            await client.publish("bench/naive", payload, qos=1)
        return time.perf_counter() - started


def main() -> None:
    # The daemon logs at info: a debug line per batch is not part of the cost.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--inflight", type=int, default=8)
    parser.add_argument("--naive", type=int, default=2000)
    parser.add_argument("--json", action="store_true", help="(the output is one JSON object)")
    parser.add_argument("--profile", type=Path, help="pyinstrument text report of the drain")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        work = Path(tmp)
        store = OrderStore(work / "s.sqlite")
        items = [order(i) for i in range(args.orders)]
        for start in range(0, args.orders, 1000):
            store.append_orders(items[start : start + 1000])
        broker = Mosquitto(work / "broker")
        broker.start()
        try:
            with profiled(args.profile):
                elapsed, uplink = asyncio.run(drain(store, broker.port, args.batch, args.inflight))
            naive_s = asyncio.run(naive(broker.port, args.naive))
        finally:
            broker.stop()
        rate, naive_rate = args.orders / elapsed, args.naive / naive_s
        wire = uplink.stats.bytes / uplink.stats.records
        print(
            json.dumps(
                {
                    "bench": "drain",
                    "orders": args.orders,
                    "batch": args.batch,
                    "drain_orders_per_s": round(rate),
                    "wire_payload_bytes_per_order": round(wire, 1),
                    "messages": uplink.stats.messages,
                    "naive_orders_per_s": round(naive_rate),
                    "ratio": round(rate / naive_rate, 1),
                }
            )
        )


if __name__ == "__main__":
    main()
