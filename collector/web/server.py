"""The web page's connections: a small HTTP/1.1 server where every resource
a client can make the daemon hold is bounded (docs/security.md).

One :class:`Connection` (an ``asyncio.BufferedProtocol``) per TCP
connection, in the daemon's own event loop:

* **Admission** — at most :data:`MAX_CONNECTIONS` open, at most
  :data:`MAX_PER_ADDRESS` from one address (an IPv6 address counts by its
  /64). Past the total, room is made by closing the connection idle the
  longest in keep-alive, else one still waiting for its request head — from
  the address holding the most connections, the oldest of them. A browser
  sends its head as soon as it connects and is then never closed for room,
  so a flood of silent connections churns among itself and the technician
  still gets in; with no such connection, the new one is closed at once. The file descriptors the
  page can hold are thus ≤ :data:`MAX_CONNECTIONS`, far below the unit's
  1024, so the uplink and the control socket always have theirs.
* **Memory** — the kernel reads into one preallocated buffer of
  :data:`~collector.web.http.MAX_HEAD_BYTES` per connection (no allocation
  per read, no unbounded stream buffer); a body is read into a buffer of
  exactly its ``Content-Length``, which the app bounds by the request's
  login (:meth:`App.body_limit`). Reading pauses while a request is handled
  and while a response waits for the client to take it.
* **Time** — the head must arrive within :data:`HEAD_TIMEOUT_S` of its first
  byte (of the connection, for the first request), the body within
  :data:`BODY_TIMEOUT_S`, the response be taken within
  :data:`WRITE_TIMEOUT_S`; a keep-alive connection idle for
  :data:`KEEPALIVE_IDLE_S` is closed; a handler gets
  :data:`HANDLER_TIMEOUT_S`.

Past a bound the connection is closed (with a status where one helps the
client: 400, 413, 431 …) and counted by a
:class:`~collector.logs.Repeats` (``web_refused``), which logs the first of
each kind in a minute in full and the rest as one count — a hostile client
costs a few log lines a minute, never a traceback per connection.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

from collector.logs import Repeats
from collector.web.http import (
    MAX_HEAD_BYTES,
    HttpError,
    RequestHead,
    Response,
    error_bytes,
    parse_head,
)

#: Open connections in all. A technician's browser opens ≤ 6; the bound
#: keeps the page's file descriptors far below the unit's soft limit (1024).
MAX_CONNECTIONS = 64
#: Open connections from one address (IPv6: one /64).
MAX_PER_ADDRESS = 8
#: From a request's first byte to the end of its head (a browser sends it
#: in one packet).
HEAD_TIMEOUT_S = 5.0
#: From the end of the head to the end of the body (64 KiB on a slow link).
BODY_TIMEOUT_S = 10.0
#: A response not taken by the client in this time is dropped.
WRITE_TIMEOUT_S = 10.0
#: A keep-alive connection with no request for this long is closed.
KEEPALIVE_IDLE_S = 5.0
#: Requests on one connection before it is closed.
MAX_REQUESTS_PER_CONNECTION = 100
#: A handler's answer (the config editor's check runs a child: seconds).
HANDLER_TIMEOUT_S = 60.0
#: Connections the kernel queues before the server accepts them.
BACKLOG = 64


@dataclass(frozen=True, slots=True)
class Limits:
    """The bounds above, as one value a test can shrink."""

    connections: int = MAX_CONNECTIONS
    per_address: int = MAX_PER_ADDRESS
    head_s: float = HEAD_TIMEOUT_S
    body_s: float = BODY_TIMEOUT_S
    write_s: float = WRITE_TIMEOUT_S
    idle_s: float = KEEPALIVE_IDLE_S
    requests: int = MAX_REQUESTS_PER_CONNECTION
    handler_s: float = HANDLER_TIMEOUT_S


@dataclass(frozen=True, slots=True)
class Request:
    head: RequestHead
    body: bytes
    #: The client's address as limits count it (IPv6: its /64).
    peer: str
    #: The (address, port) the connection arrived at.
    local: tuple[str, int]


class App(Protocol):
    def body_limit(self, head: RequestHead) -> int: ...

    async def handle(self, request: Request) -> Response: ...


def address_key(peername: Any) -> str:
    """The address a limit counts: IPv4 as is, IPv4-mapped IPv6 as IPv4,
    other IPv6 by its /64 (a LAN host can take any address in its prefix)."""
    host = str(peername[0]) if isinstance(peername, tuple) and peername else "unknown"
    try:
        ip = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return f"{ipaddress.IPv6Network((ip, 64), strict=False).network_address}/64"
    return str(ip)


@dataclass
class WebServer:
    app: App
    log: Any
    limits: Limits = field(default_factory=Limits)
    connections: set[Connection] = field(default_factory=set)
    per_address: Counter[str] = field(default_factory=Counter)
    refusals: Repeats = field(init=False)

    def __post_init__(self) -> None:
        # The peer is on the line in full; a kind's count is over all peers.
        self.refusals = Repeats(self.log, "web_refused", source_field=None)

    async def start(self, host: str, port: int) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        return await loop.create_server(
            lambda: Connection(self), host, port, backlog=BACKLOG, start_serving=True
        )

    def admit(self, conn: Connection) -> str | None:
        """None when ``conn`` may stay, else the refusal's kind."""
        if self.per_address[conn.peer] >= self.limits.per_address:
            return "too_many_from_address"
        if len(self.connections) >= self.limits.connections:
            victim = self.victim()
            if victim is None:
                return "too_many_connections"
            if victim.state != "idle":
                self.refusals.add(
                    "evicted_waiting", peer=victim.peer, detail="room for a new connection"
                )
            self.release(victim)
        self.connections.add(conn)
        self.per_address[conn.peer] += 1
        conn.admitted = True
        return None

    def victim(self) -> Connection | None:
        """The connection to close for a new one: idle the longest, else one
        waiting for its head from the busiest address, the oldest of those."""
        idle = [c for c in self.connections if c.state == "idle"]
        if idle:
            return min(idle, key=lambda c: c.since)
        waiting = [c for c in self.connections if c.state == "head"]
        if not waiting:
            return None
        return min(waiting, key=lambda c: (-self.per_address[c.peer], c.since))

    def release(self, conn: Connection) -> None:
        """Forget ``conn`` and close it (idempotent)."""
        if conn.admitted:
            conn.admitted = False
            self.connections.discard(conn)
            self.per_address[conn.peer] -= 1
            if self.per_address[conn.peer] <= 0:
                del self.per_address[conn.peer]
        conn.drop()

    def stats(self) -> dict[str, Any]:
        return {"open": len(self.connections), "refused": self.refusals.by_kind()}


class Connection(asyncio.BufferedProtocol):
    """One client connection; ``state`` is head → body → handling → writing →
    idle → head … or closed."""

    def __init__(self, server: WebServer) -> None:
        self.server = server
        self.limits = server.limits
        self.transport: asyncio.Transport | None = None
        self.peer = "unknown"
        self.local: tuple[str, int] = ("", 0)
        self.admitted = False
        self.state = "new"
        self.buffer = bytearray()
        self.filled = 0
        self.body = bytearray()
        self.got = 0
        self.head: RequestHead | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.task: asyncio.Task[None] | None = None
        self.requests = 0
        self.keep_alive = False
        #: When the current state began (idle or waiting for a head).
        self.since = time.monotonic()

    # -- asyncio callbacks ------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.peer = address_key(transport.get_extra_info("peername"))
        sockname = transport.get_extra_info("sockname")
        self.local = (str(sockname[0]), int(sockname[1])) if sockname else ("", 0)
        refused = self.server.admit(self)
        if refused is not None:
            self.server.refusals.add(refused, peer=self.peer)
            self.state = "closed"
            transport.abort()
            return
        # Any unsent byte pauses us: a response is taken before the next is read.
        transport.set_write_buffer_limits(high=0)
        self.buffer = bytearray(MAX_HEAD_BYTES)
        self.state, self.since = "head", time.monotonic()
        self.arm(self.limits.head_s, "head_timeout")

    def get_buffer(self, sizehint: int) -> memoryview:
        if self.state == "body":
            return memoryview(self.body)[self.got :]
        return memoryview(self.buffer)[self.filled :]

    def buffer_updated(self, nbytes: int) -> None:
        if self.state == "body":
            self.got += nbytes
            if self.got == len(self.body):
                self.dispatch()
            return
        if self.state == "idle":
            self.state, self.since = "head", time.monotonic()
            self.arm(self.limits.head_s, "head_timeout")
        if self.state == "head":
            self.filled += nbytes
            self.scan_head(max(0, self.filled - nbytes - 3))

    def eof_received(self) -> bool:
        # A client that half-closes after its request still gets the answer.
        if self.state in ("handling", "writing"):
            self.keep_alive = False
            return True
        return False

    def pause_writing(self) -> None:
        pass  # the write timer bounds the wait; resume_writing ends it

    def resume_writing(self) -> None:
        if self.state == "writing":
            self.written()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.release(self)

    # -- the request cycle ---------------------------------------------

    def scan_head(self, start: int) -> None:
        end = self.buffer.find(b"\r\n\r\n", start, self.filled)
        if end < 0:
            if self.filled >= len(self.buffer):
                self.refuse("head_too_large", 431, "head past MAX_HEAD_BYTES")
            return
        try:
            head = parse_head(bytes(self.buffer[:end]))
        except HttpError as exc:
            self.refuse("bad_request", exc.status, exc.reason)
            return
        if head.content_length > self.server.app.body_limit(head):
            self.refuse("body_too_large", 413, f"Content-Length {head.content_length}")
            return
        self.head = head
        self.body = bytearray(head.content_length)
        rest = end + 4
        self.got = min(self.filled - rest, len(self.body))
        self.body[: self.got] = self.buffer[rest : rest + self.got]
        pipelined = self.buffer[rest + self.got : self.filled]
        self.buffer[: len(pipelined)] = pipelined
        self.filled = len(pipelined)
        if self.got == len(self.body):
            self.dispatch()
        else:
            self.state = "body"
            self.arm(self.limits.body_s, "body_timeout")

    def dispatch(self) -> None:
        assert self.transport is not None and self.head is not None
        self.disarm()
        self.state = "handling"
        self.transport.pause_reading()
        request = Request(self.head, bytes(self.body), self.peer, self.local)
        self.body = bytearray()
        self.task = asyncio.get_running_loop().create_task(self.respond(request))

    async def respond(self, request: Request) -> None:
        head = request.head
        try:
            async with asyncio.timeout(self.limits.handler_s):
                response = await self.server.app.handle(request)
        except HttpError as exc:
            self.server.refusals.add("bad_request", peer=self.peer, detail=exc.reason)
            response = Response(exc.status, exc.reason.encode() + b"\n")
        except TimeoutError:
            self.server.refusals.add("handler_timeout", peer=self.peer, detail=head.path)
            response = Response(503, b"the collector is busy; try again\n")
        except Exception as exc:  # a bug: answered, logged once a minute with its traceback
            self.server.refusals.add("handler_error", peer=self.peer, detail=head.path, exc=exc)
            response = Response(500, b"internal error\n")
        self.task = None
        if self.transport is None or self.transport.is_closing():
            return
        self.requests += 1
        self.keep_alive = (
            head.keep_alive and self.requests < self.limits.requests and response.status < 500
        )
        data = response.encode(head_only=head.method == "HEAD", keep_alive=self.keep_alive)
        self.state = "writing"
        self.transport.write(data)
        if self.transport.get_write_buffer_size() == 0:
            self.written()
        else:
            self.arm(self.limits.write_s, "write_timeout")

    def written(self) -> None:
        assert self.transport is not None
        self.disarm()
        if not self.keep_alive:
            self.state = "closed"
            self.transport.close()
            return
        self.state, self.since = "idle", time.monotonic()
        self.transport.resume_reading()
        if self.filled:  # a pipelined request already read
            self.state = "head"
            self.arm(self.limits.head_s, "head_timeout")
            self.scan_head(0)
        else:
            self.arm(self.limits.idle_s, "")

    # -- ends ------------------------------------------------------------

    def refuse(self, kind: str, status: int, detail: str) -> None:
        """Answer ``status``, close, count once."""
        assert self.transport is not None
        self.server.refusals.add(kind, peer=self.peer, detail=detail)
        self.state = "closed"
        self.transport.write(error_bytes(status))
        self.transport.close()
        self.arm(self.limits.write_s, "")  # a client that never reads the refusal

    def arm(self, seconds: float, kind: str) -> None:
        """(Re)start the one timer; at its end the connection is dropped,
        counted as ``kind`` unless that is empty (idle keep-alive: normal)."""
        self.disarm()
        self.timer = asyncio.get_running_loop().call_later(seconds, self.expire, kind)

    def disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def expire(self, kind: str) -> None:
        self.timer = None
        if kind:
            self.server.refusals.add(kind, peer=self.peer, detail=f"state {self.state}")
        self.server.release(self)

    def drop(self) -> None:
        """Abort the transport and let go of every buffer, timer and task."""
        self.state = "closed"
        self.disarm()
        if self.task is not None:
            self.task.cancel()
            self.task = None
        self.buffer = self.body = bytearray()
        if self.transport is not None:
            self.transport.abort()
