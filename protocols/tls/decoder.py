"""Computer-format response framing for the TLS gauge, sans-IO.

Layout (3xx manual §6.1, protocols.md §1)::

    SOH | function code (6, echoed: iXXXTT) | data | && | CCCC | ETX

- ``CCCC``: four ASCII-hex digits (either case accepted), the 16-bit two's
  complement of the byte sum from SOH through ``&&`` inclusive, so
  ``sum + CCCC ≡ 0 (mod 0x10000)``.
- Unknown function: the console answers ``SOH 9999FF1B ETX`` (§5) — no
  ``&&``; FF1B is the checksum of ``SOH 9999``.
- The data field is then parsed per function by :mod:`protocols.tls.parse`,
  whose docstring documents every layout and the manual readings.

Decoding assumptions:

- Responses are printable ASCII (§6.1: "a stream of numbers without any
  formatting characters"), so SOH, ETX and ESC never occur inside one: the
  first of them after a response's SOH ends (or cuts) it. 7-bit lines have
  their parity stripped by the UART, so the §6.1 sum is over what we receive.
- We never solicit display format (upper-case ``I``); a display response
  has no ``&&`` and is reported as ``layout``.

Recovery — every case, what is reported, and how many bytes are dropped:

- *Garbage before SOH* (noise, the tail of a response we gave up on, a
  stray ETX or ESC): every byte up to the next SOH, reported at once as ONE
  ``TlsError("garbage")`` per run (the bytes count in ``garbage_bytes``).
- *CR / LF between responses* (some serial servers and consoles add them):
  dropped silently — ``decode`` returns ``(None, n)`` with ``n > 0``. A run
  mixing CR/LF with anything else is garbage.
- *Truncated, cut by a new response*: an SOH before the ETX ends the broken
  response: ``TlsError("truncated")``, dropped up to the new SOH, which is
  then decoded normally.
- *Missing ETX, nothing behind it*: kept until more bytes come; given up as
  ``truncated`` when it reaches :data:`MAX_RESPONSE` bytes without an ETX,
  or by :meth:`TlsDecoder.flush` (the caller's response deadline passed).
- *ESC abort* (§5): an ESC inside a response means it was halted:
  ``TlsError("aborted")``, dropped through the ESC. When *we* sent the ESC,
  :meth:`TlsDecoder.abort` drops the partial response the same way.
- *Bad checksum*: ``TlsError("bad_checksum")``, the whole response dropped.
- *``9999FF1B``*: ``TlsError("unknown_command")`` — the console did not
  understand the function; a ``SOH 9999 xxxx ETX`` with another checksum is
  ``bad_checksum``.
- *Layout*: no ``&&`` before the checksum, no function code, or a data field
  that does not follow its function's layout (field counts ``NN`` that do
  not match the data, non-hex floats, impossible dates, …):
  ``TlsError("layout")``, the whole response dropped.
- ``?`` fields (§7.0, inactive device) are not errors: they parse to None.

Reports never depend on how the bytes were split into reads; garbage can be
reported in more pieces when it arrives in more reads. Style: h11 /
pymodbus — :func:`decode` is pure (buffer in, one result and the bytes it
consumed out); :class:`TlsDecoder` adds the bounded buffer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from protocols.stream import BufferedDecoder
from protocols.tls.parse import LayoutError, parse_data
from protocols.tls.reports import Report
from protocols.tls.wire import (
    CHECKSUM_TAG,
    ESC,
    FUNCTION_LEN,
    SOH,
    TRAILER_LEN,
    UNKNOWN_COMMAND_REPLY,
    checksum,
)

#: Longest response accepted, SOH to ETX. The largest we solicit is i202 for
#: all tanks: 16 tanks (TLS-350, §7.0 "01 through 16") × 10 stored deliveries
#: × (two dates 20 + NN 2 + up to 16 floats × 8 = 150 chars) ≈ 24 kB. 64 KiB
#: leaves room for bigger 4xx sites while a response whose ETX was lost is
#: given up after a bounded wait (68 s of line time at 9600 baud).
MAX_RESPONSE = 65536

#: Bound of :class:`TlsDecoder`'s buffer: after each drain it holds at most
#: one incomplete response (< MAX_RESPONSE); as much again of new input per
#: step guarantees progress with fixed memory per line.
MAX_BUFFER = 2 * MAX_RESPONSE

_STOP = re.compile(rb"[\x01\x03\x1b]")  # SOH, ETX, ESC: what ends a response
_HEX = frozenset(b"0123456789ABCDEFabcdef")
_NEWLINES = b"\r\n"


@dataclass(frozen=True, slots=True)
class TlsError:
    """Something on the line that is not a good response.

    ``kind`` is a stable token, also a counter name: ``garbage``,
    ``truncated``, ``aborted``, ``bad_checksum``, ``unknown_command``,
    ``layout``. ``function`` is the echoed function code when it was read.
    """

    kind: str
    detail: str
    function: str | None = None
    raw: bytes = field(default=b"", repr=False, compare=False)  # the bytes dropped


Item = Report | TlsError
Buffer = bytes | bytearray


def parse_frame(frame: bytes) -> Item:
    """One complete ``SOH … ETX`` response → its report or why it is rejected."""
    if frame == UNKNOWN_COMMAND_REPLY:
        return TlsError("unknown_command", "console answered 9999: function not recognised")
    if len(frame) < 1 + TRAILER_LEN or frame[-TRAILER_LEN:-5] != CHECKSUM_TAG:
        if len(frame) == len(UNKNOWN_COMMAND_REPLY) and frame[1:5] == b"9999":
            return TlsError("bad_checksum", f"9999 reply with checksum {frame[5:9]!r}", raw=frame)
        return TlsError("layout", "no '&&' checksum tag before ETX", raw=frame)
    digits = frame[-5:-1]
    if not all(b in _HEX for b in digits):
        return TlsError("layout", f"checksum {digits!r} is not 4 hex digits", raw=frame)
    message = frame[:-5]
    got, want = int(digits, 16), checksum(message)
    text = frame[1:-TRAILER_LEN].decode("latin-1")
    function = text[:FUNCTION_LEN] if len(text) >= FUNCTION_LEN else None
    if got != want:
        detail = f"checksum {got:04X}, computed {want:04X}"
        return TlsError("bad_checksum", detail, function, raw=frame)
    if function is None:
        return TlsError("layout", f"no function code ({len(text)} chars)", raw=frame)
    try:
        return parse_data(function, text[FUNCTION_LEN:])
    except LayoutError as exc:
        return TlsError("layout", str(exc), function, raw=frame)


def decode_at(buf: Buffer, start: int) -> tuple[Item | None, int]:
    """:func:`decode` of ``buf[start:]`` without copying it."""
    n = len(buf)
    if start >= n:
        return None, 0
    if buf[start] != SOH:
        soh = buf.find(b"\x01", start)
        end = n if soh < 0 else soh
        run = bytes(buf[start:end])
        if not run.strip(_NEWLINES):
            return None, end - start  # CR / LF between responses: tolerated
        return TlsError("garbage", f"{end - start} bytes before SOH", raw=run), end - start
    stop = _STOP.search(buf, start + 1, min(n, start + MAX_RESPONSE))
    if stop is None:
        if n - start >= MAX_RESPONSE:
            raw = bytes(buf[start : start + MAX_RESPONSE])
            return TlsError("truncated", f"no ETX within {MAX_RESPONSE} bytes", raw=raw), len(raw)
        return None, 0
    j = stop.start()
    if buf[j] == SOH:
        raw = bytes(buf[start:j])
        return TlsError("truncated", f"cut after {len(raw)} bytes by SOH", raw=raw), len(raw)
    if buf[j] == ESC:
        raw = bytes(buf[start : j + 1])
        return TlsError("aborted", f"ESC after {j - start} bytes of a response", raw=raw), len(raw)
    return parse_frame(bytes(buf[start : j + 1])), j + 1 - start


def decode(buffer: Buffer) -> tuple[Item | None, int]:
    """Decode the first thing in ``buffer``; say how many bytes it took.

    ``(Report, n)``; ``(TlsError, n)`` (n bytes to drop, see the module doc);
    ``(None, n)`` with n > 0: n bytes of CR/LF dropped silently; ``(None, 0)``:
    more bytes are needed.
    """
    return decode_at(buffer, 0)


class TlsDecoder(BufferedDecoder[Item]):
    """Buffers partial responses across reads; see the module doc for recovery."""

    MAX_BUFFER = MAX_BUFFER
    ERROR_KINDS = ("truncated", "aborted", "bad_checksum", "unknown_command", "layout")
    ERROR_TYPE = TlsError
    OK_COUNTER = "responses"

    def _decode_at(self, buf: bytearray, pos: int) -> tuple[Item | None, int]:
        return decode_at(buf, pos)

    def flush(self) -> list[Item]:
        """The response deadline passed: the partial response is ``truncated``."""
        return self._give_up("truncated", "incomplete response")

    def abort(self) -> list[Item]:
        """We sent ESC (§5): the partial response is ``aborted``."""
        return self._give_up("aborted", "response halted by our ESC")

    def _give_up(self, kind: str, why: str) -> list[Item]:
        if not self._buffer:
            return []
        raw = bytes(self._buffer)
        self._buffer.clear()
        self.counters[kind] += 1
        return [TlsError(kind, f"{why} of {len(raw)} bytes dropped", raw=raw)]
