"""The platform's HTTP intake: the reference receiver's second front door.

docs/uplink-protocol.md "HTTP transport", implemented from that text like
the MQTT side (hil/platform/contract.py, hil/platform/receiver.py) and with
none of the collector's code: the server is the standard library's
``http.server`` (the collector's client is h11), the checks are the same
:class:`~hil.platform.receiver.Receiver` as the MQTT door's — one platform,
two doors, one dedupe and one chain per nozzle when both run in one process.

- ``POST {base}/{dev}/up``: a JSON array of envelopes. Each is handled in
  order as if published on ``forecourt/v1/{dev}/up/{type}``; the first one
  refused stops the rest (``not_processed``), so a device's records are never
  taken out of order. Idempotent by ``seq``: an envelope whose seq was
  accepted before with the same ``ct`` is acked again (the device sent the same
  bytes again: the answer was lost); another one under that seq is ``replay``.
  The answer is 200 with an ``ack`` envelope sealed under the request's kid.
- ``GET {base}/{dev}/down/cmd``: ``{"commands": [...]}``, the sealed commands
  spooled as files in ``commands_dir/{dev}/*.json`` (taken in name order, at
  most 16, each renamed ``*.taken``); 204 when there are none.
- ``ack_only``: acks every well-formed envelope without opening it (what a
  broker's PUBACK says): the benches' intake, to measure the device's side.

Every request is counted in bytes on the wire (``{"http": …}`` lines on
stderr), for bytes per order over HTTP beside MQTT's.
"""

from __future__ import annotations

import hashlib
import json
import ssl
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from hil.platform.contract import seal_envelope
from hil.platform.receiver import Line, Receiver

#: The device's resources hang under this path (the endpoint URL's path).
BASE = "/forecourt/v1"
#: A POST body: ``max_inflight`` (20) batches of 1000 orders, deflated, and more.
MAX_BODY_BYTES = 16 * 1024 * 1024
#: Commands in one poll answer (the device takes no more).
MAX_COMMANDS = 16

Emit = Callable[[str, Line], None]


class Intake:
    """What the two routes do, apart from HTTP (called under ``lock``)."""

    def __init__(
        self,
        receiver: Receiver,
        keys: dict[str, bytes],
        emit: Emit,
        lock: threading.Lock,
        commands_dir: Path | None = None,
        ack_only: bool = False,
    ) -> None:
        self.receiver, self.keys, self.emit, self.lock = receiver, keys, emit, lock
        self.commands_dir = commands_dir
        self.ack_only = ack_only
        #: (dev, seq) → SHA-256 of the accepted envelope's ct: idempotency by seq.
        self.accepted: dict[tuple[str, int], str] = {}
        # The platform's own message counter: increasing across restarts.
        self._seq = time.time_ns() // 1_000

    def post_up(self, dev: str, body: bytes) -> tuple[int, bytes]:
        try:
            envelopes = json.loads(body)
        except ValueError:
            return 400, b'{"error": "not JSON"}'
        if not isinstance(envelopes, list) or not all(isinstance(e, dict) for e in envelopes):
            return 400, b'{"error": "a JSON array of envelopes"}'
        kid = next((e.get("kid") for e in envelopes if e.get("kid") in self.keys), None)
        if kid is None:
            return 403, b'{"error": "no envelope under a key this platform holds"}'
        acked: list[int] = []
        rejected: list[dict[str, Any]] = []
        rx_ms = time.time_ns() // 1_000_000
        with self.lock:
            for envelope in envelopes:
                seq = envelope.get("seq")
                if not isinstance(seq, int) or isinstance(seq, bool):
                    rejected.append({"seq": -1, "code": "bad_field", "message": "no seq"})
                    break
                if rejected:
                    rejected.append({"seq": seq, "code": "not_processed", "message": ""})
                    continue
                code = self._one(dev, envelope, seq, rx_ms)
                if code is None:
                    acked.append(seq)
                else:
                    rejected.append({"seq": seq, "code": code, "message": ""})
            rejected = [r for r in rejected if r["seq"] >= 0]
            self._seq += 1
            ack = seal_envelope(
                {"acked": acked, "rejected": rejected},
                dev=dev, kid=kid, key=self.keys[kid], seq=self._seq,
                ts=time.time_ns() // 1_000_000, type_="ack",
            )  # fmt: skip
        return 200, ack

    def _one(self, dev: str, envelope: dict[str, Any], seq: int, rx_ms: int) -> str | None:
        """None: stored (now or before); else the code it is refused with."""
        digest = hashlib.sha256(str(envelope.get("ct")).encode()).hexdigest()
        before = self.accepted.get((dev, seq))
        if before is not None:
            return None if before == digest else "replay"
        if self.ack_only:
            self.accepted[(dev, seq)] = digest
            return None
        kind = envelope.get("type")
        topic = f"forecourt/v1/{dev}/up/{kind}"
        payload = json.dumps(envelope, separators=(",", ":")).encode()
        lines, problems = self.receiver.handle(topic, payload)
        for problem in problems:
            self.emit("stderr", {**problem, "via": "http"})
        refused = next((p["reject"] for p in problems if "reject" in p), None)
        if refused is not None:
            return str(refused)
        self.accepted[(dev, seq)] = digest
        for line in lines:
            self.emit("stdout", {**line, "rx_ms": rx_ms, "via": "http"})
        return None

    def get_commands(self, dev: str) -> tuple[int, bytes]:
        if self.commands_dir is None:
            return 404, b'{"error": "no command spool"}'
        spool = self.commands_dir / dev
        taken = []
        for path in sorted(spool.glob("*.json"))[:MAX_COMMANDS]:
            try:
                taken.append(json.loads(path.read_bytes()))
                path.rename(path.with_suffix(".taken"))
            except (OSError, ValueError) as exc:
                self.emit("stderr", {"command_spool": str(path), "error": str(exc)})
        if not taken:
            return 204, b""
        self.emit("stdout", {"commands_taken": len(taken), "dev": dev, "via": "http"})
        return 200, json.dumps({"commands": taken}).encode()


class _Counted:
    """A request's file (read or write side), counting the bytes that pass."""

    def __init__(self, raw: Any) -> None:
        self.raw, self.n = raw, 0

    def readline(self, size: int = -1) -> bytes:
        line: bytes = self.raw.readline(size)
        self.n += len(line)
        return line

    def read(self, size: int = -1) -> bytes:
        data: bytes = self.raw.read(size)
        self.n += len(data)
        return data

    def write(self, data: bytes) -> int:
        self.n += len(data)
        return int(self.raw.write(data))

    def flush(self) -> None:
        self.raw.flush()

    @property
    def closed(self) -> bool:
        return bool(self.raw.closed)

    def close(self) -> None:
        self.raw.close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the device reuses its connection
    intake: Intake  # set on the class serve() makes

    def setup(self) -> None:
        super().setup()
        self.rfile = self._in = _Counted(self.rfile)  # type: ignore[assignment]
        self.wfile = self._out = _Counted(self.wfile)  # type: ignore[assignment]
        self._marks = (0, 0)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one JSON line per request instead (_answer)

    def _route(self) -> tuple[str, str] | None:
        path = self.path.split("?", 1)[0]
        if not path.startswith(BASE + "/"):
            return None
        dev, _, rest = path[len(BASE) + 1 :].partition("/")
        return (dev, rest) if dev else None

    def do_POST(self) -> None:
        route = self._route()
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._answer(413, b'{"error": "too large"}', 0, close=True)
            return
        body = self.rfile.read(length)
        if route is None or route[1] != "up":
            self._answer(404, b'{"error": "no such resource"}', len(body))
            return
        status, answer = self.intake.post_up(route[0], body)
        self._answer(status, answer, len(body))

    def do_GET(self) -> None:
        route = self._route()
        if route is None or route[1] != "down/cmd":
            self._answer(404, b'{"error": "no such resource"}', 0)
            return
        status, answer = self.intake.get_commands(route[0])
        self._answer(status, answer, 0)

    def _answer(self, status: int, body: bytes, body_in: int, close: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        # Everything read and written since the last answer is this exchange's.
        marks = (self._in.n, self._out.n)
        wire = {"method": self.command, "status": status, "body_in": body_in}
        wire["peer"] = f"{self.client_address[0]}:{self.client_address[1]}"  # one per connection
        wire["bytes_in"], wire["bytes_out"] = marks[0] - self._marks[0], marks[1] - self._marks[1]
        self._marks = marks
        self.intake.emit("stderr", {"http": wire})


def serve(
    intake: Intake,
    host: str,
    port: int,
    tls: tuple[Path, Path] | None = None,
) -> ThreadingHTTPServer:
    """Listen on ``host:port`` (TLS with ``(cert, key)`` PEM files) in a thread
    of its own; returns the server (``shutdown()`` stops it)."""
    handler = type("Handler", (_Handler,), {"intake": intake})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(tls[0]), str(tls[1]))
        # The handshake in the request's thread, not the accepting one.
        server.socket = context.wrap_socket(
            server.socket, server_side=True, do_handshake_on_connect=False
        )
    threading.Thread(target=server.serve_forever, name="http-intake", daemon=True).start()
    return server
