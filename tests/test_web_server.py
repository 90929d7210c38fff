"""The web page's server holds its bounds, over real sockets, in-process.

A trivial app on collector/web/server.py with the limits shrunk (a tenth
of a second instead of five), so each bound is reached at once: what the
client gets past it, that the connection is gone (a read returns EOF), and
that the log has one line per kind of refusal, not one per connection.
Against the real daemon with the real limits: tests/test_web_hostile.py.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from collector.web.http import MAX_HEAD_BYTES, RequestHead, Response
from collector.web.server import Limits, Request, WebServer, address_key
from tests.web_client import parse_reply

BODY_LIMIT = 100


class Log:
    """A structlog stand-in that keeps every call."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Callable[..., None]:
        return lambda event, **kw: self.lines.append((level, event, kw))

    def events(self, event: str) -> list[dict[str, Any]]:
        return [kw for _, e, kw in self.lines if e == event]


class EchoApp:
    def __init__(self) -> None:
        self.big = b""

    def body_limit(self, head: RequestHead) -> int:
        return BODY_LIMIT

    async def handle(self, request: Request) -> Response:
        if request.head.path == "/boom":
            raise RuntimeError("a bug")
        if request.head.path == "/big":
            return Response(200, self.big)
        if request.head.path == "/slow":
            await asyncio.sleep(3600)
        return Response(200, f"{request.head.method} {request.head.path} {request.body!r}".encode())


@asynccontextmanager
async def serving(limits: Limits) -> AsyncIterator[tuple[WebServer, int, Log]]:
    log = Log()
    server = WebServer(EchoApp(), log, limits)
    listener = await server.start("127.0.0.1", 0)
    try:
        yield server, listener.sockets[0].getsockname()[1], log
    finally:
        listener.close()
        server.refusals.close()


async def connect(port: int, source: str = "127.0.0.1") -> tuple[Any, Any]:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))


async def closed_by_server(reader: asyncio.StreamReader, within: float = 10.0) -> bytes:
    """Everything the server sent until it closed (EOF or reset)."""
    data = b""
    try:
        async with asyncio.timeout(within):
            while chunk := await reader.read(65536):
                data += chunk
    except ConnectionResetError:
        pass
    return data


def get(path: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode()


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(coro)


def test_connections_per_address_and_in_all() -> None:
    async def main() -> None:
        async with serving(Limits(connections=6, per_address=3)) as (server, port, _log):
            held = [await connect(port, "127.0.0.2") for _ in range(3)]
            extra_r, _ = await connect(port, "127.0.0.2")
            assert await closed_by_server(extra_r) == b"", "the 4th from one address: closed"
            held += [await connect(port, "127.0.0.3") for _ in range(3)]
            for _, writer in held:  # all six busy: none can make room
                writer.write(get("/slow"))
            while not all(c.state == "handling" for c in server.connections):
                await asyncio.sleep(0.01)  # polls the condition, it sets no pace
            seventh_r, _ = await connect(port, "127.0.0.4")
            assert await closed_by_server(seventh_r) == b""
            assert len(server.connections) == 6
            refused = server.refusals.by_kind()
            assert refused["too_many_from_address"] == 1 and refused["too_many_connections"] == 1
            for _, writer in held:
                writer.close()

    run(main())


def test_an_idle_connection_makes_room() -> None:
    async def main() -> None:
        async with serving(Limits(connections=2)) as (server, port, _log):
            first_r, first_w = await connect(port, "127.0.0.2")
            first_w.write(get("/a"))
            assert (await first_r.readuntil(b"GET /a b''")).startswith(b"HTTP/1.1 200")
            second_r, second_w = await connect(port, "127.0.0.3")
            second_w.write(get("/b"))  # busy, cannot be closed for room
            await second_r.readuntil(b"GET /b b''")
            third_r, third_w = await connect(port, "127.0.0.4")
            third_w.write(get("/c", "Connection: close\r\n"))
            assert b"GET /c" in await closed_by_server(third_r)
            assert await closed_by_server(first_r) == b"", "the one idle longest made room"
            assert not server.refusals.by_kind(), "closing an idle keep-alive is no refusal"
            second_w.close()

    run(main())


def test_a_silent_connection_of_the_busiest_address_makes_room() -> None:
    async def main() -> None:
        async with serving(Limits(connections=4, per_address=3)) as (server, port, _log):
            silent = [await connect(port, "127.0.1.1") for _ in range(3)]
            silent.append(await connect(port, "127.0.1.2"))
            reader, writer = await connect(port, "127.0.0.1")  # the technician
            writer.write(get("/page", "Connection: close\r\n"))
            assert b"GET /page" in await closed_by_server(reader)
            assert await closed_by_server(silent[0][0]) == b"", "the busiest address's oldest"
            assert server.refusals.by_kind()["evicted_waiting"] == 1
            for _, w in silent:
                w.close()

    run(main())


def test_a_head_too_large_or_too_slow_and_a_body_too_large() -> None:
    async def main() -> None:
        async with serving(Limits(head_s=0.2, body_s=0.2)) as (server, port, log):
            reader, writer = await connect(port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Flood: aaaaaaaa\r\n" * 1000)
            answer = await closed_by_server(reader)
            assert answer.startswith(b"HTTP/1.1 431 "), answer[:40]

            reader, writer = await connect(port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")  # … and never the end
            assert await closed_by_server(reader) == b"", "slow head: dropped"

            reader, _ = await connect(port)  # connects and says nothing
            assert await closed_by_server(reader) == b""

            reader, writer = await connect(port)
            writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12")
            assert await closed_by_server(reader) == b"", "slow body: dropped"

            reader, writer = await connect(port)
            writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n")
            assert (await closed_by_server(reader)).startswith(b"HTTP/1.1 413 ")

            reader, writer = await connect(port)
            writer.write(b"BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await closed_by_server(reader)).startswith(b"HTTP/1.1 405 ")

            refused = server.refusals.by_kind()
            assert refused == {
                "head_too_large": 1,
                "head_timeout": 2,
                "body_timeout": 1,
                "body_too_large": 1,
                "bad_request": 1,
            }, refused
            assert len(log.events("web_refused")) == 5, "one line per kind"
            assert not server.connections

    run(main())


def test_a_header_flood_of_many_connections_logs_two_lines() -> None:
    async def main() -> None:
        async with serving(Limits()) as (server, port, log):
            flood = b"GET / HTTP/1.1\r\n" + b"X: " + b"a" * 200 + b"\r\n"
            for _ in range(50):
                reader, writer = await connect(port)
                writer.write(flood * (MAX_HEAD_BYTES // len(flood) + 2))
                assert (await closed_by_server(reader)).startswith(b"HTTP/1.1 431")
            assert server.refusals.by_kind()["head_too_large"] == 50
            server.refusals.flush()  # the window's end
            assert len(log.events("web_refused")) == 1
            [more] = log.events("web_refused_repeated")
            assert more["more"] == 49 and more["kind"] == "head_too_large"

    run(main())


def test_keep_alive_pipelining_idle_close_and_request_cap() -> None:
    async def main() -> None:
        limits = Limits(idle_s=0.2, requests=3)
        async with serving(limits) as (server, port, _log):
            reader, writer = await connect(port)
            body = b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
            writer.write(get("/1") + body + get("/3") + get("/4"))  # pipelined
            answers = await closed_by_server(reader)
            assert answers.count(b"HTTP/1.1 200") == 3, "the cap of 3 requests, then closed"
            assert b"GET /1 b''" in answers and b"POST /p b'abc'" in answers
            assert answers.rstrip().endswith(b"GET /3 b''") and b"/4" not in answers
            assert answers.count(b"Connection: close") == 1

            reader, writer = await connect(port)
            writer.write(get("/a"))
            await reader.readuntil(b"b''")
            assert await closed_by_server(reader) == b"", "idle keep-alive: closed"
            assert not server.refusals.totals, "an idle close is no refusal"

            reader, writer = await connect(port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            writer.write_eof()  # a client that half-closes still gets its answer
            assert b"200 OK" in await closed_by_server(reader)

    run(main())


def test_a_handler_error_is_a_500_logged_once_and_a_slow_one_a_503() -> None:
    async def main() -> None:
        async with serving(Limits(handler_s=0.2)) as (_server, port, log):
            for _ in range(3):
                reader, writer = await connect(port)
                writer.write(get("/boom"))
                assert parse_reply(await closed_by_server(reader)).status == 500
            [logged] = [kw for level, e, kw in log.lines if e == "web_refused"]
            assert isinstance(logged["exc_info"], RuntimeError), "its traceback, once"
            reader, writer = await connect(port)
            writer.write(get("/slow"))
            assert parse_reply(await closed_by_server(reader)).status == 503

    run(main())


def test_a_response_the_client_does_not_take_is_dropped() -> None:
    async def main() -> None:
        async with serving(Limits(write_s=0.3)) as (server, port, _log):
            app = server.app
            assert isinstance(app, EchoApp)
            app.big = b"x" * (32 * 1024 * 1024)  # more than both sockets' buffers
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", port))
            sock.sendall(get("/big"))  # … and never read
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while not server.refusals.by_kind() and loop.time() < deadline:
                await asyncio.sleep(0.05)  # polls the condition, it sets no pace
            assert not server.connections and server.refusals.by_kind()["write_timeout"] == 1
            sock.close()

    run(main())


def test_addresses_are_counted_by_what_a_host_can_change() -> None:
    assert address_key(("192.168.1.20", 5000)) == "192.168.1.20"
    assert address_key(("::ffff:192.168.1.20", 5000, 0, 0)) == "192.168.1.20"
    a = address_key(("2001:db8:1:2:aaaa::1", 5000, 0, 0))
    b = address_key(("2001:db8:1:2:bbbb::9", 5000, 0, 0))
    assert a == b == "2001:db8:1:2::/64"
    assert address_key(None) == "unknown"
