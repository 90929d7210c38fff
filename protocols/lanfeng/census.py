"""What a stretch of line bytes says about Lanfeng (line checks, ``forecourt detect``).

Walks the bytes with the check-synchronised framer
(:mod:`protocols.lanfeng.framer`). A good frame passed its check *and* has a
request layout (the POS's side) or a reply layout (a B8 or totals reply:
the pumps' side); a frame whose check passes by chance but fits neither,
and every garbage run, is a ``bad_frame``.
"""

from __future__ import annotations

from protocols.descriptor import Census
from protocols.events import ProtocolError
from protocols.lanfeng.framer import decode_at
from protocols.lanfeng.messages import (
    CMD_STATUS,
    CMD_VOLUME_TOTAL,
    COMMAND_NAMES,
    parse_reply,
    request_command,
)
from protocols.tally import Tally, frames

#: Frames described in ``Census.evidence``: enough to recognise the line.
EVIDENCE = 3

#: The reply layouts a pump's frame may have (a B8 or a totals reply).
REPLIES = (CMD_STATUS, CMD_VOLUME_TOTAL)


def census(data: bytes) -> Census:
    tally = Tally(EVIDENCE)
    for result in tally.sift(frames(data, decode_at)):
        command = request_command(result)
        if command is not None:
            side, what = "master", COMMAND_NAMES[command]
        elif not all(isinstance(parse_reply(result, c), ProtocolError) for c in REPLIES):
            side, what = "pump", "reply"
        else:
            tally.bad += 1
            continue
        say = f"{result.raw.hex(' ').upper()}: {what}, pump {result.address}, {side}"
        tally.frame(side, result.address or None, say)
    return tally.census()
