"""Raw-log blocks: one port's line turned into entries, repeats kept once, LZMA2.

The encoding of buffer/rawlog.py's blocks, pure (no file, no clock).

Idle polling repeats itself, but rarely byte for byte from one exchange to
the next: a Sinopec master numbers its frames (ctrl, 0-63), so the same
poll and the same answer come back every 64th exchange, each with its own
CRC, and the master's side queries (totals, identities) come in between at
their own period. An exchange seen before in the block is therefore
written as its *distance*: "the same as the exchange k before it". A
periodic stream — whatever its period, up to the block's length — becomes
a run of the same distance: one entry, with its count and the time of its
last exchange.

**Entries** (before compression; integers are LEB128 varints, ``dt`` in ms
after the time of the previous entry, the first after the block's ``first_ms``):

* ``0 | 1 | 2`` (tx, rx, bus) ``dt``, ``len``, bytes — one *segment*: what
  one direction carried in one turn of the line (reads of one direction
  closer than :data:`MERGE_GAP_MS` are one segment: read boundaries are the
  kernel's, not evidence). An *exchange* is a ``tx`` segment and the ``rx``
  after it (a ``bus`` segment alone: a tap sees one stream);
* ``3`` ``k``, ``count``, ``dt`` — ``count`` exchanges, each a copy of the
  exchange ``k + 1`` exchanges before it, the last one starting ``dt``
  after the previous entry. The exchanges' own times are
  not kept: read back (:func:`expand`) they are spread evenly from the
  exchange before the run to the last, each with its segments' original
  offsets;
* ``4`` ``k``, then per segment of the exchange ``k + 1`` before it (the
  *reference*: the last one of the same shape — the same directions and
  lengths): ``dt`` and the segment's bytes XOR the reference's. A pump's
  status while it fuels differs from the one before only in the running
  volume and amount and the check bytes: the XOR is mostly zeros, which
  compress to almost nothing. Times are exact, as for ``0 | 1 | 2``.

Distances never reach outside the block, so every block reads back alone.
The entries are compressed with LZMA2 (stdlib ``lzma``, raw, a 64 KiB
dictionary: the whole block; encoder ≈ 1 MB, decoder ≈ 100 KB of memory).
On a busy Sinopec line it takes 0.64 of zlib's size and costs ≈ 10× its
CPU, ≈ 0.2 s per busy port-hour here (bench/evidence.py).
"""

from __future__ import annotations

import lzma
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

#: Direction codes, as written in an entry's tag.
DIRECTIONS = ("tx", "rx", "bus")
TX, RX, BUS, REPEAT, DELTA = 0, 1, 2, 3, 4

#: Distinct exchanges a block remembers (their last place): beyond it the
#: memory starts again (what is older is written once more, as a delta).
#: An idle Sinopec pump's 64-frame cycle with its side queries is ≈ 170;
#: while it fuels every status is new, so this is also the memory's bound:
#: ≈ 150 KB a port.
MAX_REMEMBERED = 1024

#: LZMA2, raw (no container: a block's header says what it is), preset 6
#: with a dictionary of the block's bound (:data:`BLOCK_ENTRIES_MAX`).
FILTERS = ({"id": lzma.FILTER_LZMA2, "preset": 6, "dict_size": 64 * 1024},)

#: Bytes of entries a block holds before the recorder seals it
#: (collector/station/evidence.py: ``BLOCK_RAW_MAX``), the dictionary's reach.
BLOCK_ENTRIES_MAX = 64 * 1024

#: Chunks of one direction this close in time are one segment (a frame the
#: kernel delivered in two reads); further apart, a request is a new turn
#: (a poll nobody answered, asked again). 20 ms is 5 bytes at 2400 baud,
#: far below any protocol's response timeout.
MERGE_GAP_MS = 20

#: Bytes a block may inflate to when read back: a block is sealed at
#: :data:`BLOCK_ENTRIES_MAX` long before; a body that inflates past this is
#: not ours and is not read whole.
MAX_INFLATED = 4 * 1024 * 1024


class RawLogError(Exception):
    """The raw log cannot be read or written (one line says why)."""


# ---------------------------------------------------------------- entries


def _varint(value: int, out: bytearray) -> None:
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise RawLogError("block body ends inside a number")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


@dataclass(frozen=True, slots=True)
class Segment:
    """What one direction carried in one turn of the line, from ``at_ms``."""

    at_ms: int
    direction: str
    data: bytes
    #: 0 for a segment written as it came (its time exact); n ≥ 1 for one of
    #: the n-th exchange of a run (its time spread evenly, see the module doc).
    in_run: int = 0


Exchange = tuple[tuple[int, int, bytes], ...]  # (direction, offset ms, data) per segment


class BlockBuilder:
    """One port's open block: chunks in, an exchange seen before in the
    block written as its distance, a run of the same distance as one entry.

    Pure: the recorder gives it the time of every chunk. :meth:`seal` returns
    the block's fields (without id and chain) and starts a new one.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self._reset()

    def _reset(self) -> None:
        self.first_ms: int | None = None
        self.last_ms = 0
        self.raw_bytes = 0  # bytes the block stands for, repetitions counted
        self.segments = 0  # segments it stands for, repetitions counted
        self._out = bytearray()
        self._time = 0  # the time the last written entry ends on
        self._exchanges = 0  # exchanges the block holds so far
        self._seen: dict[tuple[int | bytes, ...], int] = {}  # exchange → its last place
        #: shape (directions and lengths) → the last exchange of it: place, segments
        self._shapes: dict[tuple[int, ...], tuple[int, Sequence[bytes]]] = {}
        self._current: list[tuple[int, int, bytearray]] = []  # (direction, at_ms, data)
        self._run_place = -1  # the distance the pending run repeats
        self._run_count = 0
        self._run_last_ms = 0

    @property
    def empty(self) -> bool:
        return self.first_ms is None

    @property
    def pending_bytes(self) -> int:
        """Bytes of entries written so far (before compression)."""
        return len(self._out) + sum(len(d) for _, _, d in self._current)

    def add(self, at_ms: int, direction: int, data: bytes) -> None:
        """A chunk read or written on the line at ``at_ms``."""
        if self.first_ms is None:
            self.first_ms = self._time = at_ms
        previous_ms = self.last_ms
        at_ms = max(at_ms, previous_ms)  # a clock stepped back: times never go back in a block
        self.last_ms = at_ms
        self.raw_bytes += len(data)
        current = self._current
        if (
            current
            and current[-1][0] == direction
            and (direction == RX or at_ms - previous_ms <= MERGE_GAP_MS)
        ):
            current[-1][2].extend(data)  # the same turn of the line, read in pieces
            return
        if current and direction != RX:
            self._close_exchange()
        self._current.append((direction, at_ms, bytearray(data)))

    def _close_exchange(self) -> None:
        current, self._current = self._current, []
        start = current[0][1]
        # The bytes only: a segment's offset in its exchange is the line's
        # jitter (a read a millisecond later), not evidence of anything else.
        # Flat (direction, bytes, direction, bytes, …); a request and its
        # answer, the common case, without a generator.
        if len(current) == 2:
            (d0, _, b0), (d1, _, b1) = current
            key: tuple[int | bytes, ...] = (d0, bytes(b0), d1, bytes(b1))
            shape: tuple[int, ...] = (d0, len(b0), d1, len(b1))
        else:
            key = tuple(x for d, _, data in current for x in (d, bytes(data)))
            shape = tuple(x for d, _, data in current for x in (d, len(data)))
        self.segments += len(current)
        index = self._exchanges
        self._exchanges += 1
        seen = self._seen
        last = seen.get(key)
        seen[key] = index
        shapes = self._shapes
        reference = shapes.get(shape)
        shapes[shape] = (index, key[1::2])  # type: ignore[assignment]
        if last is not None:
            distance = index - last - 1
            if distance != self._run_place:
                self._write_run()
                self._run_place = distance
            self._run_count += 1
            self._run_last_ms = start
            return
        if len(seen) > MAX_REMEMBERED:
            seen.clear()
            seen[key] = index
            shapes.clear()
            shapes[shape] = (index, key[1::2])  # type: ignore[assignment]
        self._write_run()
        out = self._out
        if reference is not None:
            out.append(DELTA)
            _varint(index - reference[0] - 1, out)
            for (_, at_ms, data), before in zip(current, reference[1], strict=True):
                _varint(at_ms - self._time, out)
                out += _xor(data, before)
                self._time = at_ms
            return
        for direction, at_ms, data in current:
            out.append(direction)
            _varint(at_ms - self._time, out)
            _varint(len(data), out)
            out += data
            self._time = at_ms

    def _write_run(self) -> None:
        if self._run_count:
            self._out.append(REPEAT)
            _varint(self._run_place, self._out)
            _varint(self._run_count, self._out)
            _varint(self._run_last_ms - self._time, self._out)
            self._time = self._run_last_ms
        self._run_place, self._run_count = -1, 0

    def seal(self) -> tuple[int, int, int, int, int, bytes] | None:
        """(port, first_ms, last_ms, segments, raw_bytes, LZMA2 body) of the
        block so far, or None when empty; the builder starts a new block."""
        if self.first_ms is None:
            return None
        if self._current:
            self._close_exchange()
        self._write_run()
        sealed = (
            self.port,
            self.first_ms,
            self.last_ms,
            self.segments,
            self.raw_bytes,
            lzma.compress(bytes(self._out), format=lzma.FORMAT_RAW, filters=FILTERS),
        )
        self._reset()
        return sealed


def _xor(data: bytes | bytearray, other: bytes) -> bytes:
    return (int.from_bytes(data) ^ int.from_bytes(other)).to_bytes(len(data))


def expand(first_ms: int, body: bytes) -> Iterator[Segment]:
    """The segments a block's body stands for, runs expanded, in line order."""
    decompressor = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=FILTERS)
    try:
        data = decompressor.decompress(body, MAX_INFLATED)
    except lzma.LZMAError as exc:
        raise RawLogError(f"block body does not inflate: {exc}") from None
    if not decompressor.eof:
        raise RawLogError(f"block body is cut short or inflates past {MAX_INFLATED} bytes")
    pos, time, last_start = 0, first_ms, first_ms
    exchanges: list[Exchange] = []  # every exchange of the block, in order
    literal: list[Segment] = []  # the exchange being read, segment by segment

    def close_literal() -> None:
        if literal:
            start = literal[0].at_ms
            exchanges.append(
                tuple((DIRECTIONS.index(s.direction), s.at_ms - start, s.data) for s in literal)
            )
            literal.clear()

    while pos < len(data):
        tag = data[pos]
        pos += 1
        if tag in (TX, RX, BUS):
            dt, pos = _read_varint(data, pos)
            size, pos = _read_varint(data, pos)
            if pos + size > len(data):
                raise RawLogError("block body ends inside a segment")
            if tag != RX:
                close_literal()
            time += dt
            segment = Segment(time, DIRECTIONS[tag], bytes(data[pos : pos + size]))
            pos += size
            if not literal:
                last_start = time
            literal.append(segment)
            yield segment
        elif tag == REPEAT:
            close_literal()
            distance, pos = _read_varint(data, pos)
            count, pos = _read_varint(data, pos)
            dt, pos = _read_varint(data, pos)
            if not (distance < len(exchanges) and count > 0):
                raise RawLogError("a repeat reaches before the block's first exchange")
            base, end = last_start, time + dt
            for n in range(1, count + 1):
                exchange = exchanges[-distance - 1]
                exchanges.append(exchange)
                start = base + (end - base) * n // count
                for direction, offset, chunk in exchange:
                    yield Segment(start + offset, DIRECTIONS[direction], chunk, n)
            time = last_start = end
        elif tag == DELTA:
            close_literal()
            distance, pos = _read_varint(data, pos)
            if distance >= len(exchanges):
                raise RawLogError("a delta reaches before the block's first exchange")
            made: list[tuple[int, int, bytes]] = []
            for direction, _, before in exchanges[-distance - 1]:
                dt, pos = _read_varint(data, pos)
                if pos + len(before) > len(data):
                    raise RawLogError("block body ends inside a segment")
                time += dt
                chunk = _xor(data[pos : pos + len(before)], before)
                pos += len(before)
                if not made:
                    last_start = time
                made.append((direction, time - last_start, chunk))
                yield Segment(time, DIRECTIONS[direction], chunk)
            exchanges.append(tuple(made))
        else:
            raise RawLogError(f"unknown entry tag {tag}")
