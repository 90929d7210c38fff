"""``[ports.gilbarco]``: the Gilbarco two-wire driver's keyword options (protocols.md §4)."""

from __future__ import annotations

from dataclasses import dataclass

from protocols.options import Decimals, PumpOptions


@dataclass(frozen=True, slots=True)
class GilbarcoOptions(PumpOptions):
    """Keyword arguments of :class:`protocols.gilbarco.driver.GilbarcoPoller`."""

    volume_decimals: Decimals = 2
    money_decimals: Decimals = 2
    price_decimals: Decimals = 2
    #: The totals reply's decimal places: FCC builds show them differ from the
    #: transaction's by model (fangym0335/first src/lischn022.c:1401-1441).
    volume_total_decimals: Decimals = 2
    money_total_decimals: Decimals = 2
