"""Sinopec card-dispenser link (卡机联动 V1.1) framing, sans-IO.

Frame layout (protocols.md §2, "Frame")::

    FA | dst | src | ctrl | LEN (2 B BCD) | data (LEN bytes, data[0] = command) | CRC16 (2 B)

- ``LEN`` is the number of data bytes as four BCD digits, high byte first
  (``00 96`` = 96); escape bytes are not counted (protocols.md §2).
- ``CRC16`` is CRC-16/ARC (:func:`protocols.crc.crc16_arc`) over ``dst`` … last
  data byte, high byte first; the leading FA is not covered (protocols.md §2).
- Escape: every 0xFA from ``dst`` to the last CRC byte is sent doubled
  (``FA FA``); the leading FA is not (protocols.md §2).
- Sync: a frame starts at a *lone FA*, an FA whose next byte is not FA.

The decoding engine, its assumptions and every recovery case are
:mod:`protocols.fa_frame`'s (escaped framing), shared with the Furen
Haosheng family whose frame has the same shape. Sinopec-specific:
``dst`` is never 0xFA — pumps use small logical numbers and the POS side
0xE0–0xF9 (protocols.md §2, "Addresses") — so a real frame start is always
a lone FA; ``LEN`` above :data:`MAX_DATA_LEN` is line noise.

Style: h11 / pymodbus. :func:`decode` is pure (buffer in, one result and the
number of bytes consumed out); :class:`FrameDecoder` adds the buffer.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocols.bcd import bcd_decode, bcd_encode
from protocols.events import ProtocolError
from protocols.fa_frame import (
    CRC_LEN,
    HEADER_LEN,
    SYNC,
    FaFrameDecoder,
    FaFraming,
)

__all__ = [
    "CRC_LEN",
    "FRAME_NO_MASK",
    "HEADER_LEN",
    "MAX_BUFFER",
    "MAX_DATA_LEN",
    "MAX_WIRE_FRAME",
    "SYNC",
    "Frame",
    "FrameDecoder",
    "decode",
    "decode_at",
    "encode_frame",
]

#: Largest data length accepted. LEN can say up to 9999, but the largest
#: message we ever solicit is the 96-byte transaction record (command + 95 B,
#: protocols.md §2) and a 31 report for 8 nozzles with cards inserted is 146
#: bytes; 256 leaves room for longer pumps while a garbled length is rejected
#: at once instead of swallowing ~20 kB of good frames while we wait.
MAX_DATA_LEN = 256

#: Longest possible frame on the wire: every byte after the leading FA doubled.
MAX_WIRE_FRAME = 1 + 2 * (HEADER_LEN + MAX_DATA_LEN + CRC_LEN)

#: Bound of :class:`FrameDecoder`'s buffer. After each drain it holds at most
#: one incomplete frame (< MAX_WIRE_FRAME); the same again of new input per
#: step guarantees progress while keeping memory per line fixed.
MAX_BUFFER = 2 * MAX_WIRE_FRAME

#: ctrl bits 0–5 carry the frame number (protocols.md §2, "ctrl").
FRAME_NO_MASK = 0x3F


@dataclass(frozen=True)
class Frame:
    """One frame without its framing: addresses, ctrl and the data bytes."""

    dst: int
    src: int
    ctrl: int
    data: bytes

    def __post_init__(self) -> None:
        for name in ("dst", "src", "ctrl"):
            if not 0 <= getattr(self, name) <= 0xFF:
                raise ValueError(f"{name} must be one byte")
        if not 1 <= len(self.data) <= MAX_DATA_LEN:
            raise ValueError(f"data must hold 1..{MAX_DATA_LEN} bytes (the command first)")

    @property
    def frame_no(self) -> int:
        """Frame number, ctrl bits 0–5 (protocols.md §2)."""
        return self.ctrl & FRAME_NO_MASK

    @property
    def command(self) -> int:
        """Command code, the first data byte (protocols.md §2)."""
        return self.data[0]


def _length(count: int) -> bytes:
    return bcd_encode(count, 2)  # four BCD digits, high byte first (protocols.md §2)


FRAMING: FaFraming[Frame] = FaFraming(
    make=Frame,
    read_length=bcd_decode,
    write_length=_length,
    length_kind="BCD",
    max_data_len=MAX_DATA_LEN,
    escaped=True,
)


def encode_frame(frame: Frame) -> bytes:
    """The frame as sent on the wire: header, data, CRC, every inner FA doubled."""
    return FRAMING.encode(frame.dst, frame.src, frame.ctrl, frame.data)


Buffer = bytes | bytearray
Result = Frame | ProtocolError

#: The engine's steps under their former names (describe, tests).
decode_at = FRAMING.decode_at
_parse_at = FRAMING.parse_at
_parse_escaped = FRAMING.parse_escaped
_next_start = FRAMING.next_start


def decode(buffer: Buffer) -> tuple[Result | None, int]:
    """Decode the first thing in ``buffer``; say how many bytes it took.

    Returns ``(Frame, n)``, ``(ProtocolError, n)`` (bytes to drop, see
    :mod:`protocols.fa_frame` for every case) or ``(None, 0)`` when more
    bytes are needed.
    """
    return decode_at(buffer, 0)


class FrameDecoder(FaFrameDecoder[Frame]):
    """Buffers partial frames across reads (recovery: :mod:`protocols.fa_frame`)."""

    MAX_BUFFER = MAX_BUFFER

    def __init__(self) -> None:
        super().__init__(FRAMING)
