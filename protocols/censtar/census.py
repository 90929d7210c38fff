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
from protocols.tally import Tally

#: Frames described in ``evidence``: enough to recognise the traffic.
MAX_EVIDENCE = 4


def census(data: bytes) -> Census:
    tally = Tally(MAX_EVIDENCE)
    for item in tally.sift_walk(walk(data)):
        side = "request" if item.request else "reply"
        say = f"censtar {item.name} {side}, pump {item.address}"
        tally.frame("master" if item.request else "pump", item.address, say)
    return tally.census()
