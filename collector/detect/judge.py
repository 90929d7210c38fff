"""What a stretch of line bytes says, family by family (pure).

**Listening.** Every family's ``census`` reads the same window
(protocols/descriptor.py: a census never counts a frame whose checksum
failed). A family *counts* only with at least :data:`MIN_GOOD_FRAMES` good
frames and at most one bad frame per :data:`MAX_BAD_SHARE` good ones. A
reading is *clean* when its bad frames are no more than the window's two
cut ends and :data:`NOISE_SHARE` of its good ones: a family reading its own
line at its own setting is clean; one reading another family's bytes, or
the garbage of a wrong setting, is mostly not. Counting first, clean next;
then the *coverage*: the share of the window's bytes the family's
describer reads as good frames (a family with a weak check — Gilbarco's
status byte has none — finds many "good" frames in another family's bytes,
a clean reading among them, but leaves part of them garbage: 0.87 of a
Lanfeng line, where Lanfeng reads ≥ 0.97); then the census that tells each
frame's side and names pumps in the family's address range explains more
(two families can share a frame layout and CRC); then the most frames.

**Probing.** The answer to one probe is judged by the family's census of
request + answer: it adds a good frame to what the request alone gives and
no bad one, and the probe's own driver accepted it as the reply to its
request (it no longer awaits one) or the census counts it as a pump's
frame (a driver may refuse a good answer for its options, e.g. a nozzle
count). Any other bytes back are a *framing conflict*: at the line's true
setting a pump that is not asked says nothing, at a wrong one what comes
back is garbled. A line that echoes what is sent (a current loop) returns
the request first; that exact echo is not an answer. Good frames that name
other pumps than the one asked are answers that came late (a slow pump, a
busy box): not a conflict, and they count for the pumps they name.

**Confidence** (0..1): the share of good frames among all frames the
family's census found; × 0.7 when the reading is not clean, × 0.8 when the
census told no frame's side, × 0.5 when another family's reading is clean,
counts too and covers as much of the window (:data:`SAME_COVERAGE`). A
technician reads ≥ 0.8 as sure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from protocols.descriptor import Census, ProtocolDescriptor

#: "Several frames with valid checksums": one could be chance on a noisy
#: line (a 16-bit CRC passes random bytes 1 time in 65 536, an XOR or a
#: nibble LRC far more often); three in one window are not.
MIN_GOOD_FRAMES = 3
#: At most one bad frame per this many good ones for a family to count.
MAX_BAD_SHARE = 2
#: Bad frames a clean reading may have beyond its two cut ends, as a share
#: of its good ones: line noise hitting 1 % of frames.
NOISE_SHARE = 0.01
#: Coverages this close are the same explanation of a window.
SAME_COVERAGE = 0.02
#: Frames shown as evidence.
MAX_EVIDENCE = 4
#: Bytes of the window the evidence is decoded from (enough for a few frames).
EVIDENCE_BYTES = 512


@dataclass(frozen=True, slots=True)
class Reading:
    """One family's census of one window."""

    family: ProtocolDescriptor
    census: Census
    #: Share of the window's bytes read as good frames (0 unless it counts).
    coverage: float = 0.0

    @property
    def sided(self) -> int:
        """Good frames whose side the census told (a census may count an
        exchange as one good frame with both sides)."""
        c = self.census
        return min(c.good_frames, c.master_frames + c.pump_frames)

    @property
    def in_range(self) -> frozenset[int]:
        low, high = self.family.address_range
        return frozenset(a for a in self.census.addresses if low <= a <= high)

    @property
    def counts(self) -> bool:
        c = self.census
        return c.good_frames >= MIN_GOOD_FRAMES and c.bad_frames * MAX_BAD_SHARE <= c.good_frames

    @property
    def clean(self) -> bool:
        c = self.census
        return c.bad_frames <= 2 + NOISE_SHARE * c.good_frames

    def rivals(self, best: Reading) -> bool:
        """Whether this reading explains the window as well as ``best`` does."""
        return (
            self.family.name != best.family.name
            and self.counts
            and self.clean
            and self.coverage >= best.coverage - SAME_COVERAGE
        )

    def rank(self) -> tuple[int, int, float, int, int, int]:
        c = self.census
        return (
            int(self.counts),
            int(self.clean),
            round(self.coverage, 2),
            self.sided,
            len(self.in_range),
            c.good_frames - c.bad_frames,
        )


def read_window(data: bytes, families: Sequence[ProtocolDescriptor]) -> list[Reading]:
    """Every family's census of ``data``, best explanation first."""
    readings = []
    for family in families:
        if family.census is None:
            continue
        reading = Reading(family, family.load("census")(data))
        if reading.counts:
            reading = Reading(family, reading.census, coverage(family, data))
        readings.append(reading)
    return sorted(readings, key=lambda r: r.rank(), reverse=True)


def coverage(family: ProtocolDescriptor, data: bytes) -> float:
    """The share of ``data`` the family's describer reads as good frames."""
    if not data:
        return 0.0
    try:
        items = family.load("describer")(data)
    except Exception:  # a describer bug on foreign bytes: it explains nothing
        return 0.0
    covered = sum(end - start for start, end, _ in _good_spans(items, len(data)))
    return covered / len(data)


def _good_spans(items: list[dict[str, Any]], size: int) -> list[tuple[int, int, dict[str, Any]]]:
    """(start, end, item) of every good item: it runs to the next item's offset."""
    spans = []
    for i, item in enumerate(items):
        if not item.get("ok"):
            continue
        start = int(item.get("offset", 0))
        end = next(
            (int(n["offset"]) for n in items[i + 1 :] if int(n.get("offset", 0)) > start), size
        )
        spans.append((start, end, item))
    return spans


def confidence(best: Reading, others: Sequence[Reading]) -> float:
    c = best.census
    framed = c.good_frames + c.bad_frames
    value = c.good_frames / framed if framed else 0.0
    if not best.clean:
        value *= 0.7
    if not best.sided:
        value *= 0.8
    if any(r.rivals(best) for r in others):
        value *= 0.5
    return round(value, 2)


def strip_echo(answer: bytes, request: bytes) -> bytes:
    """``answer`` without the line's echo of ``request`` in front."""
    return answer[len(request) :] if answer.startswith(request) else answer


@dataclass(frozen=True, slots=True)
class Answer:
    """What one probe got back."""

    valid: bool
    conflict: bool
    census: Census
    #: Pumps whose good frames came back instead: answers to earlier probes
    #: that came after their window.
    late: frozenset[int] = frozenset()


def judge_answer(
    family: ProtocolDescriptor, address: int, request: bytes, raw: bytes, accepted: bool
) -> Answer:
    """``raw``: every byte that came back; ``accepted``: the probe's driver
    took a reply to its request (module doc)."""
    count = family.load("census")
    answer = strip_echo(raw, request)
    alone, both, own = count(request), count(request + answer), count(answer)
    if own.addresses and address not in own.addresses and own.bad_frames == 0:
        return Answer(valid=False, conflict=False, census=both, late=own.addresses)
    added_good = both.good_frames > alone.good_frames
    added_bad = both.bad_frames > alone.bad_frames
    from_pump = accepted or both.pump_frames > alone.pump_frames
    valid = added_good and not added_bad and from_pump
    return Answer(valid=valid, conflict=bool(answer) and not valid, census=both)


def evidence(
    family: ProtocolDescriptor, data: bytes, limit: int = MAX_EVIDENCE
) -> list[dict[str, Any]]:
    """The first good frames of ``data`` as hex, each with what it decodes to
    (the family's describer, as ``forecourt decode`` shows it)."""
    window = data[:EVIDENCE_BYTES]
    try:
        items = family.load("describer")(window)
    except Exception as exc:  # a describer bug must not lose the finding
        return [{"hex": window[:64].hex(" "), "decoded": f"undecodable: {exc}"}]
    out: list[dict[str, Any]] = []
    for start, end, item in _good_spans(items, len(window)):
        decoded = {k: v for k, v in item.items() if k not in ("ok", "offset", "protocol")}
        out.append({"hex": window[start:end].hex(" "), "decoded": decoded})
        if len(out) >= limit:
            break
    return out
