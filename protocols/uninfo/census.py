"""What a stretch of line bytes says about the Changkong Uninfo protocol.

:func:`census` walks the bytes with the reader a ``listen`` port uses
(:class:`protocols.uninfo.framer.BusReader`), so a reply counts as good only
when it passed what the collector checks (its length, the check word and
``F0`` where the source has them, the pump it names, digits), and a request
only with its good reply after it (a lone request byte is any byte with a
command nibble) — or, for a D block, with its own check word. ``addresses``
are the pumps good frames name; requests count as the master's frames,
replies as the pumps'. Garbage runs, bad check words and replies that fit
no request are ``bad_frames``.
"""

from __future__ import annotations

from protocols.descriptor import Census
from protocols.events import ProtocolError
from protocols.uninfo.framer import BusReader, Reply, Request

#: Items described in ``evidence`` (see protocols/sinopec/census.py).
MAX_EVIDENCE = 4


def census(data: bytes) -> Census:
    """Good frames, framing errors and the master / pump split of ``data``.
    A reply cut by the end of ``data`` is not counted."""
    reader = BusReader()
    buf = bytearray(data)
    master = pump = bad = 0
    addresses: set[int] = set()
    evidence: list[str] = []
    pos = 0
    while pos < len(buf):
        items, consumed = reader.step(buf, pos)
        for item in items:
            if isinstance(item, ProtocolError):
                bad += 1
            elif isinstance(item, Request) and item.block is not None:
                master += 1
                if item.address is not None:
                    addresses.add(item.address)
            elif isinstance(item, Reply):
                master += item.request.block is None  # a block was counted on its own
                pump += 1
                if item.request.address is not None:
                    addresses.add(item.request.address)
                if len(evidence) < MAX_EVIDENCE:
                    request = item.request
                    evidence.append(
                        f"uninfo {request.raw[0]:02X} ({request.kind} of pump"
                        f" {request.address}) answered, {len(item.words)} words"
                    )
        if consumed == 0:
            break
        pos += consumed
    good = master + pump
    return Census(good, bad, frozenset(addresses), master, pump, tuple(evidence))
