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
from protocols.lanfeng.framer import Frame, decode_at
from protocols.lanfeng.messages import (
    CMD_STATUS,
    CMD_VOLUME_TOTAL,
    COMMAND_NAMES,
    parse_reply,
    request_command,
)

#: Frames described in ``Census.evidence``: enough to recognise the line.
EVIDENCE = 3

#: The reply layouts a pump's frame may have (a B8 or a totals reply).
REPLIES = (CMD_STATUS, CMD_VOLUME_TOTAL)


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
        command = request_command(result)
        if command is not None:
            side, what = "master", COMMAND_NAMES[command]
        elif not all(
            isinstance(parse_reply(result, c), ProtocolError)
            for c in (CMD_STATUS, CMD_VOLUME_TOTAL)
        ):
            side, what = "pump", "reply"
        else:
            bad += 1
            continue
        good += 1
        master += side == "master"
        pump += side == "pump"
        if result.address:
            addresses.add(result.address)
        if len(evidence) < EVIDENCE:
            evidence.append(f"{result.raw.hex(' ').upper()}: {what}, pump {result.address}, {side}")
    return Census(good, bad, frozenset(addresses), master, pump, tuple(evidence))
