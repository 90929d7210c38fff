"""``python -m hil.platform --broker HOST:PORT --keys FILE [--http HOST:PORT …]``

Subscribes to every device's ``up`` topics and ``state``, and prints one
JSON line per accepted record (``{"dev", "type", "seq", "ts", "chain",
"record", "rx_ms"}``, ``ts`` the envelope's sealing time and ``rx_ms`` the
arrival time, epoch ms), per repeated record (``{"duplicate": {…}}``),
heartbeat, state change and (re)connection (``{"receiver": "connected"}``)
on stdout; rejections and chain problems go to stderr as JSON lines. The
session is persistent (clean_session false), so a receiver that reconnects
gets what the broker queued for it meanwhile.

``--http HOST:PORT`` opens the platform's HTTP intake beside it
(hil/platform/http_door.py; ``--tls-cert``/``--tls-key`` for HTTPS,
``--commands-dir`` for the command URL, ``--ack-only`` for the benches),
sharing one receiver: one platform, two front doors, one dedupe and one
chain per nozzle. ``--broker ""``: the HTTP intake alone. Every line says
which door (``"via": "mqtt"`` or ``"http"``).

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
import threading
import time
from pathlib import Path
from typing import TextIO

import aiomqtt

from hil.platform.contract import load_keys
from hil.platform.receiver import Receiver

#: Seconds between reconnect attempts: a test tool, so short and fixed.
RECONNECT_S = 0.5


#: One receiver, two doors (the MQTT loop's thread, the HTTP intake's threads).
LOCK = threading.Lock()


def _emit(stream: TextIO, line: dict[str, object]) -> None:
    text = json.dumps(line, ensure_ascii=False, sort_keys=True)
    with _PRINT:
        print(text, file=stream, flush=True)


_PRINT = threading.Lock()


def emit_to(stream: str, line: dict[str, object]) -> None:
    _emit(sys.stdout if stream == "stdout" else sys.stderr, line)


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
                    with LOCK:
                        lines, problems = receiver.handle(str(message.topic), bytes(payload))
                        for line in lines:
                            _emit(sys.stdout, {**line, "rx_ms": rx_ms, "via": "mqtt"})
                        for problem in problems:
                            _emit(sys.stderr, {**problem, "via": "mqtt"})
        except aiomqtt.MqttError as exc:
            _emit(sys.stderr, {"receiver": "disconnected", "error": str(exc)})
            await asyncio.sleep(RECONNECT_S)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hil.platform", description=__doc__)
    parser.add_argument("--broker", default="127.0.0.1:1883", help="HOST:PORT")
    parser.add_argument("--keys", required=True, type=Path, help='TOML file of kid = "hex"')
    parser.add_argument("--client-id", default="hil-platform")
    parser.add_argument("--device", default="+", help="one device id, or + for all")
    parser.add_argument("--http", help="HOST:PORT of the HTTP intake (off when unset)")
    parser.add_argument("--tls-cert", type=Path, help="PEM certificate: the intake is HTTPS")
    parser.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    parser.add_argument("--commands-dir", type=Path, help="DIR/{dev}/*.json: the command URL")
    parser.add_argument("--ack-only", action="store_true", help="ack without opening (benches)")
    args = parser.parse_args(argv)
    host, _, port = args.broker.rpartition(":")
    try:
        keys = load_keys(args.keys)
    except (OSError, ValueError) as exc:
        print(f"hil.platform: {exc}", file=sys.stderr)
        return 2
    receiver = Receiver(keys)
    intake_server = None
    if args.http:
        from hil.platform import http_door

        intake = http_door.Intake(
            receiver, keys, emit_to, LOCK, commands_dir=args.commands_dir, ack_only=args.ack_only
        )
        http_host, _, http_port = args.http.rpartition(":")
        tls = (args.tls_cert, args.tls_key) if args.tls_cert else None
        intake_server = http_door.serve(intake, http_host or "127.0.0.1", int(http_port), tls)
        bound_host, bound_port = intake_server.server_address[:2]
        _emit(sys.stdout, {"receiver": "listening", "http": f"{bound_host!s}:{bound_port}"})

    async def idle() -> None:
        await asyncio.Event().wait()  # the HTTP intake alone

    async def run() -> None:
        if args.broker:
            work = serve(host or "127.0.0.1", int(port), receiver, args.client_id, args.device)
        else:
            work = idle()
        task = asyncio.create_task(work)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if intake_server is not None:
            intake_server.shutdown()

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
