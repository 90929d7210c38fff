"""``[ports.gilbarco]``: the Gilbarco two-wire driver's keyword options (protocols.md §4)."""

from __future__ import annotations

from dataclasses import dataclass

from protocols.options import Decimals, OfflineAfter


@dataclass(frozen=True, slots=True)
class GilbarcoOptions:
    """Keyword arguments of :class:`protocols.gilbarco.driver.GilbarcoPoller`."""

    offline_after: OfflineAfter = 3
    volume_decimals: Decimals = 2
    money_decimals: Decimals = 2
    price_decimals: Decimals = 2
