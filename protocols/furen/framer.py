"""Furen Haosheng (富仁豪升) framing, sans-IO (``fangym0335/first src/lischn009.c``).

Frame layout, as the FCC driver builds every request (e.g. the status
request ``:1505-1515``, the sale read ``:1159-1170``)::

    FA | 00 | 00 | ctrl | LEN_hi LEN_lo | CMD | data | CRC_hi CRC_lo
    [0]  [1]  [2]  [3]    [4]    [5]      [6]

- ``LEN`` counts CMD and the data after it, as a binary number: the status
  request's 30 + 7 time bytes is ``00 08`` (``:1510-1511``), a read with no
  data ``00 01`` (``:1163-1165``). The frame is ``LEN + 8`` bytes: the
  FCC's serial task reads a reply's length as ``[5] + 8`` and says the
  length is never above 255, so only ``[5]`` counts
  (``fangym0335/first src/spec.c:185-191``).
- ``CRC`` is CRC-16/ARC (``CRC_16``: table polynomial 0xA001, initial 0,
  ``fangym0335/first src/lrc.c:122-134``, ``src/lrc.h:9``) over ``[1]`` …
  last data byte (``CRC_16(&cmd[1], cmd[5] + 5)``), high byte first
  (``:1513-1515``); replies are checked the same way (``:1537-1542``).
- ``[1]`` and ``[2]`` are 00 in every request; in a status reply ``[2]`` is
  01 while a nozzle is lifted (``:1546``). ``ctrl`` ``[3]`` is ``F0 | n``
  for a request about nozzle ``n + 1`` (``:1157``) and 00 otherwise
  (``:1508``). No address: one fuelling point per line.
- No escape: the source never doubles an FA, and the reply length rule
  above counts none (``spec.c`` case 0x09, unlike its case 0x08 for the
  Hengshan pumps, which strips escaped FAs). This is the source's silence,
  not a statement: ``escaped=True`` decodes and builds with the Sinopec
  rule (every FA after the first doubled) for a line that turns out to use
  it (docs/protocols/furen.md).

The engine — sync, every recovery case, the bounded buffer — is
:mod:`protocols.fa_frame`, shared with the Sinopec card link; this module
is its configuration. :func:`framing` picks the unescaped (default) or
escaped one.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocols.fa_frame import CRC_LEN, HEADER_LEN, FaFrameDecoder, FaFraming

#: Largest LEN accepted. The longest reply the source reads is the sale
#: record, LEN 19 (27 bytes, ``:1170``); a status reply is variable
#: (``:1517``) and carries at least volume and amount (``[7..12]``,
#: ``:1354-1362``). 64 leaves room for a longer one while a garbled length
#: holds good frames back by at most ~70 bytes (70 ms at 9600 Bd).
MAX_DATA_LEN = 64

#: The two LEN bytes as a binary count; ``spec.c:188`` reads only the low one.
LEN_BYTES = 2

#: ``ctrl`` of a request about one nozzle: ``F0 | (nozzle - 1)``, nozzles
#: 1..8 ("枪号 0xF0 - 0xF7: LNZ 1 - 8", ``:1581``).
NOZZLE_CTRL = 0xF0
NOZZLE_MASK = 0x0F
MAX_NOZZLE = 8


@dataclass(frozen=True)
class Frame:
    """One frame without its framing: bytes [1], [2], [3] and the data from [6]."""

    b1: int
    b2: int
    ctrl: int
    data: bytes

    def __post_init__(self) -> None:
        for name in ("b1", "b2", "ctrl"):
            if not 0 <= getattr(self, name) <= 0xFF:
                raise ValueError(f"{name} must be one byte")
        if not 1 <= len(self.data) <= MAX_DATA_LEN:
            raise ValueError(f"data must hold 1..{MAX_DATA_LEN} bytes (the command first)")

    @property
    def command(self) -> int:
        """``[6]``: the request's command, or a status reply's 5A / 5B."""
        return self.data[0]

    @property
    def lifted(self) -> bool:
        """``[2] == 01``: a status reply saying a nozzle is lifted (``:1546``)."""
        return self.b2 == 0x01

    @property
    def nozzle_byte(self) -> int | None:
        """The nozzle ``[3]`` names when it is ``F0 | n`` (nozzle n + 1), else None."""
        if self.ctrl & NOZZLE_CTRL != NOZZLE_CTRL:
            return None
        return (self.ctrl & NOZZLE_MASK) + 1


def nozzle_ctrl(nozzle: int) -> int:
    """``ctrl`` of a request about ``nozzle`` (1..8)."""
    if not 1 <= nozzle <= MAX_NOZZLE:
        raise ValueError(f"nozzle {nozzle} is not 1..{MAX_NOZZLE}")
    return NOZZLE_CTRL | (nozzle - 1)


def _read_length(raw: bytes) -> int:
    return int.from_bytes(raw, "big")


def _write_length(count: int) -> bytes:
    return count.to_bytes(LEN_BYTES, "big")


def _framing(escaped: bool) -> FaFraming[Frame]:
    return FaFraming(
        make=Frame,
        read_length=_read_length,
        write_length=_write_length,
        length_kind="a count",
        max_data_len=MAX_DATA_LEN,
        escaped=escaped,
    )


UNESCAPED = _framing(escaped=False)
ESCAPED = _framing(escaped=True)

#: Bound of a decoder's buffer: twice the longest frame (escaped), see
#: :class:`protocols.fa_frame.FaFrameDecoder`.
MAX_BUFFER = 2 * ESCAPED.max_wire_frame

#: Shortest frame on the wire: FA, header, a command, CRC.
MIN_FRAME = 1 + HEADER_LEN + 1 + CRC_LEN


def framing(escaped: bool = False) -> FaFraming[Frame]:
    """The framing rules: unescaped (the source's) or with Sinopec's FA doubling."""
    return ESCAPED if escaped else UNESCAPED


def encode_frame(frame: Frame, *, escaped: bool = False) -> bytes:
    """The frame as sent on the wire."""
    return framing(escaped).encode(frame.b1, frame.b2, frame.ctrl, frame.data)


class FrameDecoder(FaFrameDecoder[Frame]):
    """Buffers partial frames across reads (recovery: :mod:`protocols.fa_frame`)."""

    MAX_BUFFER = MAX_BUFFER

    def __init__(self, *, escaped: bool = False) -> None:
        super().__init__(framing(escaped))
