"""Failover times over two real links (SPEC D18). Needs root.

    .venv/bin/python bench/failover.py [--rounds 3] [--keepalive 10] [--probe 1]

hil/netns.py's namespace and veth pairs; the real Uplink (in process, a
fresh store) with a "wired" and a "4g" endpoint to one broker address, each
bound to its interface. Per round: wired set down → seconds until connected
on 4G; wired up → seconds until back on wired (the probe period and
PROBES_TO_RETURN); wired black-holed (interface up) → seconds until on 4G
(MQTT keepalive); hole removed → back. Prints each round and the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import structlog

from buffer.store import OrderStore
from hil import netns
from uplink.failover import Endpoint
from uplink.mqtt import Uplink, UplinkSettings

KEY = bytes(range(16))
#: Seconds any one move may take before the round is reported as failed.
MOVE_TIMEOUT_S = 120.0


async def on_link(uplink: Uplink, name: str) -> float:
    started = time.monotonic()
    while not (uplink.stats.connected and uplink.link()["name"] == name):
        if time.monotonic() - started > MOVE_TIMEOUT_S:
            raise TimeoutError(f"not on {name} after {MOVE_TIMEOUT_S:.0f} s")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def rounds(two: netns.TwoLinks, store: OrderStore, args: argparse.Namespace) -> list[dict]:
    host = two.broker_host
    settings = UplinkSettings(
        device_id="bench-gw", host=host, port=netns.BROKER_PORT, kid="k1", key=KEY,
        heartbeat_s=3600, keepalive_s=args.keepalive, reconnect_min_s=0.2, reconnect_max_s=1.0,
        endpoints=(
            Endpoint("wired", host, netns.BROKER_PORT, two.interfaces["wired"]),
            Endpoint("4g", host, netns.BROKER_PORT, two.interfaces["4g"]),
        ),
        attempts_per_endpoint=1, probe_primary_s=args.probe, network_loss_after_s=3600,
    )  # fmt: skip
    uplink = Uplink(settings, store, lambda: {})
    task = asyncio.create_task(uplink.run())
    results = []
    try:
        await on_link(uplink, "wired")
        for _ in range(args.rounds):
            two.cut("wired")
            cut_s = await on_link(uplink, "4g")
            await asyncio.to_thread(two.restore, "wired")
            back_s = await on_link(uplink, "wired")
            two.black_hole("wired")
            hole_s = await on_link(uplink, "4g")
            two.black_hole("wired", on=False)
            hole_back_s = await on_link(uplink, "wired")
            row = {"cut_to_4g_s": cut_s, "restored_to_wired_s": back_s,
                   "black_hole_to_4g_s": hole_s, "hole_gone_to_wired_s": hole_back_s}  # fmt: skip
            print(json.dumps({k: round(v, 2) for k, v in row.items()}), flush=True)
            results.append(row)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return results


def main() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keepalive", type=int, default=10)
    parser.add_argument("--probe", type=float, default=1.0)
    args = parser.parse_args()
    why_not = netns.unavailable()
    if why_not is not None:
        sys.exit(f"bench/failover.py: {why_not}")
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        two = netns.TwoLinks()
        try:
            two.build()
            two.start_broker(Path(tmp) / "broker")
            store = OrderStore(Path(tmp) / "s.sqlite")
            results = asyncio.run(rounds(two, store, args))
            store.close()
        finally:
            two.close()
    medians = {k: round(statistics.median(r[k] for r in results), 2) for k in results[0]}
    print(json.dumps({"rounds": len(results), "keepalive_s": args.keepalive,
                      "probe_primary_s": args.probe, "median": medians}))  # fmt: skip


if __name__ == "__main__":
    main()
