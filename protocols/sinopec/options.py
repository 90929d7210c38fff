"""``[ports.sinopec]``: the Sinopec driver's keyword options (protocols.md §2)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from annotated_types import Interval

from protocols.options import PumpOptions, ReadEvery

#: The PC/POS side uses addresses 0xE0..0xF9 (protocols.md §2, "Addresses").
MASTER_MIN, MASTER_MAX = 0xE0, 0xF9


@dataclass(frozen=True, slots=True)
class SinopecOptions(PumpOptions):
    """Keyword arguments of :class:`protocols.sinopec.driver.SinopecPoller`."""

    master_address: Annotated[int, Interval(ge=MASTER_MIN, le=MASTER_MAX)] = 0xE0
    #: Polarity of ctrl bit 6 (the calling side): public sources disagree.
    caller_bit_set: bool = True
    #: Polls of a pump between two reads of its error list (3B), totals (38)
    #: and identities (3A): the driver's defaults, ≈ 2 s, 10 s, 2 min at 100 ms.
    errors_every: ReadEvery = 20
    totals_every: ReadEvery = 100
    info_every: ReadEvery = 1200
