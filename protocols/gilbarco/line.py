"""One Gilbarco two-wire loop in line order: what every byte is, sans-IO.

The loop is shared: every byte the master sends comes back to it as an
echo before the pump's reply, and a tap sees command, then reply, on one
line (protocols.md §4). :class:`LineReader` follows that conversation —
bytes in, :data:`Item` objects out — for every reader of the line: the
poller (:mod:`~protocols.gilbarco.driver`: it tells the reader what it
sent), the relay / listen monitor, ``forecourt decode`` and the census.

Who sent a byte:

- ``source="master"``: bytes known to come from the master (a relay's POS
  side): commands, and a data frame after the pump answered D to a 2.
- ``source="pump"``: bytes from the pump side (a poller's receive line, a
  relay's dispenser side): echoes of the master's bytes, then replies.
- ``source=None``: one line with both (a tap, a capture). A byte below
  0x70 (or ``FC``) where no reply is awaited is a command; where a reply is
  awaited it is that reply when it fits, else the next command (the pump
  did not answer). The one ambiguous case: status 6 (off) and command 6
  share the byte ``6p``; awaiting pump p's status, ``6p`` is the status.

Replies, by the command awaiting one (codes.py): 0 and 2 → one status byte
with the pump's nibble; 4 and 5 → a data frame; 6 → six data words.
1, 3 and FC get none. After D answers a 2 the master sends a data frame
(price, preset or special function, lischn001.c:1252-1266, 2117); what a
pump may send back to that is not read here: bytes from 0x70 up are
skipped (``unexpected``) until the next command.

Echo: the master's bytes not yet heard back are kept; bytes from the pump
side (or the line) equal to them, in order, are the echo. A reply can equal
its command only as status 0 ("data error") to a status poll ``0p``: with
the echo on the line it is the second such byte; without one (a tap, the
FCC's IO board) it is taken for the echo — a lost data-error report.

Recovery. A status byte that does not fit is ``unexpected`` (still
waiting); bytes that fit nothing are one ``garbage`` run; a broken frame is
the framer's error (protocols/gilbarco/framer.py) and ends the wait. A
frame or status nobody asked for (the command was missed) is still read,
with ``request=None``. Every byte of the input ends up in exactly one item;
:meth:`LineReader.flush` reports a cut-off reply ``truncated``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from protocols.events import ProtocolError
from protocols.gilbarco.codes import (
    ANSWERED,
    CMD_DATA_NEXT,
    CMD_RUNNING,
    FRAME_REPLY,
    NIBBLE,
    STATUS_NAMES,
    STATUS_REPLY,
    STATUS_SEND_DATA,
    is_command,
    nibble_pump,
)
from protocols.gilbarco.framer import MAX_FRAME_LEN, Frame, decode_at
from protocols.gilbarco.messages import DATA_WORD, RUNNING_DIGITS, STX, WORD_KIND

Source = Literal["master", "pump"] | None


@dataclass(frozen=True, slots=True)
class _At:
    """What every item has: where it starts, as an offset in the stream."""

    offset: int


@dataclass(frozen=True, slots=True)
class _PumpByte(_At):
    """One byte of the loop: a code in the high nibble, the pump in the low."""

    byte: int

    @property
    def pump(self) -> int:
        return nibble_pump(self.byte)


@dataclass(frozen=True, slots=True)
class Command(_PumpByte):
    @property
    def command(self) -> int:
        return self.byte >> 4


@dataclass(frozen=True, slots=True)
class Echo(_At):
    """The master's own bytes heard back on the loop."""

    size: int


@dataclass(frozen=True, slots=True)
class StatusReply(_PumpByte):
    request: int | None  # the command it answers, None when none was seen

    @property
    def status(self) -> int:
        return self.byte >> 4


@dataclass(frozen=True, slots=True)
class DataReply(_At):
    """A frame from the pump: the reply to ``request`` (4 or 5), or to none seen."""

    frame: Frame
    request: int | None


@dataclass(frozen=True, slots=True)
class RunningReply(_At):
    """The reply to 6: the running display's data words."""

    words: bytes
    request: int


@dataclass(frozen=True, slots=True)
class MasterData(_At):
    """A data frame the master sent (after D answered its 2)."""

    frame: Frame


@dataclass(frozen=True, slots=True)
class Rejected(_At):
    """``size`` bytes that are not what the line allows there."""

    size: int
    error: ProtocolError
    request: int | None = None


Item = Command | Echo | StatusReply | DataReply | RunningReply | MasterData | Rejected

_STATUS_CODES = frozenset(STATUS_NAMES)


def _fits_status(byte: int, request: int) -> bool:
    return byte & NIBBLE == request & NIBBLE and byte >> 4 in _STATUS_CODES


def _run(buf: bytearray, pos: int, stop: Callable[[int], bool]) -> int:
    """Bytes from ``pos`` (one at least) up to the first one that ``stop``s the run."""
    end = pos + 1
    while end < len(buf) and not stop(buf[end]):
        end += 1
    return end - pos


class LineReader:
    """Follows one loop's conversation; see the module doc."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._base = 0  # stream offset of _buf[0]
        self._source: Source = None  # who sent the buffered bytes
        #: The command awaiting its reply, None when a command is next.
        self.pending: int | None = None
        self._echo = bytearray()  # the master's bytes not yet heard back
        self._master_data = False  # D answered a 2: the master's data frame next
        self._after_master = False  # a master frame passed: pump data we do not read

    @property
    def buffered(self) -> int:
        """Bytes held for the rest of a reply."""
        return len(self._buf)

    def sent(self, byte: int) -> None:
        """The master (a poller: we) sent this command; its reply is awaited."""
        self._start(byte)

    def reset(self) -> int:
        """Forget the conversation (a new exchange); return the bytes dropped."""
        dropped = len(self._buf)
        self._base += dropped
        self._buf.clear()
        self.pending, self._master_data, self._after_master = None, False, False
        self._echo.clear()
        return dropped

    def flush(self) -> list[Item]:
        """No more bytes for now (a deadline, the end of a capture): a cut-off
        reply is ``truncated``; no reply is awaited any more."""
        out: list[Item] = []
        if self._buf:
            detail = f"incomplete reply of {len(self._buf)} bytes dropped"
            out.append(self._reject(0, len(self._buf), "truncated", detail, self.pending))
            self._base += len(self._buf)
            self._buf.clear()
        self.pending, self._master_data = None, False
        return out

    def receive(self, data: bytes, source: Source = None) -> list[Item]:
        """Bytes from the line, in order; every complete item they make."""
        out: list[Item] = []
        if self._buf and source != self._source:
            out += self.flush()  # the other side spoke: the held reply is over
        self._source = source
        self._buf += data
        buf, pos, n = self._buf, 0, len(self._buf)
        while pos < n:
            taken = self._step(buf, pos, source, out)
            if taken == 0:
                break
            pos += taken
        del buf[:pos]
        self._base += pos
        return out

    # ------------------------------------------------------------ internals

    def _start(self, byte: int) -> None:
        command = byte >> 4
        self.pending = byte if command in ANSWERED and is_command(byte) else None
        self._echo[:] = bytes([byte])
        self._master_data = self._after_master = False

    def _reject(
        self, pos: int, size: int, kind: str, detail: str, request: int | None = None
    ) -> Rejected:
        return Rejected(self._base + pos, size, ProtocolError(kind, detail), request)

    def _frame(
        self,
        buf: bytearray,
        pos: int,
        item: Callable[[int, Frame], Item],
        out: list[Item],
        request: int | None = None,
    ) -> int:
        """The data frame at ``pos`` (its STX) as ``item(offset, frame)``, or the
        framer's error: the bytes taken, 0 when more are needed."""
        result, taken = decode_at(buf, pos)
        if result is None:
            return 0
        at = self._base + pos
        out.append(
            item(at, result) if isinstance(result, Frame) else Rejected(at, taken, result, request)
        )
        return taken

    def _step(self, buf: bytearray, pos: int, source: Source, out: list[Item]) -> int:
        """Read what stands at ``pos``; return the bytes taken (0: need more)."""
        byte = buf[pos]
        if source != "master" and self._echo:
            if byte == self._echo[0]:
                size = 1
                limit = min(len(buf) - pos, len(self._echo))
                while size < limit and buf[pos + size] == self._echo[size]:
                    size += 1
                del self._echo[:size]
                out.append(Echo(self._base + pos, size))
                return size
            self._echo.clear()
        if source == "master":
            self.pending = None  # the master moved on: no reply came
            return self._from_master(buf, pos, out)
        if self.pending is not None:
            taken = self._reply(buf, pos, source, out)
            if taken >= 0:
                return taken
            self.pending = None  # -1: the pump did not answer; this is the next command
        if source is None:
            if self._master_data and byte == STX:
                return self._from_master(buf, pos, out)
            if is_command(byte):
                return self._from_master(buf, pos, out)
        return self._unsolicited(buf, pos, source, out)

    def _from_master(self, buf: bytearray, pos: int, out: list[Item]) -> int:
        byte = buf[pos]
        if is_command(byte):
            out.append(Command(self._base + pos, byte))
            self._start(byte)
            return 1
        if byte == STX:
            taken = self._frame(buf, pos, MasterData, out)
            if taken:
                if isinstance(last := out[-1], MasterData):
                    self._echo[:] = last.frame.raw[-MAX_FRAME_LEN:]
                self._master_data, self._after_master = False, True
            return taken
        size = _run(buf, pos, lambda b: is_command(b) or b == STX)
        detail = f"{size} bytes from the master that are neither commands nor a frame"
        out.append(self._reject(pos, size, "garbage", detail))
        return size

    def _reply(self, buf: bytearray, pos: int, source: Source, out: list[Item]) -> int:
        """The awaited reply at ``pos``: bytes taken, 0 need more, -1 it is not one."""
        request = self.pending
        assert request is not None
        byte, kind = buf[pos], request >> 4
        next_command = source is None and is_command(byte)
        if kind in STATUS_REPLY:
            if _fits_status(byte, request):
                out.append(StatusReply(self._base + pos, byte, request))
                self.pending = None
                self._master_data = kind == CMD_DATA_NEXT and byte >> 4 == STATUS_SEND_DATA
                return 1
            if next_command:
                return -1
            detail = f"{byte:02X} is not pump {nibble_pump(request)}'s status"
            out.append(self._reject(pos, 1, "unexpected", detail, request))
            return 1
        if kind in FRAME_REPLY:
            if byte == STX:
                taken = self._frame(buf, pos, lambda at, f: DataReply(at, f, request), out, request)
                if taken:
                    self.pending = None
                return taken
            if next_command:
                return -1
            size = _run(buf, pos, lambda b: b == STX or (source is None and is_command(b)))
            out.append(
                self._reject(pos, size, "garbage", f"{size} bytes before the data frame", request)
            )
            return size
        assert kind == CMD_RUNNING
        size = 0
        limit = min(len(buf) - pos, RUNNING_DIGITS)
        while size < limit and buf[pos + size] & WORD_KIND == DATA_WORD:
            size += 1
        if size == RUNNING_DIGITS:
            out.append(RunningReply(self._base + pos, bytes(buf[pos : pos + size]), request))
            self.pending = None
            return size
        if pos + size == len(buf):
            return 0
        if size:
            detail = f"running display of {size} words, {RUNNING_DIGITS} expected"
            out.append(self._reject(pos, size, "bad_message", detail, request))
            self.pending = None
            return size
        if next_command:
            return -1
        out.append(self._reject(pos, 1, "garbage", f"{byte:02X} is not a data word", request))
        return 1

    def _unsolicited(self, buf: bytearray, pos: int, source: Source, out: list[Item]) -> int:
        """No reply is awaited and this is no command: a reply to a command not
        seen, pump data after a master frame, or garbage."""
        byte = buf[pos]
        if byte == STX:
            return self._frame(buf, pos, lambda at, f: DataReply(at, f, None), out)

        def status_like(b: int) -> bool:
            return not self._after_master and b < DATA_WORD and b >> 4 in _STATUS_CODES

        if status_like(byte):
            out.append(StatusReply(self._base + pos, byte, None))
            return 1
        size = _run(
            buf, pos, lambda b: b == STX or (source is None and is_command(b)) or status_like(b)
        )
        if self._after_master:
            detail = f"{size} bytes after the master's data frame, not read"
            out.append(self._reject(pos, size, "unexpected", detail))
        else:
            out.append(self._reject(pos, size, "garbage", f"{size} bytes outside a reply"))
        return size
