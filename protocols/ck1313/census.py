"""What a stretch of line bytes says about CK1313 (line checks, ``forecourt detect``).

Walks the bytes with the self-delimiting framer (:mod:`protocols.ck1313.framer`):
a good frame passed its check *and* has a (length, command) a CK1313 frame
has; its side comes from that shape (``messages.direction``; the 4-byte E5
and CA frames count for neither side). Bad checks, cut frames, frames of
no known shape and garbage runs are ``bad_frames``, one each.
"""

from __future__ import annotations

from protocols.ck1313.framer import decode_at
from protocols.ck1313.messages import COMMAND_NAMES, direction
from protocols.descriptor import Census
from protocols.tally import Tally, frames

#: Frames described in ``Census.evidence``: enough to recognise the line.
EVIDENCE = 3


def census(data: bytes) -> Census:
    tally = Tally(EVIDENCE)
    for result in tally.sift(frames(data, decode_at)):
        side = direction(result)
        if side is None:
            tally.bad += 1
            continue
        name = COMMAND_NAMES[result.command]
        say = f"{result.raw.hex(' ').upper()}: {name}, pump {result.address}, {side}"
        tally.frame(side, result.address, say)
    return tally.census()
