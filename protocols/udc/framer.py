"""UDC framing: a request by its command, a reply by the request it answers.

Layout (protocols/udc/messages.py): every byte is followed by its complement
(double talk, ``fangym0335/first src/lischn019.c:2380-2397``), nothing else
checks a frame. A request is ``P|p ~ CMD ~`` and, for a few commands, data
pairs whose count the command fixes; the reply is ``reply_data_len`` pairs
with no header (the FCC's fixed ``wantLen``, e.g. 019:1696, 1749, 1364).

Assumptions:

- A request starts with a header pair whose byte is ``C0``–``CF`` or
  ``F0``–``FF`` followed by the pair of a command we know (PREFIXES ×
  the command table). A command we do not know cannot be framed (its data
  length is unknown): its bytes are garbage up to the next known request.
- Replies carry no address and no command: only their position (right after
  a request) tells what they answer. Digit fields are BCD (each byte
  ``00``–``99``), so a multi-byte reply never begins like a header; a
  one-byte reply (a state, ``B0``, a nozzle) may: ``F0`` is both "fuelling,
  large valve" and pump 0's header. The next pair decides: after a header
  pair comes a command pair (``A0``–``AF``), after a reply the next
  request's header (``C0``–``FF``).

Recovery, one error per case (the kinds feed the collector's counters):

- bytes that start no request (noise, a reply with no request before it,
  an unknown command): ``garbage``, one per run, skipped to the next byte
  that starts a known request;
- a request or reply whose complement is wrong somewhere: ``bad_pair``;
  the hunt for the next request starts one byte on (a byte lost on the
  line shifts every pair after it);
- relay, POS side and pump side read apart (:class:`ReplyDecoder`): a new
  request cuts a reply still incomplete (``truncated``); bytes on the pump
  side while no request waits are ``garbage``;
- one line for both directions (:class:`BusDecoder`): a reply is taken
  only once the next request begins right after its last pair, so a reply
  that lost or gained bytes (the next request's header would fall inside
  it) is ``bad_length``, and the hunt resumes at the next request; a pump
  that does not answer shows as a request right after a request (no error:
  the monitor counts the miss). A reply therefore waits for the next
  request; :meth:`BusDecoder.end_of_capture` takes the last one at the
  end of a capture.

A request whose start is cut by the end of the bytes waits for more (the
decoder keeps at most :data:`MAX_BUFFER` bytes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from protocols.events import ProtocolError
from protocols.stream import BufferedDecoder
from protocols.udc.messages import (
    NAMES,
    PREFIXES,
    PRICE_NOZZLES,
    Command,
    reply_data_len,
    request_data_len,
    single,
)

#: A request's head: the header pair and the command pair.
HEAD = 4


@dataclass(frozen=True, slots=True)
class Request:
    """A request without its complements: command, wire pump number, data."""

    prefix: int
    pump: int
    code: int
    data: bytes = b""

    @property
    def command(self) -> Command:
        return (self.prefix, self.code)

    @property
    def address(self) -> int:
        """The fuelling point's configured number: wire pump + 1 (019:152)."""
        return self.pump + 1

    @property
    def name(self) -> str:
        return NAMES[self.command]


@dataclass(frozen=True, slots=True)
class Reply:
    """A reply without its complements, with the request it answers."""

    request: Request
    data: bytes


Item = Request | Reply | ProtocolError


def _header(b: int) -> bool:
    return b & 0xF0 in PREFIXES


def start_at(buf: bytes | bytearray, q: int, nozzles: int = PRICE_NOZZLES) -> int:
    """1: a known request starts at ``q``; 0: it cannot; -1: too few bytes to tell."""
    n = len(buf) - q
    if n <= 0:
        return -1
    if not _header(buf[q]):
        return 0
    if n < 2:
        return -1
    if buf[q] ^ buf[q + 1] != 0xFF:
        return 0
    if n < 3:
        return -1
    if request_data_len((buf[q] & 0xF0, buf[q + 2]), nozzles) is None:
        return 0
    if n < HEAD:
        return -1
    return 1 if buf[q + 2] ^ buf[q + 3] == 0xFF else 0


def hunt(buf: bytes | bytearray, start: int, nozzles: int = PRICE_NOZZLES) -> int:
    """The first position ≥ ``start`` where a request may start (or ``len(buf)``)."""
    for q in range(start, len(buf)):
        if start_at(buf, q, nozzles) != 0:
            return q
    return len(buf)


def request_at(
    buf: bytes | bytearray, pos: int, nozzles: int = PRICE_NOZZLES
) -> tuple[Request | ProtocolError | None, int]:
    """What starts at ``pos``: a request, an error over n bytes, or (None, 0)
    when more bytes are needed."""
    found = start_at(buf, pos, nozzles)
    if found < 0:
        return None, 0
    if found == 0:
        nxt = hunt(buf, pos + 1, nozzles)
        return ProtocolError("garbage", f"{nxt - pos} bytes start no known request"), nxt - pos
    prefix, code = buf[pos] & 0xF0, buf[pos + 2]
    length = HEAD + 2 * (request_data_len((prefix, code), nozzles) or 0)
    if len(buf) - pos < length:
        return None, 0
    data = single(bytes(buf[pos + HEAD : pos + length]))
    if data is None:
        nxt = hunt(buf, pos + 1, nozzles)
        detail = f"a complement is wrong in the data of {NAMES[(prefix, code)]}"
        return ProtocolError("bad_pair", detail, (buf[pos] & 0x0F) + 1), nxt - pos
    return Request(prefix, buf[pos] & 0x0F, code, data), length


class RequestDecoder(BufferedDecoder[Request | ProtocolError]):
    """The POS side of a relay: requests only."""

    #: The longest request is C·A3 with MAX_PRICE_NOZZLES (4 + 2·32 bytes).
    MAX_BUFFER: ClassVar[int] = 512
    ERROR_KINDS: ClassVar[tuple[str, ...]] = ("garbage", "bad_pair")
    ERROR_TYPE: ClassVar[type] = ProtocolError

    def __init__(self, nozzles: int = PRICE_NOZZLES) -> None:
        super().__init__()
        self.nozzles = nozzles

    def _decode_at(self, buf: bytearray, pos: int) -> tuple[Request | ProtocolError | None, int]:
        return request_at(buf, pos, self.nozzles)


def reply_of(raw: bytes, request: Request) -> Reply | ProtocolError:
    data = single(raw)
    if data is None:
        detail = f"a complement is wrong in the reply to {request.name}"
        return ProtocolError("bad_pair", detail, request.address)
    return Reply(request, data)


class ReplyDecoder:
    """The pump side of a relay: each reply is the next ``reply_data_len``
    pairs after the request the POS side saw last (:meth:`expect`)."""

    def __init__(self, nozzles: int = PRICE_NOZZLES) -> None:
        self.nozzles = nozzles
        self._pending: Request | None = None
        self._want = 0
        self._buffer = bytearray()
        self.counters: dict[str, int] = dict.fromkeys(
            ("frames", "garbage_bytes", "bad_pair", "truncated"), 0
        )

    def expect(self, request: Request) -> list[ProtocolError]:
        """``request`` went to the pump: what arrives next answers it."""
        out = []
        if self._buffer:
            self.counters["truncated"] += 1
            detail = f"{len(self._buffer)} bytes of a reply cut by the next request"
            out.append(ProtocolError("truncated", detail))
            self._buffer.clear()
        self._pending = request
        self._want = 2 * reply_data_len(request.command, self.nozzles)
        return out

    def receive_data(self, data: bytes) -> list[Reply | ProtocolError]:
        out: list[Reply | ProtocolError] = []
        if self._pending is None:
            if data:
                self.counters["garbage_bytes"] += len(data)
                out.append(ProtocolError("garbage", f"{len(data)} bytes with no request"))
            return out
        self._buffer += data
        if len(self._buffer) < self._want:
            return out
        raw, rest = bytes(self._buffer[: self._want]), bytes(self._buffer[self._want :])
        self._buffer.clear()
        item = reply_of(raw, self._pending)
        self._pending = None
        if isinstance(item, Reply):
            self.counters["frames"] += 1
        else:
            self.counters["bad_pair"] += 1
        out.append(item)
        if rest:
            self.counters["garbage_bytes"] += len(rest)
            out.append(ProtocolError("garbage", f"{len(rest)} bytes after a complete reply"))
        return out


class BusDecoder(BufferedDecoder[Item]):
    """One line carrying both directions (a tap): requests and the replies
    after them, in line order. See the module doc for the silent pump and
    the one-byte reply that looks like a header."""

    MAX_BUFFER: ClassVar[int] = 512
    ERROR_KINDS: ClassVar[tuple[str, ...]] = ("garbage", "bad_pair", "bad_length", "truncated")
    ERROR_TYPE: ClassVar[type] = ProtocolError

    def __init__(self, nozzles: int = PRICE_NOZZLES) -> None:
        super().__init__()
        self.nozzles = nozzles
        self.pending: Request | None = None

    def _decode_at(self, buf: bytearray, pos: int) -> tuple[Item | None, int]:
        request = self.pending
        if request is None:
            found, n = request_at(buf, pos, self.nozzles)
            if isinstance(found, Request):
                self.pending = found
            return found, n
        want = 2 * reply_data_len(request.command, self.nozzles)
        starts = start_at(buf, pos, self.nozzles)
        if starts == 1:  # a header pair and a command pair: the pump was silent
            self.pending = None
            return self._decode_at(buf, pos)
        if starts < 0 or len(buf) - pos < want:
            return None, 0
        follows = start_at(buf, pos + want, self.nozzles)
        if follows < 0:
            return None, 0  # the next request tells where this reply ends
        self.pending = None
        if follows == 0:
            detail = f"no request follows the {want} bytes of a reply to {request.name}"
            return ProtocolError("bad_length", detail, request.address), hunt(
                buf, pos + 1, self.nozzles
            ) - pos
        item = reply_of(bytes(buf[pos : pos + want]), request)
        if isinstance(item, Reply):
            return item, want
        return item, hunt(buf, pos + 1, self.nozzles) - pos

    def end_of_capture(self, tail: bytes) -> list[Item]:
        """``tail``, the bytes left at the end of a capture: a reply whose next
        request never came is taken as it stands; the rest is ``truncated``."""
        out: list[Item] = []
        request, self.pending = self.pending, None
        if request is not None and tail and start_at(tail, 0, self.nozzles) != 1:
            want = 2 * reply_data_len(request.command, self.nozzles)
            if len(tail) >= want:
                out.append(reply_of(tail[:want], request))
                tail = tail[want:]
        if tail:
            out.append(ProtocolError("truncated", f"{len(tail)} bytes cut by the end"))
        return out
