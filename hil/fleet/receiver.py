"""``python -m hil.fleet.receiver SPEC.json``: one platform receiver of the fleet.

The stateless half of a platform's ingest, the half that scales out behind
a shared subscription: per message, the envelope is opened with the key of
the device that sent it (``kid`` must be that device's own: a station
cannot speak for another), the topic's type checked, and each record's
``h`` recomputed (SM3 over its canonical JSON). One line per record goes to
``out``; deduplication, chain order and replay checks need every message of
a device, which with several receivers no single one sees — they are
:mod:`hil.fleet.check`'s, as they would be a stream consumer's keyed by
device (docs/scaling.md).

Stdout, JSON lines: ``{"rx": i, "subscribed": filter}``, then every 0.25 s
``{"rx": i, "records": n, "messages": m}`` (records of every kind), and on
SIGTERM a final line with the counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, TextIO

import aiomqtt

from records.chain import record_hash
from uplink.envelope import EnvelopeError, open_envelope


def _hash_matches(record: dict[str, Any]) -> bool:
    """``h`` is the record's SM3; a record that cannot be hashed (not canonical
    JSON: a float) is a mismatch, counted like one — never a dead receiver."""
    try:
        return bool(record.get("h") == record_hash(record))
    except (TypeError, ValueError):
        return False


#: Seconds between reconnect attempts: a test tool on loopback.
RECONNECT_S = 0.5

#: Seconds between progress lines: the parent waits on them for the last
#: record, so this is the resolution of its receiver catch-up figure.
PROGRESS_S = 0.25

#: The shared-subscription group every receiver joins (MQTT 5 ``$share``,
#: which mosquitto ≥ 2.0 also offers to 3.1.1 clients): the broker hands each
#: message to one member of the group.
SHARE_GROUP = "fleet"

UP_FILTER = "forecourt/v1/+/up/#"


def mqtt_publish_bytes(topic: str, payload: bytes, qos: int) -> int:
    """Bytes of the MQTT 3.1.1 PUBLISH carrying ``payload`` (fixed header,
    topic, packet id at QoS ≥ 1), plus the 4-byte PUBACK at QoS 1."""
    remaining = 2 + len(topic.encode()) + (2 if qos else 0) + len(payload)
    length_bytes = 1 if remaining < 128 else 2 if remaining < 16_384 else 3
    return 1 + length_bytes + remaining + (4 if qos else 0)


class FleetReceiver:
    """Counts and record lines for one receiver; :meth:`handle` does no I/O but ``out``."""

    def __init__(self, index: int, keys: dict[str, bytes], kid_dev: dict[str, str], out: TextIO):
        self.index = index
        self.keys = keys
        self.kid_dev = kid_dev
        self.out = out
        self.counts: Counter[str] = Counter()
        self.online: dict[str, bool] = {}

    def handle(self, topic: str, payload: bytes, qos: int) -> None:
        parts = topic.split("/")
        dev = parts[2] if len(parts) > 2 else ""
        if parts[3:] == ["state"]:
            with contextlib.suppress(ValueError, AttributeError):
                self.online[dev] = bool(json.loads(payload).get("online")) if payload else False
            return
        self.counts["messages"] += 1
        try:
            opened = open_envelope(payload, self.keys, topic_dev=dev)
        except EnvelopeError as exc:
            self.counts[f"reject_{exc.code}"] += 1
            return
        if self.kid_dev.get(opened.kid) != dev:
            self.counts["reject_foreign_kid"] += 1
            return
        if parts[3:] != ["up", opened.type]:
            self.counts["reject_type_mismatch"] += 1
            return
        rx_ns = time.time_ns()  # opened: the latency's end point
        kind = opened.type
        self.counts[f"{kind}_messages"] += 1
        self.counts[f"{kind}_payload_bytes"] += len(payload)
        self.counts[f"{kind}_mqtt_bytes"] += mqtt_publish_bytes(topic, payload, qos)
        message_id = f"{self.index}.{self.counts['messages']}"
        if kind == "heartbeat":
            # A line too: replays are checked and the rate counted inside the window.
            self.out.write(
                f"{dev}\t{kind}\t{opened.seq}\t{message_id}\t-\t-\t0\t-\t-\t1\t0\t{rx_ns}\n"
            )
            return
        items = opened.body.get("items")
        if not isinstance(items, list):
            self.counts["reject_bad_body"] += 1
            return
        for record in items:
            self.counts[f"{kind}_records"] += 1
            self.counts["records"] += 1
            h_ok = int(kind != "order" or _hash_matches(record))
            self.out.write(
                f"{dev}\t{kind}\t{opened.seq}\t{message_id}\t{record.get('rid')}\t"
                f"{record.get('nozzle')}\t{record.get('nseq') or 0}\t{record.get('prev')}\t"
                f"{record.get('h')}\t{h_ok}\t{int(bool(record.get('resent')))}\t{rx_ns}\n"
            )


def _emit(line: dict[str, Any]) -> None:
    print(json.dumps(line, sort_keys=True), flush=True)


async def serve(spec: dict[str, Any], rx: FleetReceiver) -> None:
    # The up filters (run.py: one $share filter, the plain wildcard, or one per
    # device on a broker without shared subscriptions).
    filters = spec.get("filters") or [UP_FILTER]
    up = filters[0] if len(filters) == 1 else f"{len(filters)} device filters"
    while True:
        try:
            async with aiomqtt.Client(
                spec["host"],
                spec["port"],
                identifier=f"fleet-rx-{rx.index}",
                clean_session=False,
                keepalive=30,
            ) as client:
                await client.subscribe([(f, 1) for f in filters])
                if spec["state"]:
                    await client.subscribe("forecourt/v1/+/state", qos=1)
                _emit({"rx": rx.index, "subscribed": up})
                async for message in client.messages:
                    payload = message.payload
                    if not isinstance(payload, bytes | bytearray):
                        payload = str(payload).encode()
                    rx.handle(str(message.topic), bytes(payload), message.qos)
        except aiomqtt.MqttError as exc:
            rx.counts["disconnects"] += 1
            print(f"fleet receiver {rx.index}: {exc}", file=sys.stderr, flush=True)
            await asyncio.sleep(RECONNECT_S)


async def progress(rx: FleetReceiver) -> None:
    while True:
        await asyncio.sleep(PROGRESS_S)
        _emit(
            {
                "rx": rx.index,
                "records": rx.counts["records"],
                "messages": rx.counts["messages"],
            }
        )


async def run(spec: dict[str, Any]) -> None:
    keys = {kid: bytes.fromhex(key) for kid, key in spec["keys"].items()}
    with open(spec["out"], "w", buffering=1 << 20) as out:
        rx = FleetReceiver(spec["index"], keys, spec["kid_dev"], out)
        tasks = [asyncio.create_task(serve(spec, rx)), asyncio.create_task(progress(rx))]
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: [t.cancel() for t in tasks])
        await asyncio.gather(*tasks, return_exceptions=True)
    _emit(
        {
            "rx": rx.index,
            "final": True,
            "counts": dict(rx.counts),
            "online": sum(rx.online.values()),
            "states": len(rx.online),
            "cpu_s": round(time.process_time(), 3),
        }
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m hil.fleet.receiver SPEC.json", file=sys.stderr)
        return 2
    asyncio.run(run(json.loads(Path(args[0]).read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
