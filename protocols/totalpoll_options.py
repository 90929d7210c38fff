"""The keyword options of the read-only poll master the families keyed by
totals share (protocols/totalpoll.py): CK1313 and Lanfeng, each of whose
options class is this one under its family's name.

The decimals cover the volume (and volume total), amount (and amount total)
and price fields, the FCC's fixed-point fields (protocols/ck1313/messages.py,
protocols/lanfeng/messages.py): not on the wire, two in the field
(unverified per model).
"""

from __future__ import annotations

from dataclasses import dataclass

from protocols.options import DecimalOptions, ReadEvery
from protocols.totalpoll import TOTALS_EVERY


@dataclass(frozen=True, slots=True)
class TotalsPollOptions(DecimalOptions):
    """Keyword arguments of a :class:`protocols.totalpoll.TotalsPoller` family's driver."""

    #: Idle status polls of a pump between two totals checks (protocols/totalpoll.py).
    totals_every: ReadEvery = TOTALS_EVERY
