"""What a stretch of line bytes says about the Sinopec link protocol (protocols.md §2).

:func:`census` walks the bytes with the decoder every Sinopec part uses
(:func:`protocols.sinopec.framer.decode_at`, its recovery rules included),
so a frame counts as good only when its length and CRC-16/ARC pass. The
side is told by the addresses: the POS / PC side uses 0xE0–0xF9
(protocols.md §2, "Addresses"), a pump its logical number, so a frame from
the POS range to a pump is the master's and one back is the pump's.
"""

from __future__ import annotations

from protocols.descriptor import Census
from protocols.sinopec.framer import decode_at
from protocols.tally import Tally, frames

#: The POS / PC side's addresses (protocols.md §2, "Addresses").
MASTER_ADDRESSES = range(0xE0, 0xFA)

#: Frames described in ``evidence``: enough for a technician to recognise
#: the traffic, few enough to print on one screen.
MAX_EVIDENCE = 4


def census(data: bytes) -> Census:
    """Good frames, framing errors (one per garbage run), pump addresses and
    the master / pump split of ``data``. A frame cut by the end of ``data``
    is not counted either way."""
    tally = Tally(MAX_EVIDENCE)
    for item in tally.sift(frames(data, decode_at)):
        from_master = item.src in MASTER_ADDRESSES
        side: str | None = None
        address: int | None = None
        if from_master != (item.dst in MASTER_ADDRESSES):
            side, address = ("master", item.dst) if from_master else ("pump", item.src)
        say = f"sinopec {item.src:02X}→{item.dst:02X} command {item.command:02X}"
        tally.frame(side, address, say)
    return tally.census()
