"""``[ports.censtar]``: the Censtar monitor's keyword options (docs/protocols/censtar.md).

Censtar is refused in poll mode, so these reach the passive monitor (relay,
listen). Decimal places are not on the wire: the FCC's own log prints
amount, volume and price with 2 (``fangym0335/first src/lischn005.c:1164``)
and the record's total rolls over at 999999.99 (``:1088``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from annotated_types import Interval

from protocols.options import DecimalOptions


@dataclass(frozen=True, slots=True)
class CenstarOptions(DecimalOptions):
    """Keyword arguments of :class:`protocols.censtar.monitor.CenstarMonitor`."""

    #: The nozzle number every state and sale of a fuelling point is reported
    #: under: the FCC treats a fuelling point as one nozzle (005:1855-1862);
    #: the record's own nozzle field is not known.
    nozzle: Annotated[int, Interval(ge=1, le=15)] = 1
    #: Censtar carries no grade code: fuelling point address ("1".."99", a
    #: TOML key is text) → the grade code the platform knows.
    grades: dict[str, str] = field(default_factory=dict)
