"""Wayne DART link-level framing (protocols.md §3), sans-IO.

Frame layouts (protocols.md §3, "Frame")::

    short: ADR | CTRL | SF                                    POLL, ACK, NAK (and EOT)
    long:  ADR | CTRL | (TRANS LNG DATA…)… | CRC-L CRC-H | ETX | SF     DATA (and EOT)

- ``ADR`` 0x50–0x6F, one per fuelling point (pump number n ↔ ADR 0x4F + n).
- ``CTRL``: POLL ``20``; DATA ``30|seq``; ACK ``C0|seq``; NAK ``50|seq``;
  EOT ``70|seq``; ``seq`` is the low nibble (protocols.md §3, "CTRL").
- A DATA frame holds one or more transactions ``TRANS | LNG | LNG bytes``.
- CRC-16/ARC (:func:`protocols.crc.crc16_arc`) over ``ADR`` … last data byte,
  sent LSB first; ``ETX`` = 0x03, ``SF`` (stop flag) = 0xFA (protocols.md §3).
- Escape: DLE (0x10) is inserted before every 0xFA from ``ADR`` to ``CRC-H``,
  CRC bytes included (protocols.md §3). DLE itself is not escaped: a 0x10
  that is not followed by 0xFA is a data byte (BCD ``10`` is common).
- EOT: protocols.md gives the poll's form only. :func:`encode_frame` sends
  EOT short, like POLL / ACK / NAK; the decoder also accepts a long EOT
  (``ADR 7x CRC-L CRC-H ETX SF``, the CRC over ``ADR CTRL``).

Decoding rests on three facts of the layout:

- A frame ends at its first *unescaped* SF (an FA not preceded by DLE): in a
  good frame the byte before the SF is ETX (long) or CTRL (short), never DLE.
- There is no start flag. A *candidate start* is an ADR byte followed by a
  valid CTRL byte; on a clean line it directly follows the previous SF.
- ADR and CTRL are never DLE or FA, so where an escape pair begins does not
  depend on where parsing began: every candidate start inside a frame ends at
  that frame's SF.

Recovery — every case the decoder handles, and what it reports
(the kinds are also ``describe``'s error tokens):

- *Garbage before a frame*: bytes at the head that do not begin a candidate,
  up to the next *plausible* start — a candidate that is a good frame, one
  still incomplete, or a complete long frame with a bad CRC or bad message —
  are skipped as ONE ``ProtocolError("garbage", "N bytes skipped")`` per run,
  N counted in ``garbage_bytes``. Candidates that are not plausible (a DATA
  CTRL right before an SF, a run cut by an FA before any ETX) are garbage too.
- *Garbage between / after frames*: the same rule. Trailing garbage is
  reported as soon as it arrives, except a final ADR-range byte, kept because
  it may start the next frame.
- *Garbage inside a frame*: the CRC no longer matches (bad CRC case), or an FA
  in the garbage ends the frame early (escape case).
- *Bad CRC*: ``ProtocolError("bad_crc")``, then the *hunt*: the next start is
  searched from the byte after the bad frame's ADR, not after its SF, because
  a frame whose own SF was hit has swallowed the frame behind it. Candidates
  inside the bad frame end at its SF (third fact), so only a good frame hidden
  in it stops the hunt; otherwise the bad frame is dropped through its SF.
- *DLE escape errors*: (a) an FA inside the frame without its DLE (the DLE
  lost or hit, or a byte hit into FA) ends the frame early, with no ETX
  before that SF: ``ProtocolError("bad_escape")``, the same hunt, the rest of
  the frame is then garbage. (b) A DLE in front of the real SF (a byte hit
  into DLE) turns the SF into data: the frame runs on into what follows and
  ends at a later SF (bad CRC or bad escape, the hunt finds the frame
  behind), or is truncated (next case).
- *Truncated*: ``ProtocolError("truncated")`` for a DATA CTRL followed at
  once by SF, a long frame too short for CRC and ETX, or a candidate with no
  SF within :data:`MAX_WIRE_FRAME` bytes (reported as soon as that many bytes
  are in, then the hunt). A frame cut short with nothing behind it stays
  buffered until more bytes arrive or until :meth:`FrameDecoder.flush` (the
  driver calls it when a response deadline passes), which reports it
  truncated and decodes whatever complete frames it hid.
- *Bad message*: ``ProtocolError("bad_message")`` for a frame whose CRC is
  good but whose body is not a transaction list (TRANS / LNG do not tile it,
  or a DATA frame with none), or a long POLL / ACK / NAK, or an EOT with data.
  The frame is dropped through its SF.

Good frames never depend on how the bytes were split into reads; error
reports can (a candidate incomplete at the end of one read and disproved by
the next is reported by its own kind instead of as garbage).

Style: h11 / pymodbus. :func:`decode` is pure (buffer in, one result and the
number of bytes consumed out); :class:`FrameDecoder` adds the buffer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache, lru_cache
from typing import Literal

from construct import GreedyBytes, Int8ub, Int16ul, Prefixed, Struct

from protocols.crc import crc16_arc
from protocols.events import ProtocolError
from protocols.stream import BufferedDecoder

#: Fuelling point addresses (protocols.md §3: "ADR 0x50–0x6F (32 fuelling points)").
ADR_MIN, ADR_MAX = 0x50, 0x6F

#: CTRL values (protocols.md §3, "CTRL"); the low nibble of all but POLL is seq.
CTRL_POLL = 0x20
CTRL_DATA = 0x30
CTRL_ACK = 0xC0
CTRL_NAK = 0x50
CTRL_EOT = 0x70
SEQ_MASK = 0x0F

#: End of text, stop flag and the escape byte (protocols.md §3).
ETX = 0x03
SF = 0xFA
DLE = 0x10
_SF = b"\xfa"
_ESCAPED_SF = b"\x10\xfa"

#: CRC-L, CRC-H (LSB first, protocols.md §3) and ETX: what follows the body.
TRAILER_LEN = 3

#: Largest body (all transactions, TRANS and LNG included) accepted. The
#: largest replies we solicit are a final answer (DC1 3 + DC2 10 + DC3 6 +
#: DC101 18 = 37 bytes) and a status answer (DC1, DC3, DC9 and 3 bytes per
#: DC5: 31 bytes with 5 alarms); 256 leaves room for pumps that add more,
#: while a run without SF is given up after ~0.5 kB instead of swallowing
#: good frames while we wait.
MAX_BODY = 256

#: LNG is one byte (protocols.md §3).
MAX_LNG = 0xFF

#: Longest frame on the wire: ADR CTRL, body and CRC all escaped, ETX SF.
MAX_WIRE_FRAME = 2 + 2 * (MAX_BODY + 2) + 2

#: Bound of :class:`FrameDecoder`'s buffer. After each drain it holds at most
#: one incomplete frame (< MAX_WIRE_FRAME); the same again of new input per
#: step guarantees progress while keeping memory per line fixed.
MAX_BUFFER = 2 * MAX_WIRE_FRAME

Kind = Literal["poll", "data", "ack", "nak", "eot"]
_KINDS: dict[int, Kind] = {CTRL_DATA: "data", CTRL_ACK: "ack", CTRL_NAK: "nak", CTRL_EOT: "eot"}

#: A candidate start: an ADR byte followed by a valid CTRL (POLL, DATA, NAK, EOT, ACK).
_CANDIDATE = re.compile(rb"[\x50-\x6f](?=[\x20\x30-\x3f\x50-\x5f\x70-\x7f\xc0-\xcf])")

#: Construct declarations of the frame pieces (building; see _split for parsing).
LINK_HEADER = Struct("adr" / Int8ub, "ctrl" / Int8ub).compile()
TRANSACTION = Struct("trans" / Int8ub, "data" / Prefixed(Int8ub, GreedyBytes)).compile()
CRC = Int16ul  # LSB first (protocols.md §3)

#: Encoded frames remembered by :func:`encode_frame`. A master sends the same
#: few requests over and over (and a pump the same few answers); construct
#: costs ~5–8 µs per piece, so a DATA frame would cost ~30 µs every time.
ENCODE_CACHE = 1024

Transaction = tuple[int, bytes]


def ctrl_kind(ctrl: int) -> Kind | None:
    """What a CTRL byte announces, or None when it is no DART CTRL."""
    if ctrl == CTRL_POLL:
        return "poll"
    return _KINDS.get(ctrl & 0xF0)


@dataclass(frozen=True)
class Frame:
    """One frame without its framing; ``transactions`` only in DATA frames.

    ``transactions`` may be given as any iterable of ``(trans, data)`` pairs
    and is kept as a tuple of ``(int, bytes)``.
    """

    adr: int
    ctrl: int
    transactions: tuple[Transaction, ...] = ()
    kind: Kind = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        items = self.transactions
        if type(items) is not tuple or any(type(i) is not tuple for i in items):
            items = tuple((int(t), bytes(d)) for t, d in items)
            object.__setattr__(self, "transactions", items)
        if not ADR_MIN <= self.adr <= ADR_MAX:
            raise ValueError(f"ADR {self.adr:#x} is not 0x50..0x6F")
        kind = ctrl_kind(self.ctrl) if 0 <= self.ctrl <= 0xFF else None
        if kind is None:
            raise ValueError(f"CTRL {self.ctrl:#x} is no DART CTRL")
        object.__setattr__(self, "kind", kind)
        if (kind == "data") != bool(items):
            raise ValueError("a DATA frame, and only a DATA frame, carries transactions")
        size = 0
        for trans, data in items:
            if not 0 <= trans <= 0xFF or type(data) is not bytes or len(data) > MAX_LNG:
                raise ValueError(f"transaction {trans} with data {data!r}")
            size += 2 + len(data)
        if size > MAX_BODY:
            raise ValueError(f"body above {MAX_BODY} bytes")

    @property
    def seq(self) -> int:
        """The sequence nibble (0 for a POLL, which has none)."""
        return 0 if self.ctrl == CTRL_POLL else self.ctrl & SEQ_MASK

    @staticmethod
    def poll(adr: int) -> Frame:
        return _link_frame(adr, CTRL_POLL)

    @staticmethod
    def ack(adr: int, seq: int) -> Frame:
        return _link_frame(adr, CTRL_ACK | (seq & SEQ_MASK))

    @staticmethod
    def nak(adr: int, seq: int) -> Frame:
        return _link_frame(adr, CTRL_NAK | (seq & SEQ_MASK))

    @staticmethod
    def eot(adr: int, seq: int) -> Frame:
        return _link_frame(adr, CTRL_EOT | (seq & SEQ_MASK))

    @staticmethod
    def data(adr: int, seq: int, transactions: Iterable[Transaction]) -> Frame:
        return Frame(adr, CTRL_DATA | (seq & SEQ_MASK), tuple(transactions))


@cache  # bounded: valid frames only, 32 ADR × 65 link CTRL values
def _link_frame(adr: int, ctrl: int) -> Frame:
    return Frame(adr, ctrl)


def transaction_bytes(trans: int, data: bytes) -> bytes:
    """One transaction as it sits in a frame body (before escaping)."""
    return TRANSACTION.build({"trans": trans, "data": data})


@lru_cache(maxsize=ENCODE_CACHE)
def encode_frame(frame: Frame) -> bytes:
    """The frame as sent on the wire (short for all but DATA, see the module doc)."""
    header = LINK_HEADER.build({"adr": frame.adr, "ctrl": frame.ctrl})
    if frame.kind != "data":
        return header + _SF
    body = b"".join(transaction_bytes(t, d) for t, d in frame.transactions)
    covered = body + CRC.build(crc16_arc(header + body))
    return header + covered.replace(_SF, _ESCAPED_SF) + bytes((ETX, SF))


Buffer = bytes | bytearray
Result = Frame | ProtocolError

#: Error kinds that still mark a plausible frame start (a complete long frame).
_PLAUSIBLE_ERRORS = frozenset({"bad_crc", "bad_message"})


def _split(body: bytes) -> tuple[Transaction, ...] | None:
    """The body as ``(TRANS, data)`` pairs; None unless TRANS / LNG tile it exactly.

    A plain loop rather than ``GreedyRange(TRANSACTION)``: construct needs
    ~85 µs per body against ~1 µs here, and the hunt runs it on candidates.
    """
    out, i, n = [], 0, len(body)
    while i < n:
        end = i + 2 + body[i + 1] if i + 1 < n else n + 1
        if end > n:
            return None
        out.append((body[i], body[i + 2 : end]))
        i = end
    return tuple(out)


def _parse_at(buf: Buffer, start: int) -> tuple[Result | None, int]:
    """Parse the candidate at ``start`` (ADR and CTRL valid).

    Returns ``(Frame, stop)`` or ``(ProtocolError, stop)`` with ``stop`` the
    index after the SF (-1 when no SF came within :data:`MAX_WIRE_FRAME`), or
    ``(None, 0)`` while the frame is incomplete.
    """
    limit = start + MAX_WIRE_FRAME
    j = buf.find(_SF, start + 2, limit)
    while j >= 0 and buf[j - 1] == DLE:
        j = buf.find(_SF, j + 1, limit)
    if j < 0:
        if len(buf) >= limit:
            return ProtocolError("truncated", f"no stop flag within {MAX_WIRE_FRAME} bytes"), -1
        return None, 0
    stop = j + 1
    adr, ctrl = buf[start], buf[start + 1]
    kind = ctrl_kind(ctrl)
    if j == start + 2:
        if kind == "data":
            return ProtocolError("truncated", "DATA frame ends right after its CTRL"), stop
        return Frame(adr, ctrl), stop
    raw = bytes(buf[start + 2 : j]).replace(_ESCAPED_SF, _SF)
    if raw[-1] != ETX:
        detail = f"an FA {len(raw)} bytes into the frame without its DLE (no ETX before it)"
        return ProtocolError("bad_escape", detail), stop
    if len(raw) < TRAILER_LEN:
        return ProtocolError("truncated", f"long frame of {len(raw)} bytes has no CRC"), stop
    body = raw[:-TRAILER_LEN]
    got, want = CRC.parse(raw[-TRAILER_LEN:-1]), crc16_arc(bytes((adr, ctrl)) + body)
    if got != want:
        return ProtocolError("bad_crc", f"CRC {got:04X}, computed {want:04X}"), stop
    if kind != "data":
        if kind == "eot" and not body:
            return Frame(adr, ctrl), stop
        return ProtocolError("bad_message", f"{kind} frame with {len(body)} body bytes"), stop
    items = _split(body) if len(body) <= MAX_BODY else None
    if not items:
        detail = f"body {body.hex(' ').upper()} is not a list of TRANS LNG DATA"
        return ProtocolError("bad_message", detail), stop
    return Frame(adr, ctrl, items), stop


def _candidate(buf: Buffer, pos: int) -> int:
    """Index of the first candidate start at or after ``pos``, or -1."""
    match = _CANDIDATE.search(buf, pos)
    return match.start() if match else -1


def next_start(buf: Buffer, pos: int) -> int:
    """The first plausible frame start at or after ``pos`` (see the module doc), or -1."""
    p = _candidate(buf, pos)
    while p >= 0:
        result, _ = _parse_at(buf, p)
        if result is None or isinstance(result, Frame) or result.kind in _PLAUSIBLE_ERRORS:
            return p
        p = _candidate(buf, p + 1)
    return -1


def _skippable(buf: Buffer, start: int) -> int:
    """Bytes from ``start`` holding no frame start, keeping a final ADR-range byte."""
    end = len(buf)
    return end - start - (1 if end > start and ADR_MIN <= buf[end - 1] <= ADR_MAX else 0)


def _hunt(buf: Buffer, start: int, stop: int) -> int:
    """Bytes to consume after a bad frame at ``start`` ending at ``stop`` (-1: no end)."""
    if stop < 0:
        nxt = next_start(buf, start + 1)
        return max((nxt if nxt >= 0 else start + _skippable(buf, start)) - start, 1)
    p = _candidate(buf, start + 1)
    while 0 <= p < stop:
        if isinstance(_parse_at(buf, p)[0], Frame):
            return p - start
        p = _candidate(buf, p + 1)
    return stop - start


def decode_at(buf: Buffer, start: int) -> tuple[Result | None, int]:
    """:func:`decode` of ``buf[start:]`` without copying it."""
    n = len(buf)
    if start >= n:
        return None, 0
    if _CANDIDATE.match(buf, start) is None:
        if start + 1 == n and ADR_MIN <= buf[start] <= ADR_MAX:
            return None, 0  # the CTRL decides
        nxt = next_start(buf, start + 1)
        skip = (nxt if nxt >= 0 else start + _skippable(buf, start)) - start
        if skip <= 0:
            return None, 0
        return ProtocolError("garbage", f"{skip} bytes skipped"), skip
    result, stop = _parse_at(buf, start)
    if result is None:
        return None, 0
    if isinstance(result, Frame):
        return result, stop - start
    return result, _hunt(buf, start, stop)


def decode(buffer: Buffer) -> tuple[Result | None, int]:
    """Decode the first thing in ``buffer``; say how many bytes it took.

    Returns ``(Frame, n)``, ``(ProtocolError, n)`` (bytes to drop, see the
    module doc for every case) or ``(None, 0)`` when more bytes are needed.
    """
    return decode_at(buffer, 0)


class FrameDecoder(BufferedDecoder[Result]):
    """Buffers partial frames across reads; see the module doc for recovery."""

    MAX_BUFFER = MAX_BUFFER
    ERROR_KINDS = ("bad_crc", "bad_escape", "bad_message", "truncated")
    ERROR_TYPE = ProtocolError

    def _decode_at(self, buf: bytearray, pos: int) -> tuple[Result | None, int]:
        return decode_at(buf, pos)

    def _next_start(self, buf: bytearray, pos: int) -> int:
        return next_start(buf, pos)
