"""What a stretch of line bytes says about Censtar (protocols/censtar/messages.py).

:func:`census` walks the bytes as a tap does
(:func:`protocols.censtar.describe.walk`): a frame counts as good when its
command is known and its XOR passes at the length its direction has.
Requests are the master's, replies the pump's; both name the pump. A frame
cut by the end of the bytes is not counted.
"""

from __future__ import annotations

from protocols.censtar.describe import walk
from protocols.descriptor import Census
from protocols.events import ProtocolError

#: Frames described in ``evidence``: enough to recognise the traffic.
MAX_EVIDENCE = 4


def census(data: bytes) -> Census:
    good = bad = master = pump = 0
    addresses: set[int] = set()
    evidence: list[str] = []
    for _, item in walk(data):
        if isinstance(item, ProtocolError):
            if item.kind != "truncated":
                bad += 1
            continue
        good += 1
        addresses.add(item.address)
        if item.request:
            master += 1
        else:
            pump += 1
        if len(evidence) < MAX_EVIDENCE:
            side = "request" if item.request else "reply"
            evidence.append(f"censtar {item.name} {side}, pump {item.address}")
    return Census(good, bad, frozenset(addresses), master, pump, tuple(evidence))
