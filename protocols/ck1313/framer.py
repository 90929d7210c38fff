"""CK1313 frames (宝德尔 Baodeer, 老长空 Changkong non-card), sans-IO.

Source: the FCC of ``fangym0335/first``, ``src/lischn006.c`` (宝德尔) and
``src/lischn010.c`` (老长空: "the same protocol and implementation",
``fangym0335/first src/lischn006.c:13-14``), written to the document
"CK1313微机控制和计量加油机通信接口定义" (``:6``). Citations ``:N`` below
are ``fangym0335/first src/lischn006.c:N``.

Layout (byte positions from 0)::

    F5 | A | payload … | C | X

- ``F5`` starts every frame, both directions (requests ``:1046-1049``,
  replies checked ``:1069``, ``:1354``, ``:1551``).
- ``A`` = ``addr << 4 | k``: the high nibble is the fuelling point, 0x9 +
  the FCC's 1-based ``phyfp`` (``0x90 + 16·phyfp``, ``:116-117``: pump 1 is
  ``A_``, pump 2 ``B_``); the FCC checks only that nibble in replies
  (``:1551``). The low nibble ``k`` is 2 in a bare query (``:1047``), 4
  with two data bytes (price, ``:634``), 5 with three (preset, ``:521``):
  the bytes between ``A`` and ``X`` plus one. That reading comes from
  requests only and replies' ``k`` is never checked by the FCC, so this
  decoder never uses ``k`` (unverified; :func:`encode_frame` writes it so).
- ``C`` is the command code, the byte before ``X`` in every frame:
  requests ``F5 A C X`` (``:1047-1049``); replies with C at ``[12]`` (totals
  C5, ``:1069``), ``[8]`` (sale D9, ``:1354``), ``[4]`` (price B6,
  ``:1793``), ``[2]`` (host control E5, ``:1744``; preset B9/B5, ``:545``).
  The status reply's ``[3]`` is not checked by the FCC (``:1551-1559``);
  by the same pattern it is D5 (inferred, unverified).
- ``X`` = XOR of every byte from ``F5`` through ``C``, ``& 0x7F``
  (``Check_xor_bdr``, ``fangym0335/first src/lrc.c:91-101``; ``:1530``,
  ``:1556``). It never has bit 7 set.

Lengths are fixed per command and direction (the FCC's ``wantLen``):
4-byte queries; replies D5 5 (``:1532``), D9 10 (``:1336``), C5 14
(``:1051``), B6 6 (``:1774``). Two facts make frames self-delimiting
without ``k``: payload bytes are BCD (≤ 0x99), a status byte or the ACK
0x59 (``:1408``), while every command code is ≥ 0xB2; and ``X`` < 0x80.
So a frame ends at the first known command code after ``A`` that is
followed by a byte below 0x80.

Assumptions (documented, not in the source): a status byte is never one of
the ten command codes (its bits are 0x80, 0x20, 0x08, ``:31-33``, ``:173``);
``F5`` appears in no payload (BCD cannot; ``A`` is F5 only for pump 6 with
k = 5, a preset we never send).

Two modes: *self-delimiting* (monitors, ``forecourt decode``, census) and
*expect N* (:attr:`FrameDecoder.expect`, the poll driver and a relay that
saw the request): the reply is the next N bytes from ``F5``, exactly as the
FCC reads it, whatever its ``[N-2]`` holds — so a pump whose status reply
does not carry D5 at ``[3]`` is still read when the request is known.

Recovery — every case, and what is reported:

- *Garbage before / between / after frames* (bytes before an ``F5``):
  skipped, one ``ProtocolError("garbage")`` per run, counted in
  ``garbage_bytes``.
- *A 4-byte frame* (a command at ``[2]`` and its ``X`` at ``[3]``) is taken
  first in both modes: a query, or our own request heard back.
- *Bad check*: the command byte is followed by a byte below 0x80 that is
  not the XOR (self-delimiting), or the N-th byte is not (expect N):
  ``bad_lrc``; dropped up to the next ``F5`` after the start, or through
  the frame's end if there is none.
- *Cut short by a new frame* (an ``F5`` after ``A`` before the end):
  ``truncated``; the bytes before that ``F5`` are dropped.
- *No end within* :data:`MAX_FRAME_LEN` *bytes* (self-delimiting: no
  command code followed by a check byte; a corrupted command or check):
  ``bad_message``; dropped up to the next ``F5`` after the start.
- *Incomplete at the end of the input*: buffered until more bytes come, or
  until :meth:`FrameDecoder.flush` (the driver's response deadline) reports
  it ``truncated``.

Good frames never depend on how bytes were split into reads.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocols.events import ProtocolError
from protocols.stream import BufferedDecoder

#: The first byte of every frame (module doc).
SYNC = 0xF5

#: ``X`` keeps 7 bits (``fangym0335/first src/lrc.c:101``).
CHECK_MASK = 0x7F

#: Shortest frame: ``F5 A C X`` (a query).
MIN_FRAME_LEN = 4

#: Longest frame: the totals reply, 14 bytes (``:1051``).
MAX_FRAME_LEN = 14

#: Every command code in the source (module doc; ``messages`` names them).
COMMAND_CODES = frozenset({0xD5, 0xD9, 0xC5, 0xB6, 0xE5, 0xC3, 0xCA, 0xB2, 0xB9, 0xB5})

#: Wire nibble of pump 1 (``0x90 + 16·phyfp``, ``:116-117``) minus one.
ADDRESS_BASE = 0x9

#: Pumps a nibble can name: 1 → A … 6 → F. The source's comment names A and B
#: (``:115``); 3–6 follow from its formula (unverified).
MIN_PUMP, MAX_PUMP = 1, 6

#: Held bytes at most: more than two longest frames, so a frame is always
#: complete before the buffer is full.
MAX_BUFFER = 4 * MAX_FRAME_LEN


def checksum(data: bytes | bytearray) -> int:
    """XOR of ``data``, bit 7 cleared (``Check_xor_bdr``)."""
    x = 0
    for byte in data:
        x ^= byte
    return x & CHECK_MASK


def unit_of(address: int) -> int:
    """Pump ``address`` (1..6) → its wire nibble (A..F)."""
    if not MIN_PUMP <= address <= MAX_PUMP:
        raise ValueError(f"CK1313 pump addresses are {MIN_PUMP}..{MAX_PUMP}, not {address}")
    return ADDRESS_BASE + address


def pump_of(unit: int) -> int | None:
    """Wire nibble → pump address, or None for a nibble no pump has (0..9)."""
    address = unit - ADDRESS_BASE
    return address if MIN_PUMP <= address <= MAX_PUMP else None


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame: the address nibble, ``k``, the payload between ``A`` and ``C``, ``C``."""

    unit: int
    count: int
    payload: bytes
    command: int
    raw: bytes = b""

    @property
    def address(self) -> int | None:
        return pump_of(self.unit)


def encode_frame(address: int, payload: bytes, command: int) -> bytes:
    """``F5 | addr<<4 | k | payload | C | X`` with ``k = len(payload) + 2`` (module doc)."""
    if command not in COMMAND_CODES:
        raise ValueError(f"{command:02X} is not a CK1313 command code")
    head = bytes([SYNC, unit_of(address) << 4 | (len(payload) + 2), *payload, command])
    return head + bytes([checksum(head)])


Buffer = bytes | bytearray
Result = Frame | ProtocolError


def _frame(buf: Buffer, start: int, length: int) -> Frame:
    raw = bytes(buf[start : start + length])
    return Frame(raw[1] >> 4, raw[1] & 0x0F, raw[2:-2], raw[-2], raw)


def _drop(kind: str, detail: str, buf: Buffer, start: int, end: int) -> tuple[ProtocolError, int]:
    """The error and the bytes it drops: up to the next ``F5`` after the start, else to ``end``."""
    nxt = buf.find(SYNC, start + 1, end)
    return ProtocolError(kind, detail), (nxt if nxt >= 0 else end) - start


def decode_at(buf: Buffer, start: int, expect: int | None = None) -> tuple[Result | None, int]:
    """The frame, error or garbage run at ``buf[start:]`` and the bytes it takes.

    ``(None, 0)``: more bytes are needed. ``expect``: the length of the reply
    awaited (module doc: modes).
    """
    n = len(buf)
    if start >= n:
        return None, 0
    if buf[start] != SYNC:
        nxt = buf.find(SYNC, start)
        skip = (nxt if nxt >= 0 else n) - start
        return ProtocolError("garbage", f"{skip} bytes skipped"), skip
    if n - start < MIN_FRAME_LEN:
        return None, 0
    acc = SYNC ^ buf[start + 1]
    third = buf[start + 2]
    if third in COMMAND_CODES and buf[start + 3] == (acc ^ third) & CHECK_MASK:
        return _frame(buf, start, MIN_FRAME_LEN), MIN_FRAME_LEN
    if expect is not None and expect > MIN_FRAME_LEN:
        return _expected(buf, start, expect)
    limit = min(n - 1, start + MAX_FRAME_LEN - 1)
    for j in range(start + 2, limit):
        byte = buf[j]
        if byte == SYNC:
            return ProtocolError("truncated", f"frame cut by F5 after {j - start} bytes"), j - start
        acc ^= byte
        if byte in COMMAND_CODES and buf[j + 1] <= CHECK_MASK:
            length = j + 2 - start
            if buf[j + 1] != acc & CHECK_MASK:
                detail = f"check {buf[j + 1]:02X}, computed {acc & CHECK_MASK:02X}"
                return _drop("bad_lrc", detail, buf, start, start + length)
            return _frame(buf, start, length), length
    if n - start < MAX_FRAME_LEN:
        return None, 0
    detail = f"no command code and check within {MAX_FRAME_LEN} bytes"
    return _drop("bad_message", detail, buf, start, start + MAX_FRAME_LEN)


def _expected(buf: Buffer, start: int, length: int) -> tuple[Result | None, int]:
    n = len(buf)
    cut = buf.find(SYNC, start + 2, min(n, start + length))
    if cut >= 0:
        return ProtocolError("truncated", f"frame cut by F5 after {cut - start} bytes"), cut - start
    if n - start < length:
        return None, 0
    want = checksum(buf[start : start + length - 1])
    got = buf[start + length - 1]
    if got != want:
        return ProtocolError("bad_lrc", f"check {got:02X}, computed {want:02X}"), length
    return _frame(buf, start, length), length


def decode(buffer: Buffer, expect: int | None = None) -> tuple[Result | None, int]:
    """:func:`decode_at` at the start of ``buffer``."""
    return decode_at(buffer, 0, expect)


class FrameDecoder(BufferedDecoder[Result]):
    """Buffers a partial frame across reads; see the module doc for recovery.

    :attr:`expect`: the length of the awaited reply (None: self-delimiting).
    Cleared once a frame of that length, or a spoilt one, is decoded; a
    4-byte frame before it (our request heard back) leaves it set.
    """

    MAX_BUFFER = MAX_BUFFER
    ERROR_KINDS = ("bad_lrc", "bad_message", "truncated")
    ERROR_TYPE = ProtocolError

    def __init__(self) -> None:
        super().__init__()
        self.expect: int | None = None

    def _decode_at(self, buf: bytearray, pos: int) -> tuple[Result | None, int]:
        item, consumed = decode_at(buf, pos, self.expect)
        if (isinstance(item, Frame) and len(item.raw) == self.expect) or (
            isinstance(item, ProtocolError) and item.kind in ("bad_lrc", "truncated")
        ):
            self.expect = None  # the awaited reply came (or was spoilt): back to self-delimiting
        return item, consumed

    def flush(self) -> list[Result]:
        """No more bytes are coming now: an incomplete frame is ``truncated``
        (no resync: the whole buffer), no reply is awaited. Empty afterwards."""
        self.expect = None
        return super().flush()
