"""The buffering loop every framer shares: bytes in, complete items out.

Each protocol's framer supplies a pure ``decode_at(buf, pos) -> (item, n)``
(pymodbus style: what it found at ``pos`` and how many bytes that took;
``n == 0`` means "need more bytes"; an item of None with ``n > 0`` means
"bytes to drop silently", e.g. a CR LF between responses). This class keeps
the partial frame between reads, bounds the buffer, runs ``decode_at`` until
it needs more, and counts what it found. Recovery rules stay in each
framer's docstring: they belong to the protocol, the loop does not.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar, Generic, Protocol, TypeVar


class _Error(Protocol):
    @property
    def kind(self) -> str: ...


class Counting(Protocol):
    @property
    def counters(self) -> dict[str, int]: ...


def with_decoders(out: dict[str, int], decoders: Iterable[tuple[str, Counting]]) -> dict[str, int]:
    """A monitor's counters: ``out`` plus each of its decoders' under the
    decoder's prefix (``pos_`` for the POS side, ``bus_`` for a tap), summed
    where two share a name."""
    for prefix, decoder in decoders:
        for key, value in decoder.counters.items():
            out[prefix + key] = out.get(prefix + key, 0) + value
    return out


Item = TypeVar("Item")


class BufferedDecoder(Generic[Item]):
    """Subclasses set the class attributes and implement :meth:`_decode_at`."""

    #: Bytes held at most: larger than the longest valid frame on the wire, so
    #: a frame is always complete before the buffer is full.
    MAX_BUFFER: ClassVar[int]
    #: Error kinds counted one per occurrence (``garbage`` counts bytes).
    ERROR_KINDS: ClassVar[tuple[str, ...]]
    #: The error type of this protocol (ProtocolError, TlsError).
    ERROR_TYPE: ClassVar[type]
    #: Counter of complete, valid items.
    OK_COUNTER: ClassVar[str] = "frames"

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.counters: dict[str, int] = dict.fromkeys(
            (self.OK_COUNTER, "garbage_bytes", *self.ERROR_KINDS), 0
        )

    def _decode_at(self, buf: bytearray, pos: int) -> tuple[Item | None, int]:
        raise NotImplementedError

    def _next_start(self, buf: bytearray, pos: int) -> int:
        """Where a plausible frame starts at or after ``pos``, or -1. A framer
        that can resynchronise says so here; by default none does, and
        :meth:`flush` gives up the whole buffer."""
        return -1

    def flush(self) -> list[Item]:
        """No more bytes are coming for now (a response deadline passed).

        The incomplete frame at the head of the buffer is given up and
        reported ``truncated`` (up to the next frame start
        :meth:`_next_start` finds); frames it had swallowed (a bogus start
        in noise can swallow a good frame behind it) are still decoded and
        returned. The buffer is empty afterwards.
        """
        out: list[Item] = []
        buf = self._buffer
        while buf:
            nxt = self._next_start(buf, 1)
            cut = nxt if nxt >= 0 else len(buf)
            out.append(self.ERROR_TYPE("truncated", f"incomplete frame of {cut} bytes dropped"))
            self.counters["truncated"] += 1
            del buf[:cut]
            if buf:
                self._drain(out)
        return out

    def reset(self) -> int:
        """Drop whatever is buffered, reporting nothing; return how many bytes."""
        dropped = len(self._buffer)
        self._buffer.clear()
        return dropped

    @property
    def buffered(self) -> int:
        """Bytes held back waiting for the rest of a frame."""
        return len(self._buffer)

    def receive_data(self, data: bytes) -> list[Item]:
        """Feed bytes from the line; return every item and error they complete."""
        out: list[Item] = []
        pos = 0
        while True:
            room = self.MAX_BUFFER - len(self._buffer)  # > 0: see MAX_BUFFER
            self._buffer += data[pos : pos + room]
            pos += room
            self._drain(out)
            if pos >= len(data):
                return out

    def _drain(self, out: list[Item]) -> None:
        buf, pos = self._buffer, 0
        while True:
            item, consumed = self._decode_at(buf, pos)
            if consumed == 0:
                break
            pos += consumed
            if item is None:
                continue
            out.append(item)
            if not isinstance(item, self.ERROR_TYPE):
                self.counters[self.OK_COUNTER] += 1
            else:
                kind = item.kind  # type: ignore[attr-defined]
                if kind == "garbage":
                    self.counters["garbage_bytes"] += consumed
                else:
                    self.counters[kind] += 1
        del buf[:pos]
