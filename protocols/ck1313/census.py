"""What a stretch of line bytes says about CK1313 (line checks, ``forecourt detect``).

Walks the bytes with the self-delimiting framer (:mod:`protocols.ck1313.framer`):
a good frame passed its check *and* has a (length, command) a CK1313 frame
has; its side comes from that shape (``messages.direction``; the 4-byte E5
and CA frames count for neither side). Bad checks, cut frames, frames of
no known shape and garbage runs are ``bad_frames``, one each.
"""

from __future__ import annotations

from protocols.ck1313.framer import Frame, decode_at
from protocols.ck1313.messages import COMMAND_NAMES, direction
from protocols.descriptor import Census

#: Frames described in ``Census.evidence``: enough to recognise the line.
EVIDENCE = 3


def census(data: bytes) -> Census:
    good = bad = master = pump = 0
    addresses: set[int] = set()
    evidence: list[str] = []
    pos, n = 0, len(data)
    while pos < n:
        result, consumed = decode_at(data, pos)
        if result is None:
            break  # an incomplete frame at the end says nothing yet
        pos += consumed
        if not isinstance(result, Frame):
            bad += 1
            continue
        side = direction(result)
        if side is None:
            bad += 1
            continue
        good += 1
        master += side == "master"
        pump += side == "pump"
        if result.address is not None:
            addresses.add(result.address)
        if len(evidence) < EVIDENCE:
            name = COMMAND_NAMES[result.command]
            evidence.append(f"{result.raw.hex(' ').upper()}: {name}, pump {result.address}, {side}")
    return Census(good, bad, frozenset(addresses), master, pump, tuple(evidence))
