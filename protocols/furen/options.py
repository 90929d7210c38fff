"""``[ports.furen]``: the Furen Haosheng driver's keyword options (docs/protocols/furen.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from annotated_types import Interval

from protocols.options import DecimalOptions, ReadEvery

#: Nozzles of the fuelling point: ctrl ``F0 | n`` names nozzles 1..8
#: (``fangym0335/first src/lischn009.c:1581``).
Nozzles = Annotated[int, Interval(ge=1, le=8)]

#: A nozzle number as a TOML key (TOML keys are always text).
NozzleNumber = Literal["1", "2", "3", "4", "5", "6", "7", "8"]

#: Identical reads of a record before it is a sale: 1 trusts the first read;
#: above 10 a sale waits for minutes at an idle pace for no gain.
SaleReads = Annotated[int, Interval(ge=1, le=10)]


@dataclass(frozen=True, slots=True)
class FurenOptions(DecimalOptions):
    """Keyword arguments of :class:`protocols.furen.driver.FurenPoller`."""

    #: Nozzles of the fuelling point. The protocol cannot tell (without the
    #: status request): a count too low misses the other nozzles' sales
    #: unseen, one too high makes a single-nozzle pump's replies fail their
    #: nozzle check, so the pump is reported offline — loud, hence the
    #: default 2, the dual-nozzle model the FCC's change log names
    #: (docs/protocols/furen.md).
    nozzles: Nozzles = 2
    #: Poll the status (30), which carries the station's clock: nozzle states
    #: (lifted, fuelling with the live volume) at the cost of sending a time
    #: the pump may set its clock from (not in the source). Default off.
    status_with_clock: bool = False
    #: FA doubling as on the Sinopec link; none in the source. Default off.
    escaped: bool = False
    sale_reads: SaleReads = 2
    totals_every: ReadEvery = 50
    #: Furen carries no grade code: nozzle number ("1".."8") → grade code as
    #: the platform knows it (e.g. "1092"). A nozzle not listed reports "".
    grades: dict[NozzleNumber, str] = field(default_factory=dict)
