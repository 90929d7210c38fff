"""``python -m hil.platform --broker HOST:PORT --keys FILE``

Subscribes to every device's ``up`` topics and ``state``, and prints one
JSON line per accepted record (``{"dev", "type", "seq", "ts", "chain",
"record", "rx_ms"}``, ``ts`` the envelope's sealing time and ``rx_ms`` the
arrival time, epoch ms), per repeated record (``{"duplicate": {…}}``),
heartbeat, state change and (re)connection (``{"receiver": "connected"}``)
on stdout; rejections and chain problems go to stderr as JSON lines. The
session is persistent (clean_session false), so a receiver that reconnects
gets what the broker queued for it meanwhile.

It implements the contract on its own (hil/platform/contract.py: gmssl's
SM4 and SM3, its own GCM, canonical JSON and chain rule) and imports
nothing of the collector's uplink, buffer or collector packages.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from pathlib import Path
from typing import TextIO

import aiomqtt

from hil.platform.contract import load_keys
from hil.platform.receiver import Receiver

#: Seconds between reconnect attempts: a test tool, so short and fixed.
RECONNECT_S = 0.5


def _emit(stream: TextIO, line: dict[str, object]) -> None:
    print(json.dumps(line, ensure_ascii=False, sort_keys=True), file=stream, flush=True)


async def serve(host: str, port: int, receiver: Receiver, client_id: str, device: str) -> None:
    while True:
        try:
            async with aiomqtt.Client(
                host, port, identifier=client_id, clean_session=False, keepalive=30
            ) as client:
                await client.subscribe(f"forecourt/v1/{device}/up/#", qos=1)
                await client.subscribe(f"forecourt/v1/{device}/state", qos=1)
                _emit(sys.stdout, {"receiver": "connected", "broker": f"{host}:{port}"})
                async for message in client.messages:
                    payload = message.payload
                    if not isinstance(payload, bytes | bytearray):
                        payload = str(payload).encode()
                    # Arrival, for latency figures: before the (slow, pure-Python) checks.
                    rx_ms = time.time_ns() // 1_000_000
                    lines, problems = receiver.handle(str(message.topic), bytes(payload))
                    for line in lines:
                        _emit(sys.stdout, {**line, "rx_ms": rx_ms})
                    for problem in problems:
                        _emit(sys.stderr, problem)
        except aiomqtt.MqttError as exc:
            _emit(sys.stderr, {"receiver": "disconnected", "error": str(exc)})
            await asyncio.sleep(RECONNECT_S)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hil.platform", description=__doc__)
    parser.add_argument("--broker", default="127.0.0.1:1883", help="HOST:PORT")
    parser.add_argument("--keys", required=True, type=Path, help='TOML file of kid = "hex"')
    parser.add_argument("--client-id", default="hil-platform")
    parser.add_argument("--device", default="+", help="one device id, or + for all")
    args = parser.parse_args(argv)
    host, _, port = args.broker.rpartition(":")
    try:
        keys = load_keys(args.keys)
    except (OSError, ValueError) as exc:
        print(f"hil.platform: {exc}", file=sys.stderr)
        return 2
    receiver = Receiver(keys)

    async def run() -> None:
        task = asyncio.create_task(
            serve(host or "127.0.0.1", int(port), receiver, args.client_id, args.device)
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
