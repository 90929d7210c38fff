"""The per-nozzle SM3 hash chain over orders (platform-interface.md, F2).

Each order carries ``prev`` (the previous order's ``h`` on that nozzle,
:data:`GENESIS` for the first) and ``h``, the SM3 of its canonical JSON.
Editing a stored order changes its ``h``; deleting one leaves the next
order's ``prev`` pointing at nothing. Either shows up in :func:`verify_chain`
on the box and at the platform, which holds the ``h`` values it received.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from records.canonical import canonical_json
from records.sm3 import sm3_hex

#: ``prev`` of the first order of a nozzle (nseq 1): 64 zeros, per the contract.
GENESIS = "0" * 64

#: Fields outside the hash. ``h`` cannot hash itself. ``resent`` is a transport
#: attribute: it turns true when the platform asks for a resend, and if it were
#: hashed the resent record's ``h`` would differ from the one the platform
#: already holds and the chain would break at every resend. So ``h`` covers
#: every other field, ``prev`` included (that is what links the chain).
#: The contract says "without h"; docs/uplink-protocol.md proposes this reading.
HASH_EXCLUDED = frozenset({"h", "resent"})

#: :attr:`ChainBreak.reason` values.
REASON_ALTERED = "hash mismatch: record altered"
REASON_PREV = "prev does not match previous h: record missing or altered"
REASON_GENESIS = "first record (nseq 1) does not start from genesis"

_HASH_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class ChainBreak:
    """Where a chain first fails: position in the input, the record's rid, why."""

    index: int
    rid: str
    reason: str


def record_hash(record: Mapping[str, Any]) -> str:
    """``h`` of a record: SM3 hex of its canonical JSON without :data:`HASH_EXCLUDED`."""
    return sm3_hex(canonical_json({k: v for k, v in record.items() if k not in HASH_EXCLUDED}))


def seal_record(record: Mapping[str, Any], prev: str) -> dict[str, Any]:
    """A copy of ``record`` linked after ``prev``: ``prev`` set and ``h`` computed."""
    if not isinstance(prev, str) or not _HASH_HEX.fullmatch(prev):
        raise ValueError("prev must be 64 lowercase hex digits (an h, or GENESIS)")
    sealed = {k: v for k, v in record.items() if k != "h"}
    sealed["prev"] = prev
    sealed["h"] = record_hash(sealed)
    return sealed


def verify_chain(records: Iterable[Mapping[str, Any]]) -> ChainBreak | None:
    """Check one nozzle's orders, given in nseq order; the first break, or None.

    Every record's ``h`` must be its :func:`record_hash`, and every ``prev``
    the previous record's ``h``. The first record's ``prev`` is checked only
    when it is nseq 1 (it must be :data:`GENESIS`); otherwise the records are
    a window of a longer chain whose earlier part is not here.
    An order deleted from the end leaves no trace in the chain itself: the
    platform notices that one by the ``nseq`` it never received.
    """
    previous_h: str | None = None
    for index, record in enumerate(records):
        rid = str(record.get("rid", ""))
        try:
            expected = record_hash(record)
        except (TypeError, ValueError) as exc:
            # A float or other non-canonical value: it cannot be what was sealed.
            return ChainBreak(index, rid, f"{REASON_ALTERED} ({exc})")
        if record.get("h") != expected:
            return ChainBreak(index, rid, REASON_ALTERED)
        prev = record.get("prev")
        if previous_h is not None:
            if prev != previous_h:
                return ChainBreak(index, rid, REASON_PREV)
        elif record.get("nseq") == 1 and prev != GENESIS:
            return ChainBreak(index, rid, REASON_GENESIS)
        previous_h = expected
    return None
