"""What a stretch of line bytes says about Wayne DART (protocols.md §3).

:func:`census` walks the bytes with the decoder every DART part uses
(:func:`protocols.dart.framer.decode_at`, its recovery rules included), so a
frame counts as good only when it ends in ETX SF with a good CRC-16/ARC and a
body of whole transactions. Both sides address a frame by the pump's ADR
(0x50–0x6F, pump n = ADR − 0x4F), so every good frame names a pump.

The side: a POLL (``ADR 20 SF``) is the master's (protocols.md §3). An EOT,
and a DATA frame holding a reply whose TRANS and LNG match a DC layout of
protocols.md §3 that no CD layout there shares (DC2, DC3, DC5, DC9, DC101),
are the pump's. ACK / NAK go both ways and CD1 / DC1 share TRANS and LNG:
those count toward neither side.
"""

from __future__ import annotations

from protocols.dart.framer import Frame, decode_at
from protocols.dart.messages import REPLY_LNG, REQUEST_LNG
from protocols.dart.pumpstate import ADR_OFFSET
from protocols.descriptor import Census
from protocols.tally import Tally, frames

#: (TRANS, LNG) of the replies only a pump sends (module doc).
PUMP_ONLY = frozenset(
    (trans, lng) for trans, lng in REPLY_LNG.items() if REQUEST_LNG.get(trans) != lng
)

#: Frames described in ``evidence`` (see protocols/sinopec/census.py).
MAX_EVIDENCE = 4


def _side(frame: Frame) -> str | None:
    if frame.kind == "poll":
        return "master"
    if frame.kind == "eot":
        return "pump"
    if any((trans, len(data)) in PUMP_ONLY for trans, data in frame.transactions):
        return "pump"
    return None


def census(data: bytes) -> Census:
    """Good frames, framing errors (one per garbage run), pump numbers and the
    master / pump split of ``data``. A frame cut by the end of ``data`` is not
    counted either way."""
    tally = Tally(MAX_EVIDENCE)
    for item in tally.sift(frames(data, decode_at)):
        trans = " ".join(f"{t:02X}/{len(d)}" for t, d in item.transactions)
        pump = item.adr - ADR_OFFSET
        tally.frame(_side(item), pump, f"dart pump {pump} {item.kind} {trans}".rstrip())
    return tally.census()
