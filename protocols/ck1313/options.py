"""Keyword options of the CK1313 poll driver, for ``[ports.ck1313]`` (config validates them).

Defaults are the common field setting: two decimals everywhere (the FCC's
fixed-point fields, protocols/ck1313/messages.py), three missed requests
before a pump is offline (``fangym0335/first src/pub.h:99``).
"""

from __future__ import annotations

from dataclasses import dataclass

from protocols.options import Decimals, OfflineAfter, ReadEvery
from protocols.totalpoll import TOTALS_EVERY


@dataclass(frozen=True, slots=True)
class Ck1313Options:
    #: Requests in a row without a byte back before a pump is offline.
    offline_after: OfflineAfter = 3
    #: Idle status polls of a pump between two totals checks (driver doc).
    totals_every: ReadEvery = TOTALS_EVERY
    #: Implied decimals of the volume (and volume total), amount (and amount
    #: total) and price fields: not on the wire (unverified per model).
    volume_decimals: Decimals = 2
    amount_decimals: Decimals = 2
    price_decimals: Decimals = 2
