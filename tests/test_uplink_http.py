"""The HTTP uplink transport: only a sealed answer for the envelopes sent marks them sent.

Real parts: the collector's Uplink (in this process) over real TLS sockets to
a platform run in a thread here — the real intake (hil/platform/http_door.py)
or a lying one — and the reference receiver as its own process for a drain.
What is proven (docs/uplink-protocol.md "HTTP transport"):

- an answer sealed under another key, an unsealed ``{"acked": …}``, and a
  genuine ack replayed for later requests mark nothing: every record stays
  unsent and reaches a genuine platform afterwards;
- with TLS, a server whose certificate is not from ``uplink.ca_file`` gets
  no request at all, however well it would answer;
- 503 with ``Retry-After`` makes the collector send the same bytes (same seqs)
  again, and the platform's idempotency by seq acks them;
- a backlog drains over HTTPS to the receiver process, every order once,
  chains intact, in nseq order per nozzle, on one kept-alive connection.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from buffer.store import OrderStore
from hil import stack, tls_certs
from hil.platform.contract import seal_envelope
from hil.platform.http_door import Intake, serve
from hil.platform.receiver import Receiver
from uplink.failover import Endpoint
from uplink.http_answer import read_answer
from uplink.mqtt import Uplink, UplinkSettings

DEV, KID, KEY = "http-gw", "k1", bytes(range(16))
OTHER_KEY = bytes(range(16, 32))
ORDERS = 24


def order(i: int) -> tuple[str, dict[str, Any], str]:
    nozzle = f"p01.a1.n{1 + i % 2}"
    return nozzle, {"order_no": str(i), "volume": "10.00", "amount": "78.50"}, f"src:{i}"


def ack(acked: list[int], *, key: bytes = KEY, dev: str = DEV, type_: str = "ack") -> bytes:
    body = {"acked": acked, "rejected": []}
    return seal_envelope(body, dev=dev, kid=KID, key=key, seq=7, ts=1, type_=type_)


# --- the answer's rules, sans-IO ---------------------------------------------


def test_a_sealed_ack_for_the_sent_seqs_is_believed() -> None:
    out = read_answer(200, {}, ack([5, 6]), sent=[5, 6], dev=DEV, keys={KID: KEY})
    assert out.answered and out.acked == {5, 6}


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (ack([5, 6], key=OTHER_KEY), "bad_tag"),
        (json.dumps({"acked": [5, 6]}).encode(), "bad_field"),
        (ack([5, 6], dev="another-gw"), "dev_mismatch"),
        (ack([5, 6], type_="cmd"), "not 'ack'"),
        (ack([4, 5, 6]), "seq 4, not in this request"),
        (b"<html>captive portal</html>", "bad_json"),
    ],
)
def test_an_answer_not_sealed_for_these_envelopes_acks_nothing(body: bytes, why: str) -> None:
    out = read_answer(200, {}, body, sent=[5, 6], dev=DEV, keys={KID: KEY})
    assert not out.answered and out.acked == frozenset() and out.retry
    assert why in str(out.failure)


def test_status_rules() -> None:
    busy = read_answer(503, {"retry-after": "3"}, b"", sent=[1], dev=DEV, keys={KID: KEY})
    assert busy.retry and busy.retry_after_s == 3.0 and not busy.acked
    refused = read_answer(401, {}, b"", sent=[1], dev=DEV, keys={KID: KEY})
    assert not refused.retry and refused.failure == "HTTP 401"


# --- the collector against platforms that lie ----------------------------------


class Lying(BaseHTTPRequestHandler):
    """A platform with a mode: ``forged`` (sealed under another key), ``plain``
    (unsealed), ``replay`` (the first request's genuine ack, for every request)."""

    protocol_version = "HTTP/1.1"
    mode = "forged"
    requests: list[list[int]]
    types: list[list[str]]
    first: bytes | None = None

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        envelopes = json.loads(body)
        seqs = [e["seq"] for e in envelopes]
        type(self).requests.append(seqs)
        type(self).types.append([e["type"] for e in envelopes])
        if self.mode == "forged":
            answer = ack(seqs, key=OTHER_KEY)
        elif self.mode == "plain":
            answer = json.dumps({"acked": seqs, "rejected": []}).encode()
        else:
            if type(self).first is None:
                type(self).first = ack(seqs)
            answer = type(self).first
        self.send_response(200)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


def tls_server(
    handler: type[BaseHTTPRequestHandler], cert: tuple[Path, Path]
) -> ThreadingHTTPServer:
    import ssl

    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*map(str, cert))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Any]:
    ours = tls_certs.authority(tmp_path / "ours", "platform CA")
    theirs = tls_certs.authority(tmp_path / "theirs", "another CA")
    return {
        "ca": ours.cert_file,
        "good": tls_certs.server_cert(ours, tmp_path / "ours"),
        "bad": tls_certs.server_cert(theirs, tmp_path / "theirs"),
    }


def settings(port: int, ca: Path, **more: Any) -> UplinkSettings:
    endpoint = Endpoint("https", "127.0.0.1", port, None, True, "https", "/forecourt/v1")
    given: dict[str, Any] = {
        "batch_max_records": 5, "max_inflight": 2, "heartbeat_s": 3600,
        "reconnect_min_s": 0.1, "reconnect_max_s": 0.3, **more,
    }  # fmt: skip
    return UplinkSettings(
        device_id=DEV, host="unused", port=1, kid=KID, key=KEY, ca_file=str(ca),
        endpoints=(endpoint,), **given,
    )  # fmt: skip


def filled(path: Path) -> OrderStore:
    store = OrderStore(path)
    store.append_orders([order(i) for i in range(ORDERS)])
    return store


def unsent(store: OrderStore) -> int:
    return len(store.unsent(0, 10_000))


def drive(store: OrderStore, s: UplinkSettings, until: Callable[[Uplink], bool]) -> Uplink:
    """Run the uplink until ``until`` holds (at most 30 s), then stop it."""

    async def main() -> Uplink:
        uplink = Uplink(s, store, lambda: {})
        task = asyncio.create_task(uplink.run())
        deadline = time.monotonic() + 30
        while not until(uplink):
            assert time.monotonic() < deadline, "timed out"
            assert not task.done(), task
            await asyncio.sleep(0.02)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return uplink

    return asyncio.run(main())


@pytest.mark.parametrize("mode", ["forged", "plain", "replay"])
def test_a_lying_platform_cannot_make_a_record_count_as_sent(
    tmp_path: Path, pki: dict[str, Any], mode: str
) -> None:
    handler = type("Handler", (Lying,), {"mode": mode, "requests": [], "types": [], "first": None})
    server = tls_server(handler, pki["good"])
    store = filled(tmp_path / "store.sqlite")
    try:
        uplink = drive(
            store,
            settings(server.server_address[1], pki["ca"]),
            lambda u: len(handler.requests) >= 8 and u.stats.connects >= 2,
        )
    finally:
        server.shutdown()
    # Only the first request's order batches (full: 5 orders each) may be
    # sent, and only where that request was genuinely acked (replay).
    acked = 5 * handler.types[0].count("order") if mode == "replay" else 0
    assert unsent(store) == ORDERS - acked, "nothing counts as sent on a forged or replayed ack"
    assert uplink.stats.errors.get("http_unanswered", 0) >= 3
    if mode != "replay":  # sent again with the same seqs: idempotency by seq
        assert handler.requests[1] == handler.requests[0]

    # A genuine platform afterwards gets every record that was not acked.
    receiver_lines: list[dict[str, Any]] = []
    intake = Intake(Receiver({KID: KEY}), {KID: KEY}, lambda s, line: receiver_lines.append(line),
                    threading.Lock())  # fmt: skip
    genuine = serve(intake, "127.0.0.1", 0, pki["good"])
    try:
        drive(store, settings(genuine.server_address[1], pki["ca"]), lambda u: unsent(store) == 0)
    finally:
        genuine.shutdown()
    orders = [line for line in receiver_lines if line.get("type") == "order"]
    assert len(orders) == ORDERS - acked
    store.close()


def test_a_server_without_the_configured_ca_gets_no_request(
    tmp_path: Path, pki: dict[str, Any]
) -> None:
    lines: list[dict[str, Any]] = []
    intake = Intake(Receiver({KID: KEY}), {KID: KEY}, lambda s, line: lines.append(line),
                    threading.Lock())  # fmt: skip
    impostor = serve(intake, "127.0.0.1", 0, pki["bad"])  # answers perfectly, wrong identity
    store = filled(tmp_path / "store.sqlite")
    try:
        uplink = drive(
            store,
            settings(impostor.server_address[1], pki["ca"]),
            lambda u: u.stats.last_error is not None,
        )
    finally:
        impostor.shutdown()
    assert not [line for line in lines if "http" in line], "not one request reached it"
    assert unsent(store) == ORDERS
    assert "CERTIFICATE_VERIFY_FAILED" in str(uplink.stats.last_error)
    store.close()


class Busy(BaseHTTPRequestHandler):
    """503 with Retry-After for the first request, then the real intake's answer."""

    protocol_version = "HTTP/1.1"
    intake: Intake
    bodies: list[bytes]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).bodies.append(body)
        if len(self.bodies) == 1:
            status, answer = 503, b""
        else:
            status, answer = self.intake.post_up(DEV, body)
        self.send_response(status)
        if status == 503:
            self.send_header("Retry-After", "0")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


def test_a_busy_platform_gets_the_same_bytes_again(tmp_path: Path, pki: dict[str, Any]) -> None:
    lines: list[dict[str, Any]] = []
    intake = Intake(Receiver({KID: KEY}), {KID: KEY}, lambda s, line: lines.append(line),
                    threading.Lock())  # fmt: skip
    handler = type("Handler", (Busy,), {"intake": intake, "bodies": []})
    server = tls_server(handler, pki["good"])
    store = filled(tmp_path / "store.sqlite")
    try:
        uplink = drive(
            store, settings(server.server_address[1], pki["ca"]), lambda u: unsent(store) == 0
        )
    finally:
        server.shutdown()
    assert handler.bodies[0] == handler.bodies[1], "the retry is the same envelopes, same seqs"
    assert uplink.stats.connects == 1, "a 503 is retried in the session, not a lost link"
    assert len([line for line in lines if line.get("type") == "order"]) == ORDERS
    store.close()


# --- a backlog over HTTPS to the receiver process -----------------------------


@pytest.fixture
def receiver(tmp_path: Path, pki: dict[str, Any]) -> Iterator[tuple[stack.Proc, int]]:
    keys = tmp_path / "keys.toml"
    keys.write_text(f'{KID} = "{KEY.hex()}"\n')
    port = stack.free_port()
    cert, key = pki["good"]
    proc = stack.Proc("receiver", [
        sys.executable, "-m", "hil.platform", "--broker", "", "--keys", str(keys),
        "--http", f"127.0.0.1:{port}", "--tls-cert", str(cert), "--tls-key", str(key),
    ], tmp_path)  # fmt: skip
    proc.wait_lines(lambda line: line.get("receiver") == "listening", 1, 20)
    try:
        yield proc, port
    finally:
        proc.stop()


def test_a_backlog_drains_over_https_once_and_in_order(
    tmp_path: Path, pki: dict[str, Any], receiver: tuple[stack.Proc, int]
) -> None:
    proc, port = receiver
    store = filled(tmp_path / "store.sqlite")
    drive(store, settings(port, pki["ca"], batch_max_records=4), lambda u: unsent(store) == 0)
    orders = proc.wait_lines(lambda line: line.get("type") == "order", ORDERS, 20)
    assert {line["via"] for line in orders} == {"http"}
    assert {line["chain"] for line in orders} == {"ok"}
    per_nozzle: dict[str, list[int]] = {}
    for line in orders:
        per_nozzle.setdefault(line["record"]["nozzle"], []).append(line["record"]["nseq"])
    assert all(seqs == list(range(1, len(seqs) + 1)) for seqs in per_nozzle.values())
    wire = [json.loads(text)["http"] for text in proc.log_path.read_text().splitlines()
            if text.startswith('{"http"')]  # fmt: skip
    posts = [w for w in wire if w["method"] == "POST"]
    assert len(posts) < ORDERS // 4 + 1, "batches went together, several in a POST"
    assert len({w["peer"] for w in posts}) == 1, "one kept-alive connection"
    store.close()
