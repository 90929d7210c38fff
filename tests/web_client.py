"""A small HTTP/1.1 client over real sockets for the web page's tests.

One connection per request (``Connection: close``) from a chosen source
address on loopback (the whole of 127/8 is this host on Linux, so
127.0.0.2 is "another client" for per-address limits), a cookie jar like a
browser's, and the raw answer kept for assertions.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlencode

if TYPE_CHECKING:
    from collector.web.app import WebApp

FORM_TYPE = "application/x-www-form-urlencoded"


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def set_cookies(self) -> list[str]:
        return [v for k, v in self.headers if k.lower() == "set-cookie"]


def parse_reply(raw: bytes) -> Reply:
    """An answer; status 0 when the server closed without one (a bound)."""
    if not raw:
        return Reply(0, [], b"")
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = [(k, v.strip()) for k, _, v in (line.partition(":") for line in lines[1:])]
    return Reply(status, headers, body)


def csrf_of(text: str) -> str:
    """The page's own form's token (the last one; the header's logout form comes first)."""
    found = re.findall(r'name="csrf" value="([^"]*)"', text)
    assert found and found[-1], text
    return str(found[-1])


@dataclass
class Client:
    port: int
    source: str = "127.0.0.1"
    host: str | None = None  # the Host header; default the address it connects to
    cookies: dict[str, str] = field(default_factory=dict)

    async def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        timeout: float = 30.0,
    ) -> Reply:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", self.port, local_addr=(self.source, 0)
        )
        try:
            lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host or f'127.0.0.1:{self.port}'}"]
            if self.cookies:
                lines.append("Cookie: " + "; ".join(f"{k}={v}" for k, v in self.cookies.items()))
            if body or method == "POST":
                lines.append(f"Content-Length: {len(body)}")
            lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
            lines.append("Connection: close")
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
            await writer.drain()
            raw = await asyncio.wait_for(reader.read(), timeout)
        finally:
            writer.close()
        reply = parse_reply(raw)
        for cookie in reply.set_cookies():
            name, _, rest = cookie.partition("=")
            value = rest.partition(";")[0]
            if "Max-Age=0" in cookie:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        return reply

    async def get(self, path: str) -> Reply:
        return await self.request("GET", path)

    async def post(self, path: str, fields: dict[str, str]) -> Reply:
        body = urlencode(fields).encode()
        return await self.request("POST", path, body, {"Content-Type": FORM_TYPE})

    async def login(self, password: str) -> Reply:
        pre = csrf_of((await self.get("/")).text)
        return await self.post("/login", {"csrf": pre, "password": password})


@contextlib.asynccontextmanager
async def serving(app: WebApp) -> AsyncIterator[int]:
    """``app`` on a free loopback port, for the block's length."""
    import structlog

    from collector.web.server import WebServer

    server = app.server = WebServer(app, structlog.get_logger("test"))
    listener = await server.start("127.0.0.1", 0)
    try:
        yield listener.sockets[0].getsockname()[1]
    finally:
        listener.close()
        server.refusals.close()
