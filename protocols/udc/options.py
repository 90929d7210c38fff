"""``[ports.udc]``: the UDC monitor's keyword options (docs/protocols/udc.md).

UDC cannot be polled read-only, so these reach the passive monitor (relay,
listen). Decimal places are not on the wire; 2 is what the FCC's own logs
print (``fangym0335/first src/lischn020.c:1310``, volume; ``:1347-1348``,
totals) and is unverified for price and amount.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from annotated_types import Interval

from protocols.options import DecimalOptions
from protocols.udc.messages import MAX_PRICE_NOZZLES, PRICE_NOZZLES

#: A nozzle number as a TOML key (C·A1 and F·A9 name nozzles 1..4 on the
#: pumps the source knows, 019:1001-1002, 1361).
NozzleNumber = Literal["1", "2", "3", "4", "5", "6", "7", "8"]


@dataclass(frozen=True, slots=True)
class UdcOptions(DecimalOptions):
    """Keyword arguments of :class:`protocols.udc.monitor.UdcMonitor`."""

    #: Nozzles per side in the price read (F·AC) and write (C·A3): their
    #: length depends on it. The FCC fixes 4 (019:157).
    price_nozzles: Annotated[int, Interval(ge=1, le=MAX_PRICE_NOZZLES)] = PRICE_NOZZLES
    #: UDC carries no grade code: nozzle number → the platform's grade code.
    grades: dict[NozzleNumber, str] = field(default_factory=dict)
