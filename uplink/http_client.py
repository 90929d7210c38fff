"""A small HTTP/1.1 client for the uplink's HTTP transport: h11 over one
asyncio connection, kept open between requests.

h11 (python-hyper, sans-IO: bytes in → events out) parses and frames; this
module is only the I/O around it, as the house rules want protocols apart
from sockets. Why not a full client (aiohttp, httpx): docs/decisions.md, with
the measured RSS and import time of each on the daemon.

What it does and does not:

- one TCP connection (TLS when given a context: the configured CA, host name
  checked), bound to the endpoint's interface like the MQTT socket
  (uplink/links.py ``connect``), reused for every request while the server
  keeps it open (HTTP/1.1 keep-alive; ``Connection: close`` or an answer h11
  cannot frame for reuse closes it, and the next request opens a new one);
- one request at a time (the caller serialises): no pipelining, so an answer
  belongs to the request just written;
- bounded everything a server can grow: the answer's head
  (:data:`MAX_HEAD_BYTES`), its body (the caller's ``max_body``), and the
  whole exchange (the caller's timeout); a server that breaks any bound, closes
  early or speaks something h11 refuses ends the connection with
  :class:`HttpFailed` and nothing of its answer is believed;
- no redirects, cookies, proxies or compression: the platform's intake is a
  fixed URL (docs/uplink-protocol.md "HTTP transport").
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass

import h11

from uplink import links

#: An answer's status line and headers: the platform's are a few hundred
#: bytes; a server sending more is not the platform.
MAX_HEAD_BYTES = 16 * 1024

#: Bytes read from the socket at a time.
READ_CHUNK = 64 * 1024

#: Seconds a TCP connect plus TLS handshake may take over a slow 4G link
#: (the MQTT connect has the same: uplink/session.py CONNECT_TIMEOUT_S).
CONNECT_TIMEOUT_S = 15.0


class HttpFailed(ConnectionError):
    """The exchange failed (connect, TLS, reset, timeout, a malformed or
    oversized answer): the connection is closed, nothing of an answer believed.
    A ConnectionError, so the uplink handles it like any lost link."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    #: Header names in lower case; a name given twice keeps its last value.
    headers: dict[str, str]
    body: bytes


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """Server certificate checked against ``ca_file`` (PEM; None: the system's
    CAs) and the host name; TLS 1.2 at least."""
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class HttpConnection:
    """One kept-alive connection to ``host:port``; :meth:`request` opens it as needed."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: ssl.SSLContext | None = None,
        interface: str | None = None,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
    ) -> None:
        self.host, self.port, self.tls, self.interface = host, port, tls, interface
        self.connect_timeout_s = connect_timeout_s
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._h11: h11.Connection | None = None
        #: Bytes written and read on the wire (TLS excluded: what HTTP carried).
        self.bytes_out = 0
        self.bytes_in = 0
        #: Connections opened (1 for a session whose connection was reused throughout).
        self.opened = 0

    @property
    def host_header(self) -> str:
        default = 443 if self.tls is not None else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"

    @property
    def is_open(self) -> bool:
        return self._writer is not None

    async def open(self) -> None:
        """Connect (bound to the interface) and, with TLS, shake hands."""
        self.close()
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                sock = await links.connect(self.host, self.port, self.interface)
                try:
                    self._reader, self._writer = await asyncio.open_connection(
                        sock=sock,
                        ssl=self.tls,
                        server_hostname=self.host if self.tls is not None else None,
                        limit=READ_CHUNK,
                    )
                except BaseException:
                    sock.close()
                    raise
        except TimeoutError:
            raise HttpFailed(f"connect to {self.host}:{self.port} timed out") from None
        except (OSError, ssl.SSLError) as exc:
            raise HttpFailed(f"connect to {self.host}:{self.port}: {exc}") from exc
        self._h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD_BYTES)
        self.opened += 1

    def close(self) -> None:
        writer, self._writer, self._reader, self._h11 = self._writer, None, None, None
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.close()

    async def request(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes,
        *,
        timeout_s: float,
        max_body: int,
    ) -> Answer:
        """One exchange within ``timeout_s``, on the open connection or a new one
        (a connection the server closed while idle is replaced first)."""
        if self._writer is None or self._reader is None or self._reader.at_eof():
            await self.open()
        try:
            async with asyncio.timeout(timeout_s):
                return await self._exchange(method, target, headers, body, max_body)
        except TimeoutError:
            self.close()
            raise HttpFailed(f"{method} {target}: no answer within {timeout_s:g} s") from None
        except h11.ProtocolError as exc:
            self.close()
            raise HttpFailed(f"{method} {target}: {exc}") from None
        except (OSError, ssl.SSLError) as exc:
            self.close()
            if isinstance(exc, HttpFailed):
                raise
            raise HttpFailed(f"{method} {target}: {exc}") from exc
        except BaseException:  # cancelled mid-exchange: the connection is unusable
            self.close()
            raise

    async def _exchange(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes, max_body: int
    ) -> Answer:
        conn, reader, writer = self._h11, self._reader, self._writer
        assert conn is not None and reader is not None and writer is not None
        head = [("Host", self.host_header), ("Content-Length", str(len(body))), *headers]
        data = conn.send(h11.Request(method=method, target=target, headers=head))
        if body:
            data += conn.send(h11.Data(data=body))
        data += conn.send(h11.EndOfMessage())
        writer.write(data)
        self.bytes_out += len(data)
        await writer.drain()
        response: h11.Response | None = None
        chunks: list[bytes] = []
        size = 0
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                chunk = await reader.read(READ_CHUNK)
                self.bytes_in += len(chunk)
                conn.receive_data(chunk)  # b"": the server closed
                continue
            if isinstance(event, h11.InformationalResponse):
                continue  # 100 Continue and the like: the answer follows
            if isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                size += len(event.data)
                if size > max_body:
                    raise HttpFailed(f"{method} {target}: answer over {max_body} bytes")
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                break
            else:  # ConnectionClosed before the answer ended
                raise HttpFailed(f"{method} {target}: connection closed by the server")
        assert response is not None  # h11 gives a Response before Data / EndOfMessage
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()  # kept alive for the next request
        else:
            self.close()  # Connection: close, or framed to the end of the stream
        found = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in response.headers}
        return Answer(response.status_code, found, b"".join(chunks))
