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
from protocols.events import ProtocolError
from protocols.furen.framer import UNESCAPED
from protocols.furen.messages import side

#: Frames described in ``evidence`` (see protocols/sinopec/census.py).
MAX_EVIDENCE = 4


def census(data: bytes) -> Census:
    """Good frames, framing errors (one per garbage run) and the master / pump
    split of ``data``. A frame cut by the end of ``data`` is not counted."""
    good = bad = master = pump = 0
    evidence: list[str] = []
    pos = 0
    while True:
        item, consumed = UNESCAPED.decode_at(data, pos)
        if consumed == 0:
            break
        pos += consumed
        if isinstance(item, ProtocolError):
            bad += 1
            continue
        if item is None:
            continue
        good += 1
        sender = side(item)
        master += sender == "master"
        pump += sender == "pump"
        if len(evidence) < MAX_EVIDENCE:
            who = sender or "either side"
            evidence.append(
                f"furen {who} [3] {item.ctrl:02X} [6] {item.command:02X} LEN {len(item.data)}"
            )
    return Census(good, bad, frozenset(), master, pump, tuple(evidence))
