"""Gilbarco two-wire data-reply framing (protocols.md §4), sans-IO.

Frame layout (words and LRC: :mod:`protocols.gilbarco.messages`)::

    STX FF | body | FB | LRC word (E0|lrc) | ETX F0

    body  = field*      field = control word (F6 F7 F8 F9 FA FD FE) + data words (E0..E9)

- ``lrc = -(low nibbles of FF + body + FB) mod 16``; the LRC word itself and
  ETX are not summed.
- FF only ever starts a frame: data words are E_, control words F1–FE, so a
  byte FF is unambiguous and no escaping exists (unlike Sinopec).
- The decoder is lexical only: it checks words and the LRC, not which
  fields a message has (that is :func:`~protocols.gilbarco.messages.parse_transaction`
  / ``parse_totals``, reported ``bad_message``).
- Status bytes and commands are single bytes outside frames; the driver
  reads them itself and feeds this decoder only while a data reply (4 or 5)
  is awaited.

Recovery — every case the decoder handles, and what it reports:

- *Garbage before a frame* (any bytes before an STX): skipped, ONE
  ``ProtocolError("garbage", "N bytes skipped")`` per run, N counted in
  ``garbage_bytes``. Reported as soon as it arrives; nothing is held back,
  since a frame start is one byte.
- *Garbage between / after frames*: the same rule, it is garbage before the
  next STX (or before nothing).
- *Garbage inside a frame*, by what the bad byte is:
  - *an unexpected byte* (not a data word E0–E9 where data may stand, not a
    control word, e.g. 0x31, EA–EF in a field, F1–F5, FC; or a data word
    before any control word): ``bad_message`` as soon as it arrives;
  - *another STX*: the frame was cut and a new one starts: ``truncated``;
  - *an early ETX* (before FB and its LRC word): ``bad_lrc`` (no LRC);
  - *a valid-looking word* (a digit for a digit, a control word for a
    control word): the LRC no longer matches → the bad-LRC case; if the LRC
    happens to match, the message layout check rejects it (a changed control
    word or a digit turned control word changes the fields).
- *Bad LRC* (a complete frame, STX … ETX, whose LRC does not check, or FB
  followed by ETX without an LRC word): ``ProtocolError("bad_lrc")``; the
  frame's bytes are consumed and the decoder hunts for the next STX 0xFF —
  bytes before it are the next garbage run.
- *FB followed by neither an LRC word nor ETX, or the LRC word followed by
  something other than ETX*: ``bad_message``.
- After ``bad_message`` and ``truncated`` the decoder hunts from the bad
  frame's STX + 1 to the next STX; the bytes skipped (those received so far)
  belong to that error, later ones are garbage.
- *Truncated*: an STX inside a frame (above); a frame longer than
  :data:`MAX_FRAME_LEN` without its end (its ETX was corrupted into a word) is
  ``truncated`` as soon as the limit is passed; a frame cut short with nothing
  behind it stays buffered until more bytes arrive or until
  :meth:`FrameDecoder.flush` (the driver calls it at the response deadline),
  which reports it ``truncated``.

Good frames never depend on how bytes were split into reads, and an
incomplete frame can never hide a complete one (an STX inside it cuts it).

Style: h11 / pymodbus. :func:`decode` is pure (buffer in, one result and the
number of bytes consumed out); :class:`FrameDecoder` adds the buffer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from protocols.events import ProtocolError
from protocols.gilbarco.messages import (
    CW_LRC,
    DATA_WORD,
    ETX,
    FIELD_CONTROLS,
    MAX_GRADES,
    STX,
    TOTALS_ENTRY_LEN,
    WORD_KIND,
    is_digit_word,
    lrc,
)
from protocols.stream import BufferedDecoder

_STX_BYTES = bytes([STX])

#: STX, FB, LRC word, ETX around the body.
FRAME_OVERHEAD = 4

#: A run of body words: field control words and digit words (module doc).
_BODY_WORDS = sorted(FIELD_CONTROLS | {DATA_WORD + d for d in range(10)})
_BODY_RUN = re.compile(b"[" + b"".join(re.escape(bytes([w])) for w in _BODY_WORDS) + b"]*")

#: Longest frame accepted: the largest reply we solicit is totals for every
#: possible grade (10 × (F6 + 1 digit + F9 + 8 + FA + 8) = 200 body words).
#: A longer run without ETX means the ETX was lost; waiting longer would only
#: swallow the next reply.
MAX_FRAME_LEN = FRAME_OVERHEAD + MAX_GRADES * TOTALS_ENTRY_LEN

#: Bound of :class:`FrameDecoder`'s buffer: after each drain it holds at most
#: one incomplete frame (< MAX_FRAME_LEN); the same again of new input per
#: step guarantees progress while keeping memory per line fixed.
MAX_BUFFER = 2 * MAX_FRAME_LEN


@dataclass(frozen=True)
class Frame:
    """One data reply: the body words (between STX and FB) and the raw bytes."""

    body: bytes
    raw: bytes = b""

    @property
    def lrc(self) -> int:
        return lrc(self.body)


def encode_frame(body: bytes) -> bytes:
    """STX, ``body``, FB, the LRC word, ETX. ``body`` must be fields (module doc)."""
    if body and body[0] not in FIELD_CONTROLS:
        raise ValueError("a body starts with a field control word")
    for word in body:
        if word not in FIELD_CONTROLS and not is_digit_word(word):
            raise ValueError(f"{word:02X} is neither a field control word nor a digit word")
    return bytes([STX, *body, CW_LRC, DATA_WORD | lrc(body), ETX])


Buffer = bytes | bytearray
Result = Frame | ProtocolError


def _error(kind: str, detail: str, buf: Buffer, start: int) -> tuple[ProtocolError, int]:
    """The error and the bytes to drop: up to the next STX after ``start``."""
    nxt = buf.find(_STX_BYTES, start + 1)
    return ProtocolError(kind, detail), (nxt if nxt >= 0 else len(buf)) - start


def _tail(buf: Buffer, start: int, fb: int) -> tuple[Result | None, int]:
    """The frame at ``start`` whose FB is at ``fb``: LRC word, ETX, check."""
    n = len(buf)
    if fb + 1 >= n:
        return None, 0
    word = buf[fb + 1]
    if word == STX:
        return _error("truncated", f"frame cut by STX after {fb + 1 - start} bytes", buf, start)
    if word == ETX:
        return ProtocolError("bad_lrc", "FB without an LRC word"), fb + 2 - start
    if word & WORD_KIND != DATA_WORD:
        return _error("bad_message", f"FB followed by {word:02X}, not an LRC word", buf, start)
    if fb + 2 >= n:
        return None, 0
    end = buf[fb + 2]
    if end == STX:
        return _error("truncated", f"frame cut by STX after {fb + 2 - start} bytes", buf, start)
    if end != ETX:
        return _error("bad_message", f"LRC word followed by {end:02X}, not ETX", buf, start)
    body = bytes(buf[start + 1 : fb])
    want, got = lrc(body), word & 0x0F
    if got != want:
        return ProtocolError("bad_lrc", f"LRC {got:X}, computed {want:X}"), fb + 3 - start
    return Frame(body=body, raw=bytes(buf[start : fb + 3])), fb + 3 - start


def decode_at(buf: Buffer, start: int) -> tuple[Result | None, int]:
    """:func:`decode` of ``buf[start:]`` without copying it."""
    n = len(buf)
    if start >= n:
        return None, 0
    if buf[start] != STX:
        nxt = buf.find(_STX_BYTES, start)
        skip = (nxt if nxt >= 0 else n) - start
        return ProtocolError("garbage", f"{skip} bytes skipped"), skip
    limit = min(n, start + MAX_FRAME_LEN)
    run = _BODY_RUN.match(buf, start + 1, limit)
    i = run.end() if run else start + 1
    if i > start + 1 and is_digit_word(buf[start + 1]):
        detail = f"unexpected data word before any control word {buf[start + 1]:02X}"
        return _error("bad_message", f"{detail} at frame offset 1", buf, start)
    if i < limit:
        word = buf[i]
        if word == CW_LRC:
            return _tail(buf, start, i)
        if word == STX:
            return _error("truncated", f"frame cut by STX after {i - start} bytes", buf, start)
        if word == ETX:
            return ProtocolError("bad_lrc", "ETX before FB: no LRC"), i + 1 - start
        detail = f"unexpected byte {word:02X} at frame offset {i - start}"
        return _error("bad_message", detail, buf, start)
    if n - start >= MAX_FRAME_LEN:
        return _error("truncated", f"no FB within {MAX_FRAME_LEN} bytes", buf, start)
    return None, 0


def decode(buffer: Buffer) -> tuple[Result | None, int]:
    """Decode the first thing in ``buffer``; say how many bytes it took.

    Returns ``(Frame, n)``, ``(ProtocolError, n)`` (bytes to drop, see the
    module doc for every case) or ``(None, 0)`` when more bytes are needed.
    """
    return decode_at(buffer, 0)


class FrameDecoder(BufferedDecoder[Result]):
    """Buffers a partial frame across reads; see the module doc for recovery."""

    MAX_BUFFER = MAX_BUFFER
    ERROR_KINDS = ("bad_lrc", "bad_message", "truncated")
    ERROR_TYPE = ProtocolError

    def _decode_at(self, buf: bytearray, pos: int) -> tuple[Result | None, int]:
        return decode_at(buf, pos)

    def flush(self) -> list[Result]:
        """No more bytes are coming for now: report the incomplete frame ``truncated``.

        The buffer only ever holds one incomplete frame (an STX and words, no
        second STX), so nothing complete can be behind it. Empty afterwards.
        """
        if not self._buffer:
            return []
        detail = f"incomplete frame of {len(self._buffer)} bytes dropped"
        self._buffer.clear()
        self.counters["truncated"] += 1
        return [ProtocolError("truncated", detail)]

    def reset(self) -> int:
        """Drop whatever is buffered, reporting nothing; return how many bytes."""
        dropped = len(self._buffer)
        self._buffer.clear()
        return dropped
