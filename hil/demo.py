"""``make demo``: a simulated station talking to a platform on this machine.

Starts mosquitto on 127.0.0.1 (``DEMO_BROKER_PORT``, default 1883; an MQTT
broker already listening there is used as it is), the Sinopec dispenser
simulator on a pty (``.demo/pump1``), the collector with
``config/demo.toml`` and the reference platform receiver, then shows each
order as the platform receives it. ``DEMO_SECONDS=N`` stops it after N
seconds; otherwise Ctrl-C stops it. Everything it writes is under ``.demo/``.

The demo's SM4 key is in ``config/demo-keys.toml``: point any MQTT client at
the broker and subscribe to ``forecourt/v1/demo-gw-01/#`` to see the sealed
envelopes, or run your own receiver with that key.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import time
from datetime import datetime
from typing import Any

from hil import stack

DEMO_DIR = stack.ROOT / ".demo"
CONFIG = stack.ROOT / "config" / "demo.toml"
KEYS = stack.ROOT / "config" / "demo-keys.toml"


def _port_in_use(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.3).close()
    except OSError:
        return False
    return True


def _show(line: dict[str, Any]) -> str | None:
    kind = line.get("type")
    if kind == "order":
        r = line["record"]
        ended = datetime.fromisoformat(r["ended_at"])
        lag = time.time() - ended.timestamp()
        return (
            f"order  {r['rid']:<14} no {r['order_no']:>8}  grade {r['grade']}  "
            f"{r['volume']:>6} L x {r['price']} = {r['amount']:>7}  "
            f"totalizer {r['totalizer_volume_end']:>10}  chain {line['chain']}  "
            f"(fuelling ended {lag:4.1f} s ago)"
        )
    if kind == "heartbeat":
        b = line["body"]
        return (
            f"heartbeat  ports {b['ports_online']}/{b['ports_total']}  unsent {b['unsent']}  "
            f"rss {b['mem_kb']} kB  nozzles {b['nozzles']}"
        )
    if kind == "state":
        return f"state  {line['dev']}: {line['body']}"
    return None


def main() -> int:
    port = int(os.environ.get("DEMO_BROKER_PORT", "1883"))
    seconds = float(os.environ["DEMO_SECONDS"]) if os.environ.get("DEMO_SECONDS") else None
    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    DEMO_DIR.mkdir()
    procs: list[stack.Proc] = []
    broker: stack.Mosquitto | None = None
    if _port_in_use(port):
        print(f"demo: a broker already listens on 127.0.0.1:{port}; using it")
    else:
        broker = stack.Mosquitto(DEMO_DIR / "broker", port)
        broker.start()
        print(f"demo: mosquitto on 127.0.0.1:{port}")
    try:
        receiver = stack.receiver(DEMO_DIR, port, KEYS, client_id="demo-platform")
        procs.append(receiver)
        link = DEMO_DIR / "pump1"
        procs.append(
            stack.dispenser(
                DEMO_DIR,
                link,
                orders=100_000,
                nozzles=4,
                rate=0.5,
                fill_seconds=3.0,
                seed=int(time.time()),
            )
        )
        print(f"demo: dispenser simulator on {link} -> {os.path.realpath(link)}")
        procs.append(stack.collector(DEMO_DIR, CONFIG, [f"uplink.port={port}"]))
        print("demo: collector running (config/demo.toml, log .demo/collector.log)")
        print("demo: orders as the platform receives them (Ctrl-C to stop):")
        deadline = None if seconds is None else time.monotonic() + seconds
        shown = 0
        while deadline is None or time.monotonic() < deadline:
            lines = receiver.snapshot()
            for line in lines[shown:]:
                text = _show(line)
                if text:
                    print(text, flush=True)
            shown = len(lines)
            for proc in procs:
                if proc.popen.poll() is not None:
                    print(
                        f"demo: {proc.name} exited ({proc.popen.returncode}); see {proc.log_path}",
                        file=sys.stderr,
                    )
                    return 1
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        for proc in reversed(procs):
            proc.stop()
        if broker is not None:
            broker.stop()
    orders = sum(1 for line in receiver.snapshot() if line.get("type") == "order")
    print(f"demo: stopped; the platform received {orders} orders")
    return 0 if orders > 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
