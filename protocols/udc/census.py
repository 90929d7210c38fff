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
from protocols.tally import Tally
from protocols.udc.describe import walk
from protocols.udc.framer import Request

#: Frames described in ``evidence``: enough to recognise the traffic.
MAX_EVIDENCE = 4


def census(data: bytes) -> Census:
    tally = Tally(MAX_EVIDENCE)
    for item in tally.sift_walk(walk(data)):
        if isinstance(item, Request):
            tally.frame("master", item.address, f"udc {item.name} to pump {item.address}")
        else:
            tally.frame("pump", None, None)
    return tally.census()
