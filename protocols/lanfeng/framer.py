"""Lanfeng (温州蓝峰 Wenzhou Lanfeng) frames, sans-IO.

Source: the FCC of ``fangym0335/first``, ``src/lischn017.c``; citations
``:N`` below are ``fangym0335/first src/lischn017.c:N``.

Layout: every frame is 12 bytes, both directions (``cmdlen = 12``,
``wantLen = 12`` in every exchange, e.g. ``:1391-1404``)::

    [0] address | [1] | [2] | [3..10] | [11] check

- ``[0]``: the pump; requests carry the FCC's ``phyfp`` (``0x00 |
  panelPhy``, ``:105``, ``:1391``); the FCC checks only the low nibble of
  replies (``:1487``), so the high nibble of a reply is unknown and
  ignored here.
- ``[1..10]``: requests ``00 | command | eight data bytes`` (``:1391-1401``);
  replies as each command's (:mod:`protocols.lanfeng.messages`).
- ``[11]`` = two's complement of the byte sum of ``[1..10]``, the address
  not included (``LF_not``, ``:1626-1637``; its comment: "CheckSum = NOT
  (Command + Data1 + … + Data9) + 1, the addition has no carry bit"). So
  ``[1..11]`` sum to 0 mod 256. Replies carry the same check (``:1423``).

There is no start byte and no length: frames are found by their check.
A 12-byte window whose ``[1..11]`` sum to 0 is a frame; a misaligned
window passes by chance one time in 256, so callers check the layout of
what they expect (the driver: the pump's address and the reply's layout;
a relay: the request's layout, then the reply to it).

Recovery — every case, and what is reported:

- *Garbage before / between / after frames*: bytes at which no valid
  window starts are skipped, ``ProtocolError("garbage")``, counted in
  ``garbage_bytes``. A byte is skipped as soon as the 12 bytes from it are
  all in and do not check; so one run may be reported in a few pieces as
  bytes trickle in, and at most 11 bytes are ever held.
- *Bad check* (a corrupted frame): indistinguishable from garbage without
  a start byte — its bytes are skipped as garbage, and a valid window
  inside it or across it and the next frame is found only if its check
  holds (the layout checks above).
- *A dropped byte*: the frame's window takes the next frame's first byte:
  garbage, then the stream is found again at the next frame.
- *One stray byte before a frame whose address byte equals its check
  byte* (one frame in 256): the window one byte early checks too (its sum
  is the frame's minus the check plus the address), and it is taken; the
  frame's check byte is then left over. Callers drop what is held before
  each question (:meth:`FrameDecoder.reset`: the driver before each
  request, a relay when the POS asks again), so the misframing cannot
  repeat, and the readings' checks catch the rest.
- *Incomplete at the end*: buffered until more bytes come, or until
  :meth:`FrameDecoder.flush` (the driver's response deadline) reports it
  ``truncated``.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocols.events import ProtocolError
from protocols.stream import BufferedDecoder

#: Every frame, both directions (module doc).
FRAME_LEN = 12

#: Pump addresses: the low nibble of ``[0]`` (``:1487``); 0 is no pump.
MIN_PUMP, MAX_PUMP = 1, 15

#: Held bytes at most: a frame always completes before the buffer is full.
MAX_BUFFER = 4 * FRAME_LEN


def check_of(body: bytes | bytearray) -> int:
    """``[11]`` for ``[1..10]``: the two's complement of their byte sum (``LF_not``)."""
    return -sum(body) & 0xFF


def _valid(buf: bytes | bytearray, start: int) -> bool:
    return sum(buf[start + 1 : start + FRAME_LEN]) & 0xFF == 0


@dataclass(frozen=True, slots=True)
class Frame:
    """One 12-byte frame, as it came."""

    raw: bytes

    @property
    def address(self) -> int:
        """The pump: the low nibble of ``[0]``."""
        return self.raw[0] & 0x0F


def encode_frame(head: int, body: bytes) -> bytes:
    """``head``, the ten bytes ``[1..10]``, the check."""
    if len(body) != FRAME_LEN - 2 or not 0 <= head <= 0xFF:
        raise ValueError("a Lanfeng frame is one head byte and ten body bytes")
    return bytes([head, *body, check_of(body)])


Buffer = bytes | bytearray
Result = Frame | ProtocolError


def decode_at(buf: Buffer, start: int) -> tuple[Result | None, int]:
    """The frame or garbage run at ``buf[start:]`` and the bytes it takes; ``(None, 0)``:
    more bytes are needed."""
    n = len(buf)
    if n - start < FRAME_LEN:
        return None, 0
    if _valid(buf, start):
        return Frame(bytes(buf[start : start + FRAME_LEN])), FRAME_LEN
    skip = next((j for j in range(start + 1, n - FRAME_LEN + 1) if _valid(buf, j)), None)
    if skip is None:
        skip = n - FRAME_LEN + 1  # no complete window checks: none of these can start one
    return ProtocolError("garbage", f"{skip - start} bytes skipped"), skip - start


def decode(buffer: Buffer) -> tuple[Result | None, int]:
    """:func:`decode_at` at the start of ``buffer``."""
    return decode_at(buffer, 0)


class FrameDecoder(BufferedDecoder[Result]):
    """Buffers a partial frame across reads; see the module doc for recovery."""

    MAX_BUFFER = MAX_BUFFER
    ERROR_KINDS = ("truncated",)
    ERROR_TYPE = ProtocolError

    def _decode_at(self, buf: bytearray, pos: int) -> tuple[Result | None, int]:
        return decode_at(buf, pos)
