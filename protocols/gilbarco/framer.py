"""Gilbarco two-wire data frames (protocols.md §4), lexical only, sans-IO.

Layout (words, LRC and the messages: :mod:`protocols.gilbarco.messages`)::

    FF | words | FB | LRC word E0|lrc | F0

    words = data words E0–EF and control words F1–FA, FC–FE, in any order
    and count (a master's price frame starts with a data word,
    lischn001.c:1252-1253; a reply's fields have any digit count, §4).

- FF only ever starts a frame and F0 only ends one; inside, every byte is
  ``E0``–``FE``. A byte below ``E0`` inside a frame is not a word: on a
  two-wire loop it is the next command or a status byte, so the decoder
  stops *before* it and leaves it to the caller
  (:class:`~protocols.gilbarco.line.LineReader`).
- The decoder checks words and the LRC, not which fields a message has
  (:func:`~protocols.gilbarco.messages.parse_transaction`, ``parse_totals``).

Recovery — every case, what :func:`decode_at` reports and how many bytes it
takes (the caller resumes right after them):

- *a byte below E0 inside the frame*: ``bad_message`` ("unexpected byte XX
  at frame offset n"); the frame's bytes before it are taken, not the byte;
- *another FF inside*: the frame was cut: ``truncated``, up to the new FF;
- *F0 before FB*: ``bad_lrc`` (no LRC word), through that F0;
- *FB followed by F0*: ``bad_lrc`` (no LRC word), through that F0;
- *FB followed by a control word, or the LRC word by anything but F0*:
  ``bad_message``, through FB (resp. the LRC word); a byte below E0 or an
  FF there is left to the caller as above (an FF: ``truncated``);
- *complete frame, LRC wrong*: ``bad_lrc``, the whole frame;
- *no FB within* :data:`MAX_FRAME_LEN` *words* (the end was lost):
  ``truncated``, the whole run;
- *a frame cut short with nothing behind it*: nothing yet (``None, 0``);
  the caller flushes it as ``truncated`` at its deadline.

A corrupted word that stays a word of the same kind (a digit for a digit)
changes the LRC (one nibble always does); two such can pass it (1 in 16):
the poller reads every reply twice (:mod:`~protocols.gilbarco.reading`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from protocols.events import ProtocolError
from protocols.gilbarco.messages import CW_LRC, DATA_WORD, ETX, NIBBLE, STX, lrc

#: Bytes a frame's body may hold: every data word and control word but the
#: three that frame it (FF, FB, F0).
_BODY_RUN = re.compile(rb"[\xe0-\xef\xf1-\xfa\xfc-\xfe]*")

#: Longest frame accepted, in words. The longest reply we read is totals:
#: 30 words per grade on the common model (lischn001.c:1595), 10 grades at
#: most (one grade digit) = 304 words; the rest is room for wider digit
#: fields (§4: any count). A longer run has lost its end.
MAX_FRAME_LEN = 512


@dataclass(frozen=True, slots=True)
class Frame:
    """One data frame: the words between FF and FB, and the raw bytes."""

    body: bytes
    raw: bytes = b""

    @property
    def lrc(self) -> int:
        return lrc(self.body)


Buffer = bytes | bytearray
Result = Frame | ProtocolError


def _tail(buf: Buffer, start: int, fb: int) -> tuple[Result | None, int]:
    """The frame at ``start`` whose FB is at ``fb``: LRC word, F0, check."""
    n = len(buf)
    if fb + 1 >= n:
        return None, 0
    word = buf[fb + 1]
    if word == ETX:
        return ProtocolError("bad_lrc", "FB without an LRC word"), fb + 2 - start
    if word == STX:
        return ProtocolError(
            "truncated", f"frame cut by FF after {fb + 1 - start} bytes"
        ), fb + 1 - start
    if word & 0xF0 != DATA_WORD:
        return ProtocolError(
            "bad_message", f"FB followed by {word:02X}, not an LRC word"
        ), fb + 1 - start
    if fb + 2 >= n:
        return None, 0
    end = buf[fb + 2]
    if end == STX:
        return ProtocolError(
            "truncated", f"frame cut by FF after {fb + 2 - start} bytes"
        ), fb + 2 - start
    if end != ETX:
        return ProtocolError(
            "bad_message", f"LRC word followed by {end:02X}, not F0"
        ), fb + 2 - start
    body = bytes(buf[start + 1 : fb])
    want, got = lrc(body), word & NIBBLE
    if got != want:
        return ProtocolError("bad_lrc", f"LRC {got:X}, computed {want:X}"), fb + 3 - start
    return Frame(body=body, raw=bytes(buf[start : fb + 3])), fb + 3 - start


def decode_at(buf: Buffer, start: int) -> tuple[Result | None, int]:
    """The frame whose FF is ``buf[start]``: ``(Frame | ProtocolError, bytes taken)``,
    or ``(None, 0)`` while it is incomplete (module doc: every case)."""
    n = len(buf)
    limit = min(n, start + MAX_FRAME_LEN)
    run = _BODY_RUN.match(buf, start + 1, limit)
    i = run.end() if run else start + 1
    if i < limit:
        word = buf[i]
        if word == CW_LRC:
            return _tail(buf, start, i)
        if word == STX:
            return ProtocolError("truncated", f"frame cut by FF after {i - start} bytes"), i - start
        if word == ETX:
            return ProtocolError("bad_lrc", "F0 before FB: no LRC"), i + 1 - start
        detail = f"unexpected byte {word:02X} at frame offset {i - start}"
        return ProtocolError("bad_message", detail), i - start
    if n - start >= MAX_FRAME_LEN:
        return ProtocolError("truncated", f"no FB within {MAX_FRAME_LEN} bytes"), MAX_FRAME_LEN
    return None, 0


def decode(buffer: Buffer) -> tuple[Result | None, int]:
    """:func:`decode_at` of a buffer starting with FF."""
    return decode_at(buffer, 0)
