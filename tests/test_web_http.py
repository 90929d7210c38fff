"""The web page's request parser and form decoder: every refusal, and a fuzz.

Pure functions (collector/web/http.py), no sockets: the fuzz feeds
:func:`parse_head` and :func:`decode_form` 100 000 inputs each — mutations
of real browser requests and forms (bytes flipped, cut, repeated, spliced,
CR/LF/NUL/% inserted) and plain random bytes — and checks that every one
ends as a request or form that keeps the limits, or as :class:`HttpError`
with a client error status; nothing else may escape (a traceback per
request was the failure this guards against).
"""

from __future__ import annotations

import random
from urllib.parse import parse_qsl, urlencode

import pytest

from collector.web.http import (
    MAX_FORM_FIELDS,
    MAX_HEAD_BYTES,
    MAX_HEADERS,
    METHODS,
    HttpError,
    RequestHead,
    Response,
    decode_form,
    host_allowed,
    parse_cookies,
    parse_head,
)

#: What chromium sent to the page in tests/test_web_page.py (head only).
BROWSER_GET = (
    b"GET /config HTTP/1.1\r\n"
    b"Host: 127.0.0.1:8080\r\n"
    b"Connection: keep-alive\r\n"
    b"Upgrade-Insecure-Requests: 1\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    b"HeadlessChrome/120.0.0.0 Safari/537.36\r\n"
    b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8\r\n"
    b"Sec-Fetch-Site: same-origin\r\n"
    b"Sec-Fetch-Mode: navigate\r\n"
    b"Referer: http://127.0.0.1:8080/\r\n"
    b"Accept-Encoding: gzip, deflate, br\r\n"
    b"Accept-Language: en-US,en;q=0.9\r\n"
    b"Cookie: fc_login=abc; fc_session=Zx-9_tok"
)
BROWSER_POST = (
    b"POST /login HTTP/1.1\r\n"
    b"Host: 127.0.0.1:8080\r\n"
    b"Content-Length: 71\r\n"
    b"Content-Type: application/x-www-form-urlencoded\r\n"
    b"Origin: http://127.0.0.1:8080\r\n"
    b"Cookie: fc_login=abc"
)
FORMS = (
    b"csrf=Zx-9_tok&password=pump-island-7",
    b"csrf=t&toml=%5Buplink%5D%0D%0Ahost+%3D+%2210.0.0.1%22%0D%0Apassword+%3D+%22%E5%AF%86%22",
    b"a=&b&=c&&d=%25%2B+",
)
FUZZ_INPUTS = 100_000
#: Form values: printable ASCII, form syntax, CJK, emoji.
VALUE_CHARS = "".join(map(chr, range(32, 127))) + "\r\n中文油枪€😀"


def test_a_browser_request_is_read() -> None:
    head = parse_head(BROWSER_GET)
    assert (head.method, head.path, head.query, head.version) == ("GET", "/config", "", "1.1")
    assert head.host == "127.0.0.1:8080" and head.keep_alive and head.content_length == 0
    assert parse_cookies(head.headers["cookie"]) == {"fc_login": "abc", "fc_session": "Zx-9_tok"}
    post = parse_head(BROWSER_POST)
    assert post.content_length == 71 and post.headers["content-type"].startswith("application/")
    one_zero = parse_head(b"GET /api/status?x=1 HTTP/1.0")
    assert one_zero.query == "x=1" and not one_zero.keep_alive, "HTTP/1.0 closes by default"
    assert not parse_head(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close").keep_alive


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"GET / HTTP/1.1", 400),  # no Host
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1e3", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: " + b"9" * 19, 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked", 501),
        (b"GET / HTTP/1.1\r\nHost: a\r\n folded", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nbad header", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b", 400),
        (b"GET / HTTP/1.1\r\nHost: a\nX: b", 400),  # bare LF
        (b"DELETE / HTTP/1.1\r\nHost: a", 405),
        (b"GET / HTTP/2.0\r\nHost: a", 505),
        (b"GET / SPDY\r\nHost: a", 400),
        (b"GET http://evil/ HTTP/1.1\r\nHost: a", 400),
        (b"GET /a b HTTP/1.1\r\nHost: a", 400),
        (b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\nHost: a", 400),
        (b"GET / HTTP/1.1\r\nHost: a" + b"\r\nX: 1" * MAX_HEADERS, 431),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"a" * MAX_HEAD_BYTES, 431),
        (b"", 400),
    ],
)
def test_each_refusal_has_its_status(head: bytes, status: int) -> None:
    with pytest.raises(HttpError) as refused:
        parse_head(head)
    assert refused.value.status == status, refused.value.reason


def test_forms_decode_like_the_standard_library_and_refuse_the_rest() -> None:
    fields = {"csrf": "a+b/c=", "toml": '[uplink]\r\nhost = "10.0.0.1"  # 中文 %41'}
    assert decode_form(urlencode(fields).encode()) == fields
    assert decode_form(b"") == {}
    assert decode_form(b"a&b=") == {"a": "", "b": ""}
    for bad, why in (
        (b"a=%zz", "hex"),
        (b"a=%4", "hex"),
        (b"a=%ff", "UTF-8"),
        (b"a=\xff", "UTF-8"),
        (b"a=1&a=2", "twice"),
        (b"&".join(b"f%d=1" % n for n in range(MAX_FORM_FIELDS + 1)), "too many"),
    ):
        with pytest.raises(HttpError, match=why) as refused:
            decode_form(bad)
        assert refused.value.status == 400


def test_a_response_carries_its_length_and_connection() -> None:
    data = Response(200, b"hi", headers=[("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")]).encode()
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"\r\n\r\nhi")
    assert b"Content-Length: 2\r\n" in data and b"Connection: close\r\n" in data
    assert data.count(b"Set-Cookie") == 2
    assert Response(200, b"hi").encode(head_only=True).endswith(b"\r\n\r\n")


def _mutate(rng: random.Random, seed: bytes) -> bytes:
    data = bytearray(seed)
    for _ in range(rng.randint(1, 6)):
        op = rng.randrange(8)
        at = rng.randint(0, len(data))
        if op == 0 and data:  # flip a byte
            data[min(at, len(data) - 1)] = rng.randrange(256)
        elif op == 1:  # insert a byte that matters to HTTP
            data[at:at] = rng.choice([b"\r", b"\n", b"\r\n", b"\x00", b":", b" ", b"%", b"&", b"="])
        elif op == 2:  # cut
            del data[at : at + rng.randint(1, 40)]
        elif op == 3:  # repeat a slice (header floods, doubled fields)
            piece = data[at : at + rng.randint(1, 60)]
            data[at:at] = piece * rng.randint(2, 50)
        elif op == 4:  # random bytes
            data[at:at] = rng.randbytes(rng.randint(1, 12))
        elif op == 5:  # splice in a header line
            line = rng.choice(
                [b"\r\nContent-Length: 99999", b"\r\nHost: x", b"\r\nTransfer-Encoding: chunked"]
            )
            data[at:at] = line
        elif op == 6:  # truncate
            del data[at:]
        else:  # huge number
            data[at:at] = str(rng.randint(0, 10**30)).encode()
    return bytes(data)


def test_fuzz_the_request_parser() -> None:
    rng = random.Random(20261207)
    seeds = (BROWSER_GET, BROWSER_POST, b"GET / HTTP/1.0")
    statuses: set[int] = set()
    parsed = 0
    for n in range(FUZZ_INPUTS):
        if n % 10 == 0:
            data = rng.randbytes(rng.randint(0, 300))
        else:
            data = _mutate(rng, rng.choice(seeds))
        try:
            head = parse_head(data)
        except HttpError as exc:
            assert 400 <= exc.status < 600 and exc.reason, data
            statuses.add(exc.status)
            continue
        parsed += 1
        assert isinstance(head, RequestHead)
        assert head.method in METHODS and head.path.startswith("/"), data
        assert 0 <= head.content_length < 10**18 and len(head.headers) <= MAX_HEADERS, data
        assert len(data) <= MAX_HEAD_BYTES
    assert parsed > FUZZ_INPUTS // 10, "the mutations also make valid requests"
    assert {400, 405, 431, 501} <= statuses, statuses


def test_fuzz_the_form_decoder() -> None:
    rng = random.Random(7)
    decoded = 0
    for n in range(FUZZ_INPUTS):
        if n % 10 == 0:
            data = rng.randbytes(rng.randint(0, 200))
        elif n % 10 == 1:  # a valid form from random fields: must round-trip

            def text(alphabet: str, most: int) -> str:
                return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, most)))

            fields = {
                text("ab%+=&中 \r\n", 4) + str(i): text(VALUE_CHARS, 20)
                for i in range(rng.randint(0, MAX_FORM_FIELDS))
            }
            assert decode_form(urlencode(fields).encode()) == fields
            decoded += 1
            continue
        else:
            data = _mutate(rng, rng.choice(FORMS))
        try:
            form = decode_form(data)
        except HttpError as exc:
            assert exc.status == 400 and exc.reason.startswith("form:"), data
            continue
        decoded += 1
        assert len(form) <= MAX_FORM_FIELDS
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in form.items())
        # What the decoder accepts, the standard library reads the same way.
        # (Byte for byte: a raw byte and a %XX may make one UTF-8 character.)
        pairs = parse_qsl(data.decode("latin-1"), keep_blank_values=True, encoding="latin-1")
        expected = {k.encode("latin-1").decode(): v.encode("latin-1").decode() for k, v in pairs}
        assert form == expected, data
    assert decoded > FUZZ_INPUTS // 5


def test_host_names_the_address_served_or_a_configured_name() -> None:
    local = ("192.168.1.10", 8080)
    assert host_allowed("192.168.1.10:8080", local)
    assert host_allowed("COLLECTOR.lan", local, ["collector.lan"]), "a name: any port"
    assert host_allowed("collector.lan:8443", local, ["collector.lan:8443"])
    assert not host_allowed("collector.lan:9999", local, ["collector.lan:8443"])
    assert not host_allowed("localhost:8080", local), "localhost only on loopback"
    assert host_allowed("localhost:8080", ("127.0.0.1", 8080))
    assert host_allowed("[::1]:8080", ("::1", 8080, 0, 0)[:2])
    assert host_allowed("192.168.1.10:8080", ("::ffff:192.168.1.10", 8080))
    assert host_allowed("192.168.1.10", ("192.168.1.10", 80)), "no port: 80"
    for bad in ("", "evil.example:8080", "192.168.1.10:80", "192.168.1.10:8080x", "[::1"):
        assert not host_allowed(bad, local), bad
