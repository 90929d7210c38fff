"""HTTP/1.1 for the local web page, sans-IO: bytes in, a request or an error out.

Layout (RFC 9112): a request line ``METHOD SP target SP HTTP/1.x`` CRLF,
header lines ``name: value`` CRLF, an empty line, then ``Content-Length``
bytes of body. The connection (collector/web/server.py) collects bytes until
the empty line, within :data:`MAX_HEAD_BYTES`, and hands the head to
:func:`parse_head`; the body it then reads is decoded by :func:`decode_form`.

What the page needs and no more, and every limit a named constant:

* methods GET, HEAD, POST; an origin-form target (``/path?query``) of
  printable ASCII; HTTP/1.0 or 1.1.
* at most :data:`MAX_HEADERS` header lines; a name is an RFC 9110 token, a
  value visible ASCII, space, tab or obs-text; no line folding; exactly one
  ``Host`` for HTTP/1.1.
* a body only by ``Content-Length`` (digits, one value); any
  ``Transfer-Encoding`` is 501 — a chunked body would need a second framing
  for nothing a form sends.
* a form body is ``application/x-www-form-urlencoded``: strict ``%XX``,
  UTF-8, at most :data:`MAX_FORM_FIELDS` fields, each name once.

Every refusal is :class:`HttpError` (a status the client gets and a reason
for the log); no other exception leaves these functions, whatever the bytes
(tests/test_web_http.py fuzzes both with ≥ 100 000 inputs).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

#: The whole head (request line and headers). A browser's request to this page
#: is < 1 KiB; 8 KiB is what common servers allow for one header line.
MAX_HEAD_BYTES = 8 * 1024
#: Header lines in one request; a browser sends about 15.
MAX_HEADERS = 32
#: The request target; the page's longest URL is ``/api/status``.
MAX_TARGET_BYTES = 1024
#: Fields in a form body; the largest form (the config editor) has two.
MAX_FORM_FIELDS = 8
#: Cookies read from a request; the page sets two.
MAX_COOKIES = 16

METHODS = frozenset({"GET", "HEAD", "POST"})
FORM_TYPE = "application/x-www-form-urlencoded"

REASONS = {
    200: "OK",
    302: "Found",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    421: "Misdirected Request",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}

# RFC 9110 token characters; a field value is VCHAR / SP / HTAB / obs-text.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VALUE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")
_TARGET = re.compile(rb"/[\x21-\x7e]*")
_DIGITS = re.compile(rb"[0-9]{1,18}")
_PERCENT = re.compile(rb"%([0-9A-Fa-f]{2})")


class HttpError(Exception):
    """A request refused: ``status`` goes to the client, ``reason`` to the log."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class RequestHead:
    method: str
    path: str
    query: str
    version: str  # "1.0" or "1.1"
    #: Lower-case name → value; a repeated header keeps its values joined by
    #: ", " (RFC 9110 §5.3), except Cookie, joined by "; ".
    headers: dict[str, str]
    content_length: int
    keep_alive: bool

    @property
    def host(self) -> str:
        return self.headers.get("host", "")


def parse_head(head: bytes) -> RequestHead:
    """The head up to (not including) the empty line's CRLF CRLF → a request."""
    if len(head) > MAX_HEAD_BYTES:
        raise HttpError(431, "head too large")
    lines = head.split(b"\r\n")
    if any(b"\n" in line or b"\r" in line for line in lines):
        raise HttpError(400, "bare CR or LF")
    if len(lines) - 1 > MAX_HEADERS:
        raise HttpError(431, "too many header lines")
    method, path, query, version = _request_line(lines[0])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, value = _header_line(line)
        if name in headers:
            if name in ("host", "content-length"):
                raise HttpError(400, f"{name} given twice")
            headers[name] += ("; " if name == "cookie" else ", ") + value
        else:
            headers[name] = value
    if version == "1.1" and "host" not in headers:
        raise HttpError(400, "no Host header")
    if "transfer-encoding" in headers:
        raise HttpError(501, "Transfer-Encoding is not supported; send Content-Length")
    length_text = headers.get("content-length", "0").encode("latin-1")
    if not _DIGITS.fullmatch(length_text):
        raise HttpError(400, "Content-Length is not a number")
    connection = {t.strip().lower() for t in headers.get("connection", "").split(",")}
    keep_alive = "close" not in connection if version == "1.1" else "keep-alive" in connection
    return RequestHead(method, path, query, version, headers, int(length_text), keep_alive)


def _request_line(line: bytes) -> tuple[str, str, str, str]:
    parts = line.split(b" ")
    if len(parts) != 3:
        raise HttpError(400, "request line is not METHOD SP target SP version")
    method_b, target, version_b = parts
    if not _TOKEN.fullmatch(method_b):
        raise HttpError(400, "method is not a token")
    method = method_b.decode("ascii")
    if method not in METHODS:
        raise HttpError(405, f"method {method[:16]!r} not allowed")
    if version_b not in (b"HTTP/1.1", b"HTTP/1.0"):
        if re.fullmatch(rb"HTTP/[0-9]\.[0-9]", version_b):
            raise HttpError(505, "only HTTP/1.0 and HTTP/1.1")
        raise HttpError(400, "no HTTP version")
    if len(target) > MAX_TARGET_BYTES:
        raise HttpError(400, "target too long")
    if not _TARGET.fullmatch(target):
        raise HttpError(400, "target is not an absolute path")
    path, _, query = target.decode("ascii").partition("?")
    return method, path, query, version_b[5:].decode("ascii")


def _header_line(line: bytes) -> tuple[str, str]:
    if line[:1] in (b" ", b"\t"):
        raise HttpError(400, "folded header line")
    name, colon, value = line.partition(b":")
    if not colon or not _TOKEN.fullmatch(name):
        raise HttpError(400, "header line is not name: value")
    value = value.strip(b" \t")
    if not _VALUE.fullmatch(value):
        raise HttpError(400, "control character in a header value")
    return name.decode("ascii").lower(), value.decode("latin-1")


def parse_cookies(header: str) -> dict[str, str]:
    """``a=1; b=2`` → {"a": "1", "b": "2"}; malformed pairs are skipped, the
    first value of a repeated name kept, at most :data:`MAX_COOKIES` read."""
    out: dict[str, str] = {}
    for pair in header.split(";", MAX_COOKIES)[:MAX_COOKIES]:
        name, eq, value = pair.strip().partition("=")
        if eq and name and name not in out:
            out[name] = value.strip().strip('"')
    return out


def _split_host(host: str) -> tuple[str, int | None]:
    """``name:port`` / ``[v6]:port`` / ``name`` → (name, port)."""
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else None
    else:
        name, colon, port_text = host.rpartition(":")
        name, port = (name, port_text) if colon else (host, None)
    if port is None:
        return name, None
    return name, int(port) if port.isdigit() and len(port) <= 5 else -1


def _normal_ip(text: str) -> str | None:
    try:
        ip = ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip)


def host_allowed(host: str, local: tuple[str, int], names: Sequence[str] = ()) -> bool:
    """Whether a request's ``Host`` names this page: the address and port the
    connection arrived at (``localhost`` too on loopback), or a name of
    ``[web] hosts`` (a TLS proxy's; a name without a port matches any). A
    page reached under another name (DNS rebinding) is refused."""
    host = host.strip().lower()
    name, port = _split_host(host)
    for allowed in names:
        allowed = allowed.lower()
        if host == allowed or (":" not in allowed.strip("[]") and name == allowed):
            return True
    if port == -1 or (port or 80) != local[1]:
        return False
    local_ip = _normal_ip(local[0])
    if name == "localhost":
        return local_ip is not None and ipaddress.ip_address(local_ip).is_loopback
    return local_ip is not None and _normal_ip(name) == local_ip


def media_type(content_type: str) -> str:
    """``application/x-www-form-urlencoded; charset=UTF-8`` → the type alone."""
    return content_type.partition(";")[0].strip().lower()


def _unquote(raw: bytes) -> str:
    raw = raw.replace(b"+", b" ")
    if b"%" in raw:
        pieces = raw.split(b"%")
        out = bytearray(pieces[0])
        for piece in pieces[1:]:
            if not _PERCENT.match(b"%" + piece[:2]):
                raise HttpError(400, "form: % not followed by two hex digits")
            out.append(int(piece[:2], 16))
            out += piece[2:]
        raw = bytes(out)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise HttpError(400, "form: not UTF-8") from None


def decode_form(body: bytes) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body → name → value."""
    form: dict[str, str] = {}
    if not body:
        return form
    pairs = body.split(b"&")
    if len(pairs) > MAX_FORM_FIELDS:
        raise HttpError(400, "form: too many fields")
    for pair in pairs:
        if not pair:
            continue
        name_b, _, value_b = pair.partition(b"=")
        name = _unquote(name_b)
        if name in form:
            raise HttpError(400, f"form: field {name[:32]!r} given twice")
        form[name] = _unquote(value_b)
    return form


@dataclass(slots=True)
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    #: (name, value) pairs; a name may repeat (Set-Cookie).
    headers: list[tuple[str, str]] = field(default_factory=list)

    def encode(self, *, head_only: bool = False, keep_alive: bool = False) -> bytes:
        lines = [f"HTTP/1.1 {self.status} {REASONS.get(self.status, 'Unknown')}"]
        lines.append(f"Content-Type: {self.content_type}")
        lines.append(f"Content-Length: {len(self.body)}")
        lines.append("Connection: keep-alive" if keep_alive else "Connection: close")
        lines += [f"{name}: {value}" for name, value in self.headers]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return head if head_only else head + self.body


def error_bytes(status: int, text: str | None = None) -> bytes:
    """A refusal the connection sends just before it closes."""
    body = (text or REASONS.get(status, "error")).encode() + b"\n"
    return Response(status, body).encode()
