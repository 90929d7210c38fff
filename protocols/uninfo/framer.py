"""Changkong Uninfo framing, sans-IO (``fangym0335/first src/lischn011.c``).

Layout (words, checks and sources: :mod:`protocols.uninfo.messages`). A
request is one byte ``command << 4 | pump`` (a D block: that byte and a
block ending ``F0``); the pump answers a request with a reply whose shape
the request alone fixes — nothing on the wire says where a reply ends:

==========  ===============================  =======================================
request     reply                            accepted when
==========  ===============================  =======================================
``A`` p     1 byte ``state << 4 | p``        state 0..6, the request's pump nibble
``8`` p     25 words                         amount / volume words hold digits
``B`` p     ``4 + 40·g`` words, g = 1..4     ends F0 with a good check word, digits
``C`` p     73 words                         ends F0, good check, ``[2]`` names p, digits
``D`` block 12 words                         ``[0]`` is ``D`` | p
``9``/``7`` none (``FE``: none)              —
==========  ===============================  =======================================

Assumptions, each from the source or written "unverified" in
docs/protocols/uninfo.md: replies come only after a request, one at a time
(one master, ``:1626-1652`` reads one reply per request); a totals reply is
the shortest ``4 + 40·g`` words that ends ``F0`` with a good check (the FCC
reads ``40·g + 4`` words and checks the last, ``:1278``, ``:1302``; its
serial task reads on while the last word is not F0, ``src/spec.c:29-36``);
whether the loop echoes each request is unverified: with ``echo`` the
request's own bytes are expected, and skipped, before its reply.

Three readers, one per way a line is seen, all on
:class:`protocols.stream.BufferedDecoder` (bounded buffer, counters):

- :class:`ReplyReader` — a poller's line, or a relay's pump side: told the
  request (:meth:`ReplyReader.expect`), it returns its reply.
- :class:`RequestReader` — a relay's controller side: request bytes and D blocks.
- :class:`BusReader` — one line carrying both (``listen``): a request opens
  the window of its reply; the reply's words are taken by count, whatever
  they are (no word value is assumed to be the pump's alone).

Recovery — every case, and what each reader reports:

- *Bytes with no request before them* (noise, a reply to a request garbled
  on the way): ``ReplyReader``: one ``garbage`` error per run, all bytes
  held; ``RequestReader`` / ``BusReader``: a run of bytes that are no request
  is one ``garbage`` error.
- *The echo*: with ``echo``, the request's bytes at the start of its window
  are skipped (counted ``echoes``); a window that starts otherwise is read as
  the reply (counted ``echo_missing``).
- *A status byte that is no state, or names another pump*: ``unexpected``,
  the byte dropped, the window stays open (the FCC retries, ``:1647``).
- *A fixed-length reply that fails its check* (check word, F0, pump, a
  non-digit): its error (``bad_lrc``, ``bad_message``, ``unexpected``) and the
  window closes. ``BusReader`` then reads the window's words again from its
  first, as requests and their replies: a reply the pump never sent took
  the next exchanges into its window, and they are found again (the words
  of a garbled reply are a ``garbage`` run then).
- *A totals reply with no good end* within ``4 + 40·4`` words: ``bad_message``,
  the same recovery.
- *A reply cut short*: ``ReplyReader.flush`` (the response deadline) reports
  the held bytes ``truncated``; ``BusReader`` waits, the next request's bytes
  complete the window, which then fails its check (above).
- *A D block that fails its length or check*: its error, one byte dropped,
  read again from the next.
- *A request while a status is awaited* (the pump did not answer): counted
  ``unanswered`` and read as the next request.

Good replies never depend on how the bytes were split into reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeVar

from protocols.events import ProtocolError
from protocols.stream import BufferedDecoder
from protocols.uninfo.messages import (
    CMD_AUTHORISE,
    CMD_DATA,
    CMD_DISPLAY,
    CMD_SALE,
    CMD_STATUS,
    CMD_STOP,
    CMD_TOTALS,
    DATA_REPLY_LEN,
    DISPLAY_LEN,
    ETX,
    MAX_GRADES,
    SALE_LEN,
    STOP_ALL,
    DataBlock,
    Display,
    GradeTotals,
    SaleRecord,
    block_len,
    check_end,
    is_request,
    nibble_address,
    parse_block,
    parse_data_reply,
    parse_display,
    parse_sale,
    parse_totals,
    pump_nibble,
    status_state,
    totals_len,
)

_Item = TypeVar("_Item")

Kind = Literal["status", "display", "totals", "sale", "data", "none"]

_KINDS: dict[int, Kind] = {
    CMD_STATUS: "status",
    CMD_DISPLAY: "display",
    CMD_TOTALS: "totals",
    CMD_SALE: "sale",
    CMD_DATA: "data",
    CMD_AUTHORISE: "none",
    CMD_STOP: "none",
}
_FIXED = {"display": DISPLAY_LEN, "sale": SALE_LEN, "data": DATA_REPLY_LEN}

#: The longest reply: totals of four grades (164 words).
MAX_REPLY = totals_len(MAX_GRADES)

#: Buffer bound: a whole reply with its echo, twice (see BufferedDecoder).
MAX_BUFFER = 2 * (MAX_REPLY + DATA_REPLY_LEN + 64)

ERRORS = ("bad_lrc", "bad_length", "bad_message", "unexpected", "truncated", "garbage")


@dataclass(frozen=True, slots=True)
class Request:
    """One request: its command nibble, the pump it names (None: ``FE``, every
    pump), its bytes (the byte, or the whole D block)."""

    command: int
    address: int | None
    raw: bytes
    block: DataBlock | None = None

    @property
    def kind(self) -> Kind:
        return _KINDS[self.command]


Value = int | Display | SaleRecord | tuple[GradeTotals, ...]


@dataclass(frozen=True, slots=True)
class Reply:
    """A reply that passed its checks: the request it answers, its words, and
    what they say — the state (status), :class:`Display`, :class:`SaleRecord`,
    the grades' :class:`GradeTotals`, or a D block's result code."""

    request: Request
    words: bytes
    value: Value


def request_of(byte: int) -> Request:
    """The request a single request byte is (not a D block)."""
    if byte == STOP_ALL:
        return Request(CMD_STOP, None, bytes([byte]))
    return Request(byte >> 4, nibble_address(byte & 0x0F), bytes([byte]))


def _error(kind: str, detail: str, request: Request) -> ProtocolError:
    return ProtocolError(kind, detail, request.address)


def match_reply(
    request: Request, buf: bytearray, pos: int
) -> tuple[Reply | ProtocolError | None, int]:
    """The reply to ``request`` standing at ``buf[pos:]``: (reply or error,
    words taken), or (None, 0) when more words are needed."""
    avail = len(buf) - pos
    kind = request.kind
    if avail < 1 or kind == "none":
        return None, 0
    if kind == "status":
        byte = buf[pos]
        state = status_state(byte)
        assert request.address is not None
        if state is None or byte & 0x0F != pump_nibble(request.address):
            return _error("unexpected", f"{byte:02X} is no status of this pump", request), 1
        return Reply(request, bytes([byte]), state), 1
    if kind == "totals":
        for grades in range(1, MAX_GRADES + 1):
            length = totals_len(grades)
            if avail < length:
                return None, 0
            if buf[pos + length - 1] == ETX and check_end(buf[pos : pos + length]) is None:
                return _checked(request, bytes(buf[pos : pos + length])), length
        return _error("bad_message", f"no totals end within {MAX_REPLY} words", request), MAX_REPLY
    length = _FIXED[kind]
    if avail < length:
        return None, 0
    return _checked(request, bytes(buf[pos : pos + length])), length


def _checked(request: Request, words: bytes) -> Reply | ProtocolError:
    value: Value | ProtocolError
    if request.kind == "display":
        value = parse_display(words)
    elif request.kind == "totals":
        value = parse_totals(words)
    elif request.kind == "sale":
        value = parse_sale(words)
        if isinstance(value, SaleRecord) and value.address != request.address:
            detail = f"sale record of pump {value.address}, asked {request.address}"
            return _error("unexpected", detail, request)
    else:
        value = parse_data_reply(words, request.address)
    if isinstance(value, ProtocolError):
        return _error(value.kind, value.detail, request)
    return Reply(request, words, value)


class _Window(BufferedDecoder[_Item]):
    """The window of one request (``_request``) on a line that may hear its
    own requests back (``echo``: the wire's echo of each byte we, or the
    controller, sent, before the reply)."""

    MAX_BUFFER = MAX_BUFFER
    ERROR_KINDS = ERRORS
    ERROR_TYPE = ProtocolError

    def __init__(self, *, echo: bool = False, **counters: int) -> None:
        super().__init__()
        self.echo = echo
        self.counters.update(echoes=0, **counters)
        self._request: Request | None = None
        self._echo_left = b""

    def _open(self, request: Request) -> None:
        """``request`` was sent: its window, after its echo when the line has one."""
        self._request = request
        self._echo_left = request.raw if self.echo else b""

    def _echo_at(self, buf: bytearray, pos: int) -> bool:
        """Whether ``buf[pos]`` is the next byte of the echo (taken); any other
        byte ends the echo."""
        if self._echo_left and buf[pos] == self._echo_left[0]:
            self._echo_left = self._echo_left[1:]
            self.counters["echoes"] += not self._echo_left
            return True
        self._echo_left = b""
        return False


class ReplyReader(_Window[Reply | ProtocolError]):
    """The replies of one request at a time (module doc)."""

    def __init__(self, *, echo: bool = False) -> None:
        super().__init__(echo=echo, echo_missing=0)

    @property
    def waiting(self) -> Request | None:
        """The request whose reply is still awaited (None: none is)."""
        request = self._request
        return None if request is None or request.kind == "none" else request

    def expect(self, request: Request) -> list[Reply | ProtocolError]:
        """Open the window of ``request``'s reply (for a request with none: of its
        echo); bytes still held are given up (returned as ``truncated``) first."""
        out = self.flush()
        self._open(request)
        return out

    def flush(self) -> list[Reply | ProtocolError]:
        """The window is over (deadline, or the next request): held bytes are
        ``truncated``; the window closes."""
        out: list[Reply | ProtocolError] = []
        if self._buffer:
            detail = f"{len(self._buffer)} words of a reply that did not end"
            address = self._request.address if self._request else None
            out.append(ProtocolError("truncated", detail, address))
            self.counters["truncated"] += 1
            self._buffer.clear()
        self._request, self._echo_left = None, b""
        return out

    def _decode_at(self, buf: bytearray, pos: int) -> tuple[Reply | ProtocolError | None, int]:
        request = self._request
        if pos >= len(buf):
            return None, 0
        if request is not None and self._echo_left:
            if self._echo_at(buf, pos):
                return None, 1
            self.counters["echo_missing"] += 1
        if request is None or request.kind == "none":
            detail = f"{len(buf) - pos} bytes with no request before them"
            return ProtocolError("garbage", detail), len(buf) - pos
        item, taken = match_reply(request, buf, pos)
        if isinstance(item, Reply) or (item is not None and request.kind != "status"):
            self._request = None
        return item, taken


class RequestReader(BufferedDecoder[Request | ProtocolError]):
    """A controller's requests on their own wire (a relay's POS side)."""

    MAX_BUFFER = MAX_BUFFER
    ERROR_KINDS = ERRORS
    ERROR_TYPE = ProtocolError

    def _decode_at(self, buf: bytearray, pos: int) -> tuple[Request | ProtocolError | None, int]:
        return lex_request(buf, pos)


def lex_request(buf: bytearray, pos: int) -> tuple[Request | ProtocolError | None, int]:
    """A request at ``buf[pos]``, or the run of bytes that are none."""
    end = pos
    while end < len(buf) and not is_request(buf[end]):
        end += 1
    if end > pos:
        return ProtocolError("garbage", f"{end - pos} bytes that are no request"), end - pos
    if pos >= len(buf):
        return None, 0
    byte = buf[pos]
    if byte >> 4 != CMD_DATA:
        return request_of(byte), 1
    length = block_len(bytes(buf[pos : pos + 4]))
    if length is None:
        if len(buf) - pos < 4:
            return None, 0
        return ProtocolError("bad_message", f"{byte:02X} is followed by no data block"), 1
    if len(buf) - pos < length:
        return None, 0
    block = parse_block(bytes(buf[pos : pos + length]))
    if isinstance(block, ProtocolError):
        return ProtocolError(block.kind, block.detail, nibble_address(byte & 0x0F)), 1
    return Request(CMD_DATA, block.address, block.raw, block), length


BusItem = Request | Reply | ProtocolError


class BusReader(_Window[BusItem]):
    """Requests and replies on one line (``listen``), see the module doc."""

    def __init__(self, *, echo: bool = False) -> None:
        super().__init__(echo=echo, unanswered=0)

    def step(self, buf: bytearray, pos: int) -> tuple[list[BusItem], int]:
        """One step at ``buf[pos]`` without the buffer (also ``forecourt decode``
        and the census): what stands there and the words it took; (``[]``, 0)
        when more are needed. A window that fails is reported and its words
        read again from its first (module doc): then the error comes with
        what stands there, or alone with 0 words taken."""
        request = self._request
        failed: list[BusItem] = []
        if request is not None and pos < len(buf):
            if self._echo_at(buf, pos):
                return [], 1
            if request.kind == "status" and status_state(buf[pos]) is None:
                # Not a status at all: the pump did not answer, a request follows.
                self.counters["unanswered"] += 1
                self._request = None
            else:
                item, taken = match_reply(request, buf, pos)
                if item is None:
                    return [], 0
                if isinstance(item, Reply):
                    self._request = None
                    return [item], taken
                if request.kind == "status":
                    return [item], taken
                self._request = None
                failed.append(item)
        found, length = lex_request(buf, pos)
        if isinstance(found, Request):
            self._open(found)
            if found.kind == "none":
                self._request = None  # its echo is still heard
        return failed + ([] if found is None else [found]), length

    def _drain(self, out: list[BusItem]) -> None:
        # BufferedDecoder's loop, with a step that may report a failed window
        # and what stands at its first word together.
        buf, pos = self._buffer, 0
        while True:
            items, consumed = self.step(buf, pos)
            for item in items:
                out.append(item)
                if not isinstance(item, ProtocolError):
                    self.counters[self.OK_COUNTER] += 1
                elif item.kind == "garbage":
                    self.counters["garbage_bytes"] += consumed
                else:
                    self.counters[item.kind] += 1
            if consumed == 0:
                break
            pos += consumed
        del buf[:pos]
