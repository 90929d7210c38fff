"""What a stretch of line bytes says about Gilbarco two-wire (``census``).

Read in line order (protocols/gilbarco/line.py). Counted good: a reply that
answers the command before it (a status byte with the commanded pump's
nibble, a frame whose LRC checks, a running display of six data words) —
one master frame (the command) and one pump frame (the reply) — and any
frame whose LRC checks (a master's data frame, a frame whose command was
not seen). Counted bad: garbage runs (once each), frames with a bad LRC,
broken or truncated frames, replies that break the layout. Commands alone
are not evidence: any byte below 0x70 reads as one.
"""

from __future__ import annotations

from protocols.descriptor import Census
from protocols.gilbarco.codes import nibble_pump
from protocols.gilbarco.describe import describe_item
from protocols.gilbarco.line import (
    DataReply,
    LineReader,
    MasterData,
    Rejected,
    RunningReply,
    StatusReply,
)
from protocols.gilbarco.messages import Decimals

#: Decoded items kept as evidence.
EVIDENCE = 3
#: Error kinds that say "not this protocol's bytes" ("unexpected" bytes
#: after a master's frame are a pump's data this reader does not read).
_BAD = frozenset({"garbage", "bad_lrc", "bad_message", "truncated"})


def census(data: bytes) -> Census:
    reader = LineReader()
    good = bad = master = pump = 0
    addresses: set[int] = set()
    evidence: list[str] = []
    dp = Decimals()
    for item in reader.receive(data) + reader.flush():
        if isinstance(item, Rejected):
            bad += item.error.kind in _BAD
            continue
        if isinstance(item, MasterData):
            good, master = good + 1, master + 1
        elif isinstance(item, StatusReply | DataReply | RunningReply):
            if item.request is not None:
                good, master, pump = good + 1, master + 1, pump + 1
                addresses.add(nibble_pump(item.request))
            elif isinstance(item, DataReply):
                good, pump = good + 1, pump + 1
            else:
                continue
        else:
            continue
        if len(evidence) < EVIDENCE:
            line = describe_item(item, dp)
            evidence.append(f"{line.get('message')} at {item.offset}: {line.get('values')}")
    return Census(
        good_frames=good,
        bad_frames=bad,
        addresses=frozenset(addresses),
        master_frames=master,
        pump_frames=pump,
        evidence=tuple(evidence),
    )
