"""``[ports.dart]``: the Wayne DART driver's keyword options (protocols.md §3)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from protocols.options import DecimalOptions

#: A nozzle number as a TOML key: DART's NOZIO carries nozzles 1..15 in
#: four bits (protocols.md §3, DC3); TOML keys are always text.
NozzleNumber = Literal[
    "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15"
]


@dataclass(frozen=True, slots=True)
class DartOptions(DecimalOptions):
    """Keyword arguments of :class:`protocols.dart.driver.DartPoller`."""

    #: DART carries no grade code: nozzle number ("1".."15") → grade code as
    #: the platform knows it (e.g. "1092"). A nozzle not listed reports "".
    grades: dict[NozzleNumber, str] = field(default_factory=dict)
