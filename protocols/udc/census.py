"""What a stretch of line bytes says about UDC (protocols/udc/messages.py).

:func:`census` walks the bytes as a tap does (:func:`protocols.udc.describe.walk`,
the bus decoder's recovery included): a request counts as good when its
header, command and every complement pass; a reply when its complements
pass and the next request begins right after it. Requests are the
master's, replies the pump's; addresses come from the requests (a reply
names none). A frame cut by the end of the bytes is not counted.
"""

from __future__ import annotations

from protocols.descriptor import Census
from protocols.events import ProtocolError
from protocols.udc.describe import walk
from protocols.udc.framer import Request

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
        if isinstance(item, Request):
            master += 1
            addresses.add(item.address)
            if len(evidence) < MAX_EVIDENCE:
                evidence.append(f"udc {item.name} to pump {item.address}")
        else:
            pump += 1
    return Census(good, bad, frozenset(addresses), master, pump, tuple(evidence))
