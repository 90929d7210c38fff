"""What a stretch of line bytes says about the Furen Haosheng protocol.

:func:`census` walks the bytes with the decoder every Furen part uses
(:meth:`protocols.fa_frame.FaFraming.decode_at` with the unescaped rule of
``fangym0335/first src/lischn009.c``), so a frame counts as good only when
its length and CRC-16/ARC pass. The side is told by command and length
(:func:`protocols.furen.messages.side`): a request has the FCC's layout of
its command, a reply is a 5A / 5B status or a read's answer length. Furen
frames carry no pump address (one fuelling point per line): ``addresses``
stays empty.
"""

from __future__ import annotations

from protocols.descriptor import Census
from protocols.furen.framer import UNESCAPED
from protocols.furen.messages import side
from protocols.tally import Tally, frames

#: Frames described in ``evidence`` (see protocols/sinopec/census.py).
MAX_EVIDENCE = 4


def census(data: bytes) -> Census:
    """Good frames, framing errors (one per garbage run) and the master / pump
    split of ``data``. A frame cut by the end of ``data`` is not counted."""
    tally = Tally(MAX_EVIDENCE)
    for item in tally.sift(frames(data, UNESCAPED.decode_at)):
        sender = side(item)
        say = (
            f"furen {sender or 'either side'} [3] {item.ctrl:02X} [6] {item.command:02X}"
            f" LEN {len(item.data)}"
        )
        tally.frame(sender, None, say)
    return tally.census()
